//! Nothing lost: resume from a seq, slow consumers, kill -9.

use super::*;

/// An SSE stream cut before its first event still has a resume point:
/// its opening `ok` carries one as its id, so what happens while it is
/// away arrives on reconnect (an EventSource sends that id back itself).
#[tokio::test]
async fn an_sse_stream_cut_before_any_event_resumes_from_its_opening() {
    let (server, _admin, ann, _bob) = notes_server().await;
    server
        .create_record(&ann, "notes", json!({"text": "before"}))
        .await;
    let (status, sse) = Sse::open(&server, &format!("topic=notes&token={ann}"), &[]).await;
    assert_eq!(status, 200);
    let opening = sse.opening.clone().unwrap();
    let resume_from = opening.id.clone().expect("the opening has an id");
    assert_eq!(opening.data["seq"].to_string(), resume_from, "{opening:?}");
    assert_eq!(opening.data["topic"], "notes");
    assert!(opening.data["epoch"].is_string(), "{opening:?}");
    drop(sse);
    let missed = server
        .create_record(&ann, "notes", json!({"text": "while away"}))
        .await;
    let (_, mut sse) = Sse::open(
        &server,
        &format!("topic=notes&token={ann}"),
        &[("Last-Event-ID", &resume_from)],
    )
    .await;
    let event = sse.next().await.unwrap();
    assert_eq!(event.data["record"]["id"], missed["id"], "{event:?}");
    // Resuming, the opening names the resume point, not the live edge, so
    // a cut during the replay loses nothing either.
    assert_eq!(sse.opening.unwrap().id, Some(resume_from));
}

#[tokio::test]
async fn resume_replays_the_gap_without_duplicates() {
    let (server, _admin, ann, _bob) = notes_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes"}))
        .await;
    let start = reply["seq"].as_u64().unwrap();
    server
        .create_record(&ann, "notes", json!({"text": "a"}))
        .await;
    let seen = ws.next().await["seq"].as_u64().unwrap();
    drop(ws);
    let mut missed = Vec::new();
    for text in ["b", "c", "d"] {
        missed.push(
            server
                .create_record(&ann, "notes", json!({"text": text}))
                .await["id"]
                .clone(),
        );
    }
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "since": seen}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let live = server
        .create_record(&ann, "notes", json!({"text": "e"}))
        .await;
    let mut got = Vec::new();
    let mut last = seen;
    for _ in 0..4 {
        let event = ws.next().await;
        let seq = event["seq"].as_u64().unwrap();
        assert!(seq > last, "seq order: {seq} after {last}");
        last = seq;
        got.push(event["record"]["id"].clone());
    }
    missed.push(live["id"].clone());
    assert_eq!(got, missed);
    ws.expect_quiet(Duration::from_millis(300)).await;
    assert!(start < seen);

    // SSE resumes from Last-Event-ID the same way.
    let (status, mut sse) = Sse::open(
        &server,
        &format!("topic=notes&token={ann}"),
        &[("Last-Event-ID", &seen.to_string())],
    )
    .await;
    assert_eq!(status, 200);
    let mut ids = Vec::new();
    for _ in 0..4 {
        let event = sse.next().await.unwrap();
        assert_eq!(event.event, "event");
        assert_eq!(
            event.id.as_deref(),
            Some(event.data["seq"].to_string().as_str())
        );
        ids.push(event.data["record"]["id"].clone());
    }
    assert_eq!(ids, missed);
}

#[tokio::test]
async fn a_slow_consumer_is_closed_while_a_fast_one_loses_nothing() {
    // The slow client never reads, so once its socket buffers are full (a
    // few MB: some 160 of these events) its outbox overflows 40 events
    // later, well within the 10 s the server gives a stuck write; the fast
    // one reads each batch of 100, which its socket buffers alone can hold.
    // The cap in messages is the bound here: the one in bytes stays above
    // 40 of these events whatever its default.
    let server = TestServer::start_with(options(&[
        "--outbox",
        "40",
        "--outbox-bytes",
        "4194304",
        "--durability",
        "relaxed",
    ]));
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "feed", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let mut slow = Ws::connect(&server, Some(&admin)).await;
    let mut fast = Ws::connect(&server, Some(&admin)).await;
    for ws in [&mut slow, &mut fast] {
        assert_eq!(
            ws.request(json!({"action": "subscribe", "topic": "feed"}))
                .await["type"],
            "ok"
        );
    }
    let padding = "x".repeat(64 * 1024);
    let url = server.url("/api/collections/feed/records");
    let writes_and_fast_reads = async {
        let mut last = 0;
        for _ in 0..6 {
            let batch: Vec<Value> = (0..100).map(|_| json!({"pad": padding})).collect();
            let (status, _) = send(client().post(&url).bearer_auth(&admin).json(&batch)).await;
            assert_eq!(status, 201);
            for _ in 0..100 {
                let event = fast.next().await;
                let seq = event["seq"].as_u64().unwrap();
                assert!(seq > last, "in order, no duplicates");
                last = seq;
            }
        }
    };
    // The slow client starts reading only once the server has closed it:
    // the close frame waits behind its unread events, and the server gives
    // a peer that never reads 10 s for it, which a loaded machine running
    // the fast side to the end could exceed.
    let slow_side = async {
        let stats = server.url("/api/stats");
        for _ in 0..1200 {
            let (_, body) = send(client().get(&stats).bearer_auth(&admin)).await;
            if body["slow_consumer_closes"].as_u64().unwrap_or(0) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slow.closed().await
    };
    let ((), closed) = tokio::join!(writes_and_fast_reads, slow_side);
    assert_eq!(closed.code, Some(4008), "{closed:?}");
    assert_eq!(closed.reason, "slow_consumer");
}

#[tokio::test]
async fn every_acknowledged_write_is_replayed_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), common::Options::default());
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "log", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let mut ws = Ws::connect(&server, None).await;
    let since = ws
        .request(json!({"action": "subscribe", "topic": "log"}))
        .await["seq"]
        .as_u64()
        .unwrap();
    let mut acknowledged = Vec::new();
    for n in 0..20 {
        acknowledged.push(server.create_record(&admin, "log", json!({"n": n})).await["id"].clone());
    }
    server.kill();
    let server = TestServer::start_in(dir.path(), common::Options::default());
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "log", "since": since}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut replayed = Vec::new();
    for _ in 0..20 {
        replayed.push(ws.next().await["record"]["id"].clone());
    }
    assert_eq!(replayed, acknowledged);
}
