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
    let body = temps
        .iter()
        .map(|t| json!({"device": "gw", "temp": t}))
        .collect();
    post(server, token, body).await;
}

async fn post(server: &TestServer, token: &str, body: Vec<Value>) {
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

/// Readings with their own time, so a test can put them in a bucket that
/// is surely still open (a little in the future) or surely closed.
fn timed_def() -> Value {
    let mut def = readings_def();
    def["rules"] = json!({"list": "true", "view": "true", "create": "@user != null"});
    def["time"] = json!("ts");
    def["fields"]["ts"] = json!({"type": "datetime"});
    def
}

async fn write_at(server: &TestServer, token: &str, ts: i64, temps: &[f64]) {
    let body = temps
        .iter()
        .map(|t| json!({"device": "gw", "temp": t, "ts": ts}))
        .collect();
    post(server, token, body).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The first bucket message for the bucket starting at `t`, skipping any
/// other bucket (a resume may repeat one it had sent).
async fn bucket_at(ws: &mut Ws, t: i64) -> Value {
    let start = Value::String(rfc3339_ms(t));
    loop {
        let message = (&mut *ws).next_bucket().await;
        assert_eq!(message["type"], "bucket", "{message}");
        if message["t"] == start {
            return message;
        }
    }
}

/// RFC 3339 with milliseconds, as buckets are stamped.
fn rfc3339_ms(ms: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .expect("a time in range");
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).expect("a formattable time")
}

#[tokio::test]
async fn a_new_bucket_subscription_counts_the_readings_stored_before_it() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server.create_collection(&admin, timed_def()).await;
    // A bucket that opens in 2 s: still open whenever the subscription
    // lands, and closing soon after.
    let t = (now_ms() / 1000 + 2) * 1000;
    write_at(&server, &admin, t + 100, &[1.0, 2.0]).await;

    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings",
                        "aggregate": serde_json::from_str::<Value>(BUCKETS).unwrap()}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    write_at(&server, &admin, t + 200, &[4.0]).await;

    let bucket = bucket_at(&mut ws, t).await;
    assert_eq!(bucket["values"]["count()"], 3, "{bucket}");
    assert_eq!(bucket["values"]["sum(temp)"], 7.0, "{bucket}");
    ws.expect_quiet(Duration::from_millis(1500)).await;
}

#[tokio::test]
async fn a_resumed_bucket_subscription_gets_the_buckets_that_closed_while_away() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server.create_collection(&admin, timed_def()).await;
    let t = (now_ms() / 1000 + 1) * 1000;
    let subscribe = |since: Option<u64>| {
        let mut request = json!({"action": "subscribe", "topic": "readings",
                                 "aggregate": serde_json::from_str::<Value>(BUCKETS).unwrap()});
        if let Some(since) = since {
            request["since"] = json!(since);
        }
        request
    };
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    assert_eq!(ws.request(subscribe(None)).await["type"], "ok");
    write_at(&server, &admin, t + 10, &[1.0, 2.0, 3.0]).await;
    let first = bucket_at(&mut ws, t).await;
    assert_eq!(first["values"]["count()"], 3, "{first}");
    let position = first["seq"].as_u64().unwrap();
    drop(ws);

    // Away while the next bucket fills and closes.
    write_at(&server, &admin, t + 1010, &[4.0, 5.0]).await;
    tokio::time::sleep_until(tokio::time::Instant::now() + wait_past(t + 2000 + 300)).await;

    let mut again = Ws::connect(&server, Some(&admin)).await;
    let reply = again.request(subscribe(Some(position))).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let missed = bucket_at(&mut again, t + 1000).await;
    assert_eq!(missed["values"]["count()"], 2, "{missed}");
    assert_eq!(missed["values"]["sum(temp)"], 9.0, "{missed}");
}

/// How long from now until `ms` (since the epoch) has passed, plus a margin.
fn wait_past(ms: i64) -> Duration {
    Duration::from_millis((ms - now_ms()).max(0) as u64 + 300)
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
