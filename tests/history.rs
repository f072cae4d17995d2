//! The change log as subscribers see it: collections by id across a drop,
//! one seq-ordered replay for several topics, epochs, positions this log
//! never reached, records leaving and entering view, and re-subscribing
//! without duplicates. Real server, real sockets.

mod common;

use std::time::Duration;

use common::live::{Sse, Ws};
use common::{client, send, TestServer};
use serde_json::{json, Value};

async fn drop_collection(server: &TestServer, token: &str, name: &str) {
    let (status, body) = send(
        client()
            .delete(server.url(&format!("/api/collections/{name}")))
            .bearer_auth(token),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

/// Frames until nothing arrives for a short while.
async fn drain(ws: &mut Ws) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Ok(Some(frame)) = ws.read(Duration::from_millis(700)).await {
        frames.push(frame);
    }
    frames
}

#[tokio::test]
async fn a_dropped_collections_history_never_reaches_its_namesake() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "vault", "fields": {"secret": {"type": "string"}}, "protected": ["secret"]}),
        )
        .await;
    let old = server
        .create_record(&admin, "vault", json!({"secret": "launch-code"}))
        .await;
    // A subscriber of the old collection hears of the drop after its
    // pending events.
    let mut admin_ws = Ws::connect(&server, Some(&admin)).await;
    let reply = admin_ws
        .request(json!({"action": "subscribe", "topic": "vault"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    server
        .create_record(&admin, "vault", json!({"secret": "second"}))
        .await;
    drop_collection(&server, &admin, "vault").await;
    // The hub may still be releasing the first record's change when the
    // subscription arrives (under load it was delivered too), so read
    // events up to the end of the subscription: the pending `second` must
    // come before it.
    let mut secrets = Vec::new();
    let ended = loop {
        let message = admin_ws.next().await;
        if message["type"] != "event" {
            break message;
        }
        assert_eq!(message["op"], "create", "{message}");
        secrets.push(message["record"]["secret"].clone());
    };
    assert_eq!(secrets.last(), Some(&json!("second")), "{secrets:?}");
    assert_eq!(
        ended,
        json!({"type": "unsubscribed", "topic": "vault", "reason": "collection_dropped"})
    );

    server
        .create_collection(
            &admin,
            json!({"name": "vault", "strict": false, "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let new = server
        .create_record(&admin, "vault", json!({"note": "public"}))
        .await;

    // Anonymous, from the very beginning: only the new collection's record.
    // Before the log named collections by id, the old records arrived with
    // their protected field.
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "vault", "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let frames = drain(&mut ws).await;
    let ids: Vec<&Value> = frames.iter().map(|f| &f["record"]["id"]).collect();
    assert_eq!(ids, [&new["id"]], "{frames:?}");
    assert!(!frames.iter().any(|f| f.to_string().contains("launch-code")));
    let (status, mut sse) = Sse::open(&server, "topic=vault&since=0", &[]).await;
    assert_eq!(status, 200);
    let first = sse.next().await.expect("an event");
    assert_eq!(first.data["record"]["id"], new["id"], "{first:?}");
    assert_ne!(first.data["record"]["id"], old["id"]);
}

#[tokio::test]
async fn several_topics_resume_in_one_seq_ordered_pass() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    for name in ["alpha", "beta"] {
        server
            .create_collection(
                &admin,
                json!({"name": name, "strict": false, "rules": {"list": "true", "view": "true"}}),
            )
            .await;
    }
    for n in 0..6 {
        let name = if n % 2 == 0 { "alpha" } else { "beta" };
        server.create_record(&admin, name, json!({"n": n})).await;
    }
    // Before, each topic was replayed in turn: seqs arrived 1, 3, 5, 2, 4, 6
    // and one Last-Event-ID could not resume both.
    let (status, mut sse) =
        Sse::open(&server, "topic=alpha&topic=beta", &[("last-event-id", "0")]).await;
    assert_eq!(status, 200);
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let event = sse.next().await.expect("event");
        seqs.push(event.id.expect("id").parse::<u64>().expect("seq"));
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "SSE replay order");
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topics": ["alpha", "beta"], "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let ws_seqs: Vec<u64> = drain(&mut ws)
        .await
        .iter()
        .map(|f| f["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(ws_seqs, sorted, "WebSocket replay order");
}

#[tokio::test]
async fn positions_from_another_history_are_history_expired() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "strict": false, "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    server.create_record(&admin, "notes", json!({"n": 1})).await;
    let mut ws = Ws::connect(&server, None).await;
    let epoch = ws.welcome["epoch"]
        .as_str()
        .expect("welcome names the epoch")
        .to_owned();
    let seq = ws.welcome["seq"].as_u64().expect("seq");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "since": seq, "epoch": epoch}))
        .await;
    assert_eq!(
        (reply["type"].as_str(), reply["epoch"].as_str()),
        (Some("ok"), Some(epoch.as_str())),
        "{reply}"
    );
    for bad in [
        json!({"action": "subscribe", "topic": "notes", "since": seq + 5}),
        json!({"action": "subscribe", "topic": "notes", "since": 0, "epoch": "not-this-one"}),
    ] {
        let reply = ws.request(bad).await;
        assert_eq!(reply["code"], "history_expired", "{reply}");
    }
    let (status, sse) = Sse::open(&server, &format!("topic=notes&since={}", seq + 5), &[]).await;
    assert_eq!(status, 410);
    assert_eq!(sse.body_json().await["error"]["code"], "history_expired");
    let (status, _) = Sse::open(
        &server,
        &format!("topic=notes&since={seq}&epoch={epoch}"),
        &[],
    )
    .await;
    assert_eq!(status, 200);

    // A topic that keeps no history cannot be resumed.
    let (status, body) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(&admin)
            .json(&json!({"name": "chat", "subscribe": "true", "publish": "true"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        client()
            .post(server.url("/api/topics/chat/messages"))
            .bearer_auth(&admin)
            .json(&json!({"data": {"text": "missed"}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "chat", "since": seq}))
        .await;
    assert_eq!(reply["code"], "history_expired", "{reply}");
}

#[tokio::test]
async fn records_leave_and_enter_a_subscriptions_view() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "tickets", "fields": {"status": {"type": "string"}, "public": {"type": "boolean"}},
                   "protected": ["status"],
                   "rules": {"list": "public = true", "view": "public = true"}}),
        )
        .await;
    let mut anon = Ws::connect(&server, None).await;
    let reply = anon
        .request(json!({"action": "subscribe", "topic": "tickets"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut open_only = Ws::connect(&server, Some(&admin)).await;
    let reply = open_only
        .request(json!({"action": "subscribe", "topic": "tickets", "filter": "status = 'open'"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");

    let record = server
        .create_record(&admin, "tickets", json!({"status": "open", "public": true}))
        .await;
    let id = record["id"].as_str().expect("id");
    let created = anon.next().await;
    assert_eq!(
        (created["op"].as_str(), created.get("reason")),
        (Some("create"), None),
        "{created}"
    );
    assert!(created["record"].get("status").is_none(), "{created}");
    assert_eq!(open_only.next().await["op"], "create");

    // Out of view (rule) for the anonymous one, out of the filter for the
    // other: both hear `left`, with only the id.
    server
        .patch_record(
            &admin,
            "tickets",
            id,
            json!({"public": false, "status": "closed"}),
        )
        .await;
    for ws in [&mut anon, &mut open_only] {
        let left = ws.next().await;
        assert_eq!(
            (
                left["op"].as_str(),
                left["reason"].as_str(),
                &left["record"]
            ),
            (Some("delete"), Some("left"), &json!({"id": id})),
            "{left}"
        );
    }
    // Changes out of view are not delivered at all.
    server
        .patch_record(&admin, "tickets", id, json!({"status": "pending"}))
        .await;
    anon.expect_quiet(Duration::from_millis(500)).await;
    // Back in view: `create` with reason `entered`.
    server
        .patch_record(
            &admin,
            "tickets",
            id,
            json!({"public": true, "status": "open"}),
        )
        .await;
    for ws in [&mut anon, &mut open_only] {
        let entered = ws.next().await;
        assert_eq!(
            (
                entered["op"].as_str(),
                entered["reason"].as_str(),
                &entered["record"]["id"]
            ),
            (Some("create"), Some("entered"), &json!(id)),
            "{entered}"
        );
    }
    let start = anon.welcome["seq"].as_u64().expect("seq");
    // Replay tells the same story.
    let mut replay = Ws::connect(&server, None).await;
    let reply = replay
        .request(json!({"action": "subscribe", "topic": "tickets", "since": start}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let story: Vec<(String, Option<String>)> = drain(&mut replay)
        .await
        .iter()
        .map(|f| {
            (
                f["op"].as_str().unwrap_or("").to_owned(),
                f["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        story,
        [
            ("create".to_owned(), None),
            ("delete".to_owned(), Some("left".to_owned())),
            ("create".to_owned(), Some("entered".to_owned()))
        ]
    );
}

#[tokio::test]
async fn resubscribing_with_since_sends_nothing_twice() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "strict": false, "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    server.create_record(&admin, "notes", json!({"n": 1})).await;
    assert_eq!(ws.next().await["op"], "create");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    ws.expect_quiet(Duration::from_millis(700)).await;
    server.create_record(&admin, "notes", json!({"n": 2})).await;
    let next = ws.next().await;
    assert_eq!(next["record"]["n"], 2, "{next}");
    ws.expect_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_long_replay_streams_in_order_before_live_events() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "feed", "strict": false, "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let batch: Vec<Value> = (0..1200).map(|n| json!({"n": n})).collect();
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/feed/records"))
            .bearer_auth(&admin)
            .json(&batch),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "feed", "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    // Written while the replay is still being read: they follow it.
    for n in 1200..1205 {
        server.create_record(&admin, "feed", json!({"n": n})).await;
    }
    let mut last = 0;
    for n in 0..1205 {
        let event = ws.next().await;
        assert_eq!(event["record"]["n"], n, "{event}");
        let seq = event["seq"].as_u64().expect("seq");
        assert!(seq > last, "seq order, no duplicate");
        last = seq;
    }
    ws.expect_quiet(Duration::from_millis(500)).await;
}
