//! Bucket subscriptions and expiry notices of series collections, over
//! the real WebSocket and SSE endpoints.

mod common;

use std::time::Duration;

use common::live::{Sse, Ws};
use common::{client, send, TestServer};
use serde_json::{json, Value};

/// Readings of `device`, each user seeing only their own.
fn readings_def() -> Value {
    json!({"name": "readings", "kind": "series", "series": "device",
           "fields": {"device": {"type": "string", "required": true}, "temp": {"type": "number"}},
           "rules": {"list": "owner = @user.id", "view": "owner = @user.id",
                     "create": "@user != null"}})
}

async fn write(server: &TestServer, token: &str, temps: &[f64]) {
    let body: Vec<Value> = temps
        .iter()
        .map(|t| json!({"device": "gw", "temp": t}))
        .collect();
    let (status, answer) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
}

const BUCKETS: &str =
    r#"{"bucket": "1s", "agg": ["count()", "sum(temp)"], "group": ["device"], "grace": "300ms"}"#;

/// Sums `count()` and `sum(temp)` over bucket messages until `count`
/// readings are accounted for.
async fn totals_of(mut next: impl AsyncNext, count: u64) -> (u64, f64) {
    let (mut n, mut sum) = (0, 0.0);
    while n < count {
        let message = next.next_bucket().await;
        assert_eq!(message["type"], "bucket", "{message}");
        assert_eq!(message["group"], json!({"device": "gw"}), "{message}");
        n += message["values"]["count()"].as_u64().unwrap_or(0);
        sum += message["values"]["sum(temp)"].as_f64().unwrap_or(0.0);
    }
    assert_eq!(n, count, "more readings counted than written");
    (n, sum)
}

trait AsyncNext {
    async fn next_bucket(&mut self) -> Value;
}

impl AsyncNext for &mut Ws {
    async fn next_bucket(&mut self) -> Value {
        loop {
            let message = self.next().await;
            if message["type"] != "heartbeat" {
                return message;
            }
        }
    }
}

impl AsyncNext for &mut Sse {
    async fn next_bucket(&mut self) -> Value {
        let event = self.next().await.expect("the stream ended");
        assert_eq!(event.event, "bucket", "{event:?}");
        event.data
    }
}

#[tokio::test]
async fn each_subscriber_gets_buckets_of_only_the_readings_it_may_see() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server.create_collection(&admin, readings_def()).await;
    let alice = server.plain_user_token(&admin, "alice@example.com").await;
    let bob = server.plain_user_token(&admin, "bob@example.com").await;

    let mut ws = Ws::connect(&server, Some(&alice)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings",
                        "aggregate": serde_json::from_str::<Value>(BUCKETS).unwrap()}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let query = format!("topic=readings&aggregate={}", urlencode(BUCKETS));
    let (status, mut sse) = Sse::open(
        &server,
        &query,
        &[("Authorization", &format!("Bearer {bob}"))],
    )
    .await;
    assert_eq!(status, 200);

    write(&server, &alice, &[1.0, 2.0, 3.0]).await;
    write(&server, &bob, &[100.0, 200.0]).await;
    write(&server, &alice, &[4.0]).await;

    assert_eq!(totals_of(&mut ws, 4).await, (4, 10.0));
    assert_eq!(totals_of(&mut sse, 2).await, (2, 300.0));
    // Nothing of the other's readings arrives later either.
    ws.expect_quiet(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn buckets_are_refused_for_a_records_collection_and_a_bad_spec_is_named() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    server.create_collection(&admin, readings_def()).await;
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "aggregate": {"bucket": "1m", "agg": ["count()"]}}))
        .await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("bad_request")),
        "{reply}"
    );
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings", "aggregate": {"bucket": "1 week", "agg": ["count()"]}}))
        .await;
    assert_eq!(reply["code"], "validation_failed", "{reply}");
    assert!(reply.to_string().contains("aggregate.bucket"), "{reply}");
}

#[tokio::test]
async fn dropping_old_readings_sends_one_expired_notice_live_and_on_resume() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut def = readings_def();
    def["rules"] = json!({"list": "true", "view": "true"});
    def["time"] = json!("ts");
    def["fields"]["ts"] = json!({"type": "datetime"});
    server.create_collection(&admin, def).await;
    let body: Vec<Value> = (0..10)
        .map(|i| json!({"device": "gw", "temp": i, "ts": 1_000_000 + i * 1000}))
        .collect();
    let (status, written) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{written}");
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings"}))
        .await;
    let position = reply["seq"].as_u64().unwrap();

    let (status, _) = send(
        client()
            .delete(server.url("/api/collections/readings/records?before=1005000"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let notice = ws.next().await;
    assert_eq!(
        (notice["type"].as_str(), notice["before"].as_str()),
        (Some("expired"), Some("1970-01-01T00:16:45.000Z")),
        "{notice}"
    );
    let (_, page) = send(
        client()
            .get(server.url("/api/collections/readings/records?limit=100"))
            .bearer_auth(&admin),
    )
    .await;
    let temps: Vec<f64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["temp"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [5.0, 6.0, 7.0, 8.0, 9.0]);

    // A subscriber resuming from before the drop gets the same notice.
    let mut again = Ws::connect(&server, Some(&admin)).await;
    let reply = again
        .request(json!({"action": "subscribe", "topic": "readings", "since": position}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let replayed = again.next().await;
    assert_eq!(replayed["type"], "expired", "{replayed}");
    assert_eq!(replayed["seq"], notice["seq"]);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
