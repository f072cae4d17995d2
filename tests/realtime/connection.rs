//! The connection itself: refusals, tokens and their expiry, identity
//! changes, limits, keep-alive, SSE headers.

use super::*;

#[tokio::test]
async fn refusals_and_bad_requests_keep_the_connection_open() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "private", "rules": {"list": "@user != null", "view": "@user != null"}}),
        )
        .await;
    server
        .create_collection(&admin, json!({"name": "locked"}))
        .await;
    let mut ws = Ws::connect(&server, None).await;
    for (topic, code) in [
        ("private", "forbidden"),
        ("locked", "forbidden"),
        ("_users", "forbidden"),
        ("nope", "not_found"),
    ] {
        let reply = ws
            .request(json!({"action": "subscribe", "topic": topic}))
            .await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("error"), Some(code)),
            "{topic}: {reply}"
        );
    }
    ws.send(json!("not an object")).await;
    assert_eq!(ws.next().await["code"], "bad_request");
    ws.stream
        .send(tokio_tungstenite::tungstenite::Message::text("{oops"))
        .await
        .unwrap();
    assert_eq!(ws.next().await["code"], "bad_request");
    let reply = ws.request(json!({"action": "dance"})).await;
    assert_eq!(reply["code"], "bad_request");
    let reply = ws.request(json!({"action": "ping"})).await;
    assert_eq!(reply["type"], "pong");
}

#[tokio::test]
async fn a_bad_token_is_refused_before_the_upgrade() {
    let server = TestServer::start();
    let url = server.base.replacen("http://", "ws://", 1) + "/api/realtime?token=nonsense";
    let error = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other}"),
    }
    let (status, body) =
        send(client().get(server.url("/api/realtime/sse?topic=x&token=nonsense"))).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
}

#[tokio::test]
async fn identity_changes_close_the_users_connections() {
    let (server, admin, ann, _bob) = notes_server().await;
    let ann_id = user_id(&server, &ann).await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    assert_eq!(
        ws.request(json!({"action": "subscribe", "topic": "notes"}))
            .await["type"],
        "ok"
    );
    let (status, _) = send(
        client()
            .patch(server.url(&format!("/api/users/{}", ann_id.as_str().unwrap())))
            .bearer_auth(&admin)
            .json(&json!({"disabled": true})),
    )
    .await;
    assert_eq!(status, 200);
    let closed = ws.closed().await;
    assert_eq!(closed.code, Some(4001), "{closed:?}");
}

#[tokio::test]
async fn expiring_tokens_close_with_4001_unless_refreshed_through_auth() {
    // Token expiry has whole-second resolution: a 6 s token lives 5 to 6 s.
    // The first token expires within 6 s of the start, the fresh one no
    // sooner than 7 s; the quiet window ends in between.
    let server = TestServer::start_with(options(&["--token-ttl", "6s"]));
    let admin = server.admin_token().await;
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let fresh = server.admin_token().await;
    let reply = ws.request(json!({"action": "auth", "token": fresh})).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let reply = ws
        .request(json!({"action": "auth", "token": "garbage"}))
        .await;
    assert_eq!(reply["code"], "unauthorized");
    // The first token's expiry passes quietly; the fresh one's does not.
    ws.expect_quiet(Duration::from_millis(4000)).await;
    let error = ws.next().await;
    assert_eq!(error["code"], "token_expired", "{error}");
    let closed = ws.closed().await;
    assert_eq!(closed.code, Some(4001), "{closed:?}");
}

/// An SSE stream ends when its token expires, with an `error` event that
/// says so, while events before it still arrive.
#[tokio::test]
async fn an_sse_stream_ends_with_token_expired_when_its_token_does() {
    // Whole-second resolution: a 3 s token lives 2 to 3 s.
    let server = TestServer::start_with(options(&["--token-ttl", "3s"]));
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "feed", "rules": {"list": "true", "view": "true", "create": "true"}}),
        )
        .await;
    let started = tokio::time::Instant::now();
    let query = format!("topic=feed&token={admin}");
    let (status, mut sse) = Sse::open(&server, &query, &[]).await;
    assert_eq!(status, 200);
    let (status, record) = send(
        client()
            .post(server.url("/api/collections/feed/records"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    let event = sse.next().await.expect("the create");
    assert_eq!(event.event, "event", "{event:?}");
    let error = sse.next().await.expect("an error before the end");
    assert_eq!(error.event, "error", "{error:?}");
    assert_eq!(error.data["code"], "token_expired", "{error:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before the token expired"
    );
    assert!(sse.next().await.is_none(), "the stream ends after it");
}

#[tokio::test]
async fn subscription_size_and_rate_limits() {
    let server = TestServer::start_with(options(&[
        "--max-subscriptions",
        "2",
        "--max-message-bytes",
        "1024",
        "--message-rate",
        "5",
    ]));
    let admin = server.admin_token().await;
    for name in ["a", "b", "c"] {
        server
            .create_collection(&admin, json!({"name": name}))
            .await;
    }
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topics": ["a", "b", "c"]}))
        .await;
    assert_eq!(reply["code"], "too_many_subscriptions", "{reply}");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "a,b"}))
        .await;
    assert_eq!(reply["topics"], json!(["a", "b"]), "{reply}");
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "c"}))
        .await;
    assert_eq!(reply["code"], "too_many_subscriptions", "{reply}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    for n in 0..12 {
        ws.send(json!({"id": n, "action": "ping"})).await;
    }
    let mut limited = 0;
    for _ in 0..12 {
        if ws.next().await["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 5, "{limited} of 12 rate limited");

    ws.send(json!({"action": "ping", "pad": "x".repeat(2048)}))
        .await;
    let closed = ws.closed().await;
    assert_eq!(closed.code, Some(1009), "{closed:?}");
}

#[tokio::test]
async fn the_token_can_ride_in_the_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let url = server.base.replacen("http://", "ws://", 1) + "/api/realtime";
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        format!("pulsebase.v1, bearer.{admin}").parse().unwrap(),
    );
    let (mut stream, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.headers()["sec-websocket-protocol"], "pulsebase.v1");
    use futures_util::StreamExt;
    let welcome = stream.next().await.unwrap().unwrap();
    let welcome: Value = serde_json::from_str(welcome.to_text().unwrap()).unwrap();
    assert_eq!(welcome["user"]["email"], common::ADMIN_EMAIL);
}

#[tokio::test]
async fn revoking_an_api_key_closes_its_connections() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "gateway", "roles": ["device"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let mut ws = Ws::connect(&server, key["secret"].as_str()).await;
    assert_eq!(ws.request(json!({"action": "ping"})).await["type"], "pong");
    let (status, _) = send(
        client()
            .delete(server.url(&format!("/api/keys/{}", key["id"].as_str().unwrap())))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let closed = ws.closed().await;
    assert_eq!(closed.code, Some(4001), "{closed:?}");
}

#[tokio::test]
async fn sse_is_unbuffered_uncached_and_beats_while_idle() {
    let heartbeat = Duration::from_millis(200);
    let server = TestServer::start_with(options(&["--heartbeat", "200ms"]));
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "feed", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let (status, mut sse) = Sse::open(&server, "topic=feed", &[]).await;
    assert_eq!(status, 200);
    let headers = sse.headers();
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    for _ in 0..2 {
        let block = sse
            .next_block(heartbeat * 3)
            .await
            .expect("a heartbeat on the idle stream within the interval");
        let field = |name: &str| {
            block
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
        };
        assert_eq!(field("event:"), Some("heartbeat"), "{block:?}");
        assert_eq!(field("id:"), None, "a heartbeat has no seq: {block:?}");
        let data: Value = serde_json::from_str(field("data:").unwrap()).unwrap();
        assert_eq!(data["type"], "heartbeat", "{block:?}");
        assert!(data["ts"].is_string(), "{block:?}");
    }
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_while_a_live_one_stays() {
    // A peer silent (not even a pong) for two heartbeats and 5 s is dropped,
    // so even with a short heartbeat this takes about 6 s.
    let heartbeat = Duration::from_millis(250);
    let grace = heartbeat * 2 + Duration::from_secs(5);
    let server = TestServer::start_with(options(&["--heartbeat", "250ms"]));
    let admin = server.admin_token().await;
    // The watcher is also the live peer: tungstenite answers pings while
    // it reads.
    let mut watcher = Ws::connect(&server, Some(&admin)).await;
    let reply = watcher
        .request(json!({"action": "subscribe", "topic": "_connections"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");

    let mut dead = RawWs::connect(&server, None).await;
    let started = tokio::time::Instant::now();
    let deadline = started + grace + heartbeat * 4;
    let welcome = dead.read_frame(deadline).await.expect("a welcome frame");
    let welcome: Value = serde_json::from_slice(&welcome.payload).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    // `next` restarts its wait on every heartbeat, so bound it here.
    let notice = tokio::time::timeout(common::live::WAIT, watcher.next())
        .await
        .expect("no connect notice in time");
    assert_eq!(
        (&notice["data"]["event"], &notice["data"]["connection"]),
        (&json!("connect"), &welcome["connection"]),
        "{notice}"
    );

    // The dead peer reads everything and never answers; the watcher reads
    // (and so answers pings) until it hears of the drop.
    let silence = async {
        let mut pings = 0;
        while let Some(frame) = dead.read_frame(deadline).await {
            if frame.opcode == OPCODE_PING {
                pings += 1;
            }
        }
        (started.elapsed(), pings)
    };
    let notice = tokio::time::timeout_at(deadline, watcher.next());
    let ((dropped_after, pings), notice) = tokio::join!(silence, notice);
    let notice = notice.expect("no disconnect notice in time");
    assert!(pings >= 2, "the server pinged {pings} times");
    // Not before its grace (checked on the heartbeat tick), nor long after.
    assert!(
        dropped_after >= grace - heartbeat && dropped_after <= grace + heartbeat * 4,
        "dropped after {dropped_after:?}"
    );
    assert_eq!(
        (&notice["data"]["event"], &notice["data"]["connection"]),
        (&json!("disconnect"), &welcome["connection"]),
        "{notice}"
    );
    // Answering pings alone keeps the watcher connected past its own grace.
    watcher.stays_open(heartbeat * 4).await;
    let pong = tokio::time::timeout(
        common::live::WAIT,
        watcher.request(json!({"action": "ping"})),
    )
    .await
    .expect("no pong in time");
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn stopping_the_server_closes_websockets_and_ends_sse_streams_at_once() {
    let mut server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "feed", "rules": {"list": "true"}}))
        .await;
    let mut ws = Ws::connect(&server, None).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "feed"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let (status, mut sse) = Sse::open(&server, "topic=feed", &[]).await;
    assert_eq!(status, 200);

    let started = std::time::Instant::now();
    let stopping = tokio::task::spawn_blocking(move || server.terminate());
    // Both clients read while the server stops, as real ones do (the
    // WebSocket answers the close frame).
    let (closed, sse_ended) = tokio::join!(ws.closed(), sse.next());
    let exited = stopping.await.unwrap();
    assert!(exited, "a clean exit");
    // Open connections hear of the stop when it starts: the server does not
    // sit out its grace period (10 s) waiting for them to end.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "stopping took {took:?} with a WebSocket and an SSE stream open"
    );
    assert_eq!(closed.code, Some(1001), "{closed:?}");
    assert!(sse_ended.is_none(), "the SSE stream ended");
}
