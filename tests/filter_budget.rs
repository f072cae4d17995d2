//! Subscription filters share a per-connection cost budget: every event on
//! a subscribed topic pays for its filter, so one connection cannot make
//! fan-out slow for everyone. Real server, real sockets.

mod common;

use common::live::{Sse, Ws};
use common::TestServer;
use serde_json::json;

/// A filter of about 1,000 evaluation steps (four 250-element lists).
fn heavy_filter() -> String {
    let list = (0..250)
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    ["a", "b", "c", "d"]
        .iter()
        .map(|field| format!("{field} in [{list}]"))
        .collect::<Vec<_>>()
        .join(" || ")
}

#[tokio::test]
async fn costly_filters_are_refused_past_the_connections_budget() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    for n in 0..6 {
        server
            .create_collection(
                &admin,
                json!({"name": format!("c{n}"), "rules": {"list": "true", "view": "true"}}),
            )
            .await;
    }
    let filter = heavy_filter();
    let mut ws = Ws::connect(&server, None).await;
    for n in 0..4 {
        let reply = ws
            .request(json!({"action": "subscribe", "topic": format!("c{n}"), "filter": filter}))
            .await;
        assert_eq!(reply["type"], "ok", "subscription {n}: {reply}");
    }
    let refused = ws
        .request(json!({"action": "subscribe", "topic": "c4", "filter": filter}))
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    assert_eq!(refused["details"]["budget"], 4096, "{refused}");
    // A cheap filter still fits, and unsubscribing gives the budget back.
    let cheap = ws
        .request(json!({"action": "subscribe", "topic": "c4", "filter": "a = 1"}))
        .await;
    assert_eq!(cheap["type"], "ok", "{cheap}");
    let reply = ws
        .request(json!({"action": "unsubscribe", "topic": "c0"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "c5", "filter": filter}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");

    // SSE: one filter for every topic of the stream.
    let topics = (0..5)
        .map(|n| format!("topic=c{n}"))
        .collect::<Vec<_>>()
        .join("&");
    let encoded: String = filter
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, sse) = Sse::open(&server, &format!("{topics}&filter={encoded}"), &[]).await;
    assert_eq!(status, 400);
    assert_eq!(sse.body_json().await["error"]["details"]["budget"], 4096);
}
