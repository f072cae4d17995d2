//! Seqs are never reused, in relaxed durability too, across kill -9.
//!
//! In relaxed mode events go out before the fsync, so a kill -9 can lose a
//! write whose event a subscriber has already seen. After the restart the
//! next write must get a larger seq than anything seen before the kill (a
//! gap is fine), and a resume from the last seq seen must work and bring
//! the new write.

mod common;

use std::time::Duration;

use serde_json::{json, Value};

use common::live::Ws;
use common::{client, send, Options, TestServer};

/// Nothing is flushed on a timer while the test runs.
const RELAXED: [&str; 4] = ["--durability", "relaxed", "--flush-ms", "60000"];

fn options(args: &[&str]) -> Options {
    Options {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..Options::default()
    }
}

/// A server in `dir` started with `args`, its admin's token, and the
/// collection `log` that anyone may read.
async fn with_log(dir: &std::path::Path, args: &[&str]) -> (TestServer, String) {
    let server = TestServer::start_in(dir, options(args));
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "log", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    (server, admin)
}

async fn create(server: &TestServer, token: &str, n: u64) -> Value {
    let (status, record) = send(
        client()
            .post(server.url("/api/collections/log/records"))
            .bearer_auth(token)
            .json(&json!({"n": n})),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    record
}

/// The next event on `ws`, as (seq, record id).
async fn event(ws: &mut Ws) -> (u64, String) {
    let event = ws.next().await;
    assert_eq!(event["type"], "event", "{event}");
    let seq = event["seq"].as_u64().expect("an event has a seq");
    (seq, event["record"]["id"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn relaxed_mode_never_reuses_a_seq_after_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The admin and the collection, durably (sync mode).
    let (mut server, _) = with_log(dir.path(), &["--durability", "sync"]).await;
    assert!(server.terminate(), "clean stop");

    let mut server = TestServer::start_in(dir.path(), options(&RELAXED));
    let admin = server.admin_token().await;
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "log"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut seen = Vec::new();
    for n in 0..3 {
        let id = create(&server, &admin, n).await["id"].clone();
        let (seq, event_id) = event(&mut ws).await;
        assert_eq!(json!(event_id), id);
        seen.push((seq, event_id));
    }
    let (last_seen, lost) = seen.last().cloned().expect("three events");
    server.kill();

    let server = TestServer::start_in(dir.path(), options(&RELAXED));
    let admin = server.admin_token().await;
    // The point of the test is a write that was seen and then lost.
    let (status, _) = send(
        client()
            .get(server.url(&format!("/api/collections/log/records/{lost}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 404, "the last write was not lost: nothing to test");

    let mut live = Ws::connect(&server, None).await;
    let reply = live
        .request(json!({"action": "subscribe", "topic": "log"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut resumed = Ws::connect(&server, None).await;
    let resume = resumed
        .request(json!({"action": "subscribe", "topic": "log", "since": last_seen}))
        .await;

    let id = create(&server, &admin, 3).await["id"].clone();
    let (seq, event_id) = event(&mut live).await;
    assert_eq!(json!(event_id), id);
    assert!(
        seq > last_seen,
        "seq {seq} was handed out again: a subscriber saw {last_seen} (record {lost}) before \
         the kill"
    );
    assert_eq!(
        resume["type"], "ok",
        "a resume from the last seq seen before the kill: {resume}"
    );
    assert_eq!(event(&mut resumed).await, (seq, event_id));
    resumed.expect_quiet(Duration::from_millis(200)).await;
}

/// More messages without history than one seq reservation block covers,
/// then kill -9: their seqs are handed out at once, never stored, so only
/// the reservation on disk keeps the next start from handing them out
/// again.
#[tokio::test]
async fn unstored_messages_never_reuse_a_seq_after_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fast = ["--durability", "sync", "--message-rate", "1000000"];
    let (mut server, admin) = with_log(dir.path(), &fast).await;
    let (status, topic) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(&admin)
            .json(&json!({"name": "pings", "history": 0, "publish": "true", "subscribe": "true"})),
    )
    .await;
    assert_eq!(status, 201, "{topic}");
    let mut ws = Ws::connect(&server, None).await;
    // Past one reservation block (10,000 seqs), in flights of 500.
    let mut last_seen = 0;
    for flight in 0..24 {
        for n in 0..500 {
            ws.send(
                json!({"action": "publish", "id": flight * 500 + n, "topic": "pings", "data": {}}),
            )
            .await;
        }
        for _ in 0..500 {
            let reply = ws.next().await;
            assert_eq!(reply["type"], "ok", "{reply}");
            let seq = reply["seq"]
                .as_u64()
                .expect("a publish is answered with its seq");
            last_seen = last_seen.max(seq);
        }
    }
    assert!(last_seen > 10_000, "only {last_seen} seqs handed out");
    server.kill();

    let server = TestServer::start_in(dir.path(), options(&fast));
    let admin = server.admin_token().await;
    let mut live = Ws::connect(&server, None).await;
    let reply = live
        .request(json!({"action": "subscribe", "topic": "log"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    create(&server, &admin, 0).await;
    let (seq, _) = event(&mut live).await;
    assert!(
        seq > last_seen,
        "seq {seq} was handed out again: a publisher was answered {last_seen} before the kill"
    );
}
