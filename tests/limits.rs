//! Realtime connection limits (`max_connections`, `max_connections_per_ip`,
//! WebSocket and SSE together) and the HTTP publish rate, over real
//! sockets.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::live::{Sse, Ws};
use common::{client, error_code, Options, TestServer};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A server with `args` and a collection `notes` anyone may watch.
async fn server_with(args: &[&str]) -> TestServer {
    let server = TestServer::start_with(Options {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..Options::default()
    });
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "rules": {"list": "true", "view": "true", "create": "true"}}),
        )
        .await;
    server
}

/// A WebSocket handshake's status and error body (101 and null when it
/// upgraded), with an optional `X-Forwarded-For`.
async fn ws_attempt(server: &TestServer, forwarded: Option<&str>) -> (u16, Value, Option<String>) {
    let url = server.base.replacen("http://", "ws://", 1) + "/api/realtime";
    let mut request = url.into_client_request().unwrap();
    if let Some(ip) = forwarded {
        request
            .headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(ip).unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut stream, response)) => {
            let _ = stream.close(None).await;
            (response.status().as_u16(), Value::Null, None)
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body = response
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap())
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body, retry_after)
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

#[tokio::test]
async fn over_max_connections_a_new_realtime_connection_is_503() {
    let server = server_with(&["--max-connections", "3", "--max-connections-per-ip", "100"]).await;
    let mut first = Ws::connect(&server, None).await;
    let _second = Ws::connect(&server, None).await;
    let (status, _third) = open_sse(&server).await;
    assert_eq!(status, 200);

    let (status, body, retry_after) = ws_attempt(&server, None).await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    assert!(retry_after.is_some(), "503 without Retry-After");
    let (status, sse) = open_sse(&server).await;
    assert_eq!(status, 503);
    assert_eq!(error_code(&sse.body_json().await), "unavailable");

    // A closed connection frees its place.
    first.stream.close(None).await.unwrap();
    drop(first);
    let mut status = 0;
    for _ in 0..50 {
        status = ws_attempt(&server, None).await.0;
        if status == 101 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 101);
}

async fn open_sse(server: &TestServer) -> (u16, Sse) {
    let (status, sse) = Sse::open(server, "topic=notes", &[]).await;
    (status, sse)
}

#[tokio::test]
async fn over_max_connections_per_ip_a_new_realtime_connection_is_429() {
    let server = server_with(&[
        "--max-connections",
        "100",
        "--max-connections-per-ip",
        "2",
        "--trust-proxy",
        "true",
    ])
    .await;
    let _ws = Ws::connect(&server, None).await;
    let (status, _sse) = open_sse(&server).await;
    assert_eq!(status, 200);
    let (status, body, retry_after) = ws_attempt(&server, None).await;
    assert_eq!((status, error_code(&body)), (429, "rate_limited"), "{body}");
    assert!(retry_after.is_some(), "429 without Retry-After");
    let (status, sse) = open_sse(&server).await;
    assert_eq!(status, 429);
    assert_eq!(error_code(&sse.body_json().await), "rate_limited");
    // Behind a trusted proxy, another client address has its own count.
    assert_eq!(ws_attempt(&server, Some("203.0.113.9")).await.0, 101);
}

/// Publishes `count` messages on `topic` as fast as it can; answers the
/// statuses and how long it took.
async fn publish_burst(
    server: &TestServer,
    token: Option<&str>,
    topic: &str,
    count: usize,
) -> (Vec<u16>, Option<String>, Duration) {
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..count {
        let mut request = client()
            .post(server.url(&format!("/api/topics/{topic}/messages")))
            .json(&json!({"data": {"n": i}}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = response.json().await.unwrap();
            assert_eq!(error_code(&body), "rate_limited");
        }
        statuses.push(status);
    }
    (statuses, retry_after, started.elapsed())
}

/// At most `rate` in a burst, plus what refilled meanwhile.
fn assert_limited(statuses: &[u16], rate: f64, took: Duration) {
    let accepted = statuses.iter().filter(|s| **s == 202).count();
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    assert!(statuses[..3].iter().all(|s| *s == 202), "{statuses:?}");
    let allowed = rate + took.as_secs_f64() * rate + 1.0;
    assert!(
        (accepted as f64) <= allowed && accepted < statuses.len(),
        "{accepted} accepted in {took:?} at {rate}/s: {statuses:?}"
    );
}

#[tokio::test]
async fn http_publish_is_rate_limited_per_caller_like_websocket_publish() {
    let server = server_with(&["--message-rate", "3"]).await;
    let admin = server.admin_token().await;
    let (status, body) = common::send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(&admin)
            .json(&json!({"name": "chat", "publish": "true", "subscribe": "true"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (statuses, retry_after, took) = publish_burst(&server, Some(&admin), "chat", 20).await;
    assert_limited(&statuses, 3.0, took);
    assert_eq!(retry_after.as_deref(), Some("1"));

    // Another caller has its own allowance: a user, and anonymous callers
    // (counted by address).
    let user = server.plain_user_token(&admin, "u@example.com").await;
    let (statuses, _, took) = publish_burst(&server, Some(&user), "chat", 20).await;
    assert_limited(&statuses, 3.0, took);
    let (statuses, _, took) = publish_burst(&server, None, "chat", 20).await;
    assert_limited(&statuses, 3.0, took);

    // The allowance comes back with time.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (statuses, _, _) = publish_burst(&server, Some(&admin), "chat", 2).await;
    assert_eq!(statuses, [202, 202]);
}
