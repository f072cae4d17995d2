//! A day of readings at a steady rate, squeezed into seconds: a series
//! collection's blocks never hold more than `max_bytes` for longer than a
//! retention round, the oldest go first, and the subscribers hear of it.

mod common;

use std::time::{Duration, Instant};

use common::live::Ws;
use common::{client, send, TestServer};
use serde_json::{json, Value};

const MAX_BYTES: u64 = 12 * 1024;
/// Simulated minutes per request: a day in 1440 requests.
const MINUTE_MS: i64 = 60_000;

async fn stats(server: &TestServer, token: &str) -> Value {
    let (status, stats) = send(client().get(server.url("/api/stats")).bearer_auth(token)).await;
    assert_eq!(status, 200, "{stats}");
    stats["series"]["readings"].clone()
}

#[tokio::test]
async fn a_day_of_readings_stays_within_max_bytes() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "readings", "kind": "series", "series": "device", "time": "ts",
                   "fields": {"device": {"type": "string"}, "temp": {"type": "number"},
                              "humidity": {"type": "number"}, "ts": {"type": "datetime"}},
                   "rules": {"list": "true", "view": "true"},
                   "retention": {"max_bytes": MAX_BYTES}}),
        )
        .await;
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings", "ops": ["delete"]}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");

    let day_start = 1_764_720_000_000_i64;
    let started = Instant::now();
    let mut largest_after_a_round = 0;
    let mut per_round = 0;
    let mut written = 0u64;
    for minute in 0..1440_i64 {
        // 12 devices, one reading each per simulated minute, with noise
        // that compresses like real sensor data.
        let body: Vec<Value> = (0..12)
            .map(|d| {
                json!({"device": format!("gw-{d:02}"),
                       "temp": 20.0 + ((minute * 7 + d * 13) % 50) as f64 / 10.0,
                       "humidity": 40.0 + ((minute * 3 + d) % 200) as f64 / 10.0,
                       "ts": day_start + minute * MINUTE_MS})
            })
            .collect();
        let (status, answer) = send(
            client()
                .post(server.url("/api/collections/readings/records"))
                .bearer_auth(&admin)
                .json(&body),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
        written += 12;
        if minute % 60 == 59 {
            let size = stats(&server, &admin).await;
            let bytes = size["bytes"].as_u64().unwrap();
            // Retention runs every 2 seconds: after the first round, the
            // blocks may exceed the cap by at most what a round writes.
            if started.elapsed() > Duration::from_secs(3) {
                largest_after_a_round = largest_after_a_round.max(bytes);
            }
            per_round = per_round.max(bytes.saturating_sub(MAX_BYTES));
            eprintln!("hour {}: {size}", minute / 60);
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(0.1);
    // What a round (2 s, plus a second of slack on a loaded machine) of
    // this test's writes takes in blocks not merged yet, generously.
    let bytes_per_reading = 32.0;
    let round = (written as f64 / elapsed * 3.0 * bytes_per_reading) as u64;
    assert!(
        largest_after_a_round <= MAX_BYTES + round,
        "blocks held {largest_after_a_round} bytes; cap {MAX_BYTES} + one round {round}"
    );
    // The cap holds once the writes stop and retention has had a round.
    let deadline = Instant::now() + Duration::from_secs(10);
    let size = loop {
        let size = stats(&server, &admin).await;
        if size["bytes"].as_u64().unwrap() <= MAX_BYTES {
            break size;
        }
        assert!(Instant::now() < deadline, "still over the cap: {size}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kept = size["readings"].as_u64().unwrap();
    assert!(kept > 0 && kept < written, "{kept} of {written} kept");
    // What is left is the newest: the oldest went first.
    let (_, page) = send(
        client()
            .get(server.url("/api/collections/readings/records?limit=1"))
            .bearer_auth(&admin),
    )
    .await;
    let oldest = page["items"][0]["ts"].as_str().unwrap().to_owned();
    assert!(oldest.as_str() > "2025-12-03T00:00:00.000Z", "{oldest}");
    // One expired notice per round that dropped something, not one per reading.
    let notice = ws.next().await;
    assert_eq!(notice["type"], "expired", "{notice}");
    eprintln!("kept {kept} of {written}; oldest {oldest}; overshoot {per_round} bytes");
}
