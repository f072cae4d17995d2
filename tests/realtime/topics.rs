//! Custom topics: publish, subscribe, history and deletion.

use super::*;

async fn create_topic(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn custom_topics_publish_subscribe_history_and_deletion() {
    let (server, admin, ann, bob) = notes_server().await;
    let (status, topic) = create_topic(
        &server,
        &ann,
        json!({"name": "chat", "history": 2, "publish": "@user != null", "subscribe": "@user != null"}),
    )
    .await;
    assert_eq!(status, 201, "{topic}");
    assert!(topic["owner"].is_string());
    let (status, body) = create_topic(&server, &ann, json!({"name": "notes"})).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));

    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    let reply = bob_ws
        .request(json!({"action": "subscribe", "topic": "chat"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut anon_ws = Ws::connect(&server, None).await;
    let reply = anon_ws
        .request(json!({"action": "subscribe", "topic": "chat"}))
        .await;
    assert_eq!(reply["code"], "forbidden");

    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        let reply = ann_ws
            .request(json!({"action": "publish", "topic": "chat", "data": {"n": n}}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
        seqs.push(reply["seq"].as_u64().unwrap());
    }
    for n in 0..3 {
        let message = bob_ws.next().await;
        assert_eq!(message["type"], "message");
        assert_eq!(message["data"]["n"], n);
        assert_eq!(message["seq"].as_u64().unwrap(), seqs[n as usize]);
        assert!(message["from"].is_string());
    }
    // REST publish, then a resume that replays the last two kept.
    let (status, body) = send(
        client()
            .post(server.url("/api/topics/chat/messages"))
            .bearer_auth(&admin)
            .json(&json!({"data": {"n": 3}})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(bob_ws.next().await["data"]["n"], 3);
    let mut late = Ws::connect(&server, Some(&bob)).await;
    let reply = late
        .request(json!({"action": "subscribe", "topic": "chat", "since": seqs[1]}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    assert_eq!(late.next().await["data"]["n"], 2);
    assert_eq!(late.next().await["data"]["n"], 3);
    let reply = late
        .request(json!({"action": "subscribe", "topic": "chat", "since": seqs[0] - 1}))
        .await;
    assert_eq!(reply["code"], "history_expired", "{reply}");
    // n = 0 and 1 fell out of the two kept: n = 2 is the oldest still kept.
    assert_eq!(reply["details"]["oldest"], json!(seqs[2]), "{reply}");
    let (status, sse) = Sse::open(
        &server,
        &format!("topic=chat&token={bob}"),
        &[("Last-Event-ID", &seqs[0].to_string())],
    )
    .await;
    assert_eq!(status, 410);
    let body = sse.body_json().await;
    assert_eq!(error_code(&body), "history_expired");
    assert_eq!(body["error"]["details"]["oldest"], json!(seqs[2]), "{body}");

    let (status, body) = send(
        client()
            .post(server.url("/api/topics/notes/messages"))
            .bearer_auth(&admin)
            .json(&json!({"data": 1})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    assert_eq!(delete(&server.url("/api/topics/chat"), &bob).await, 403);
    assert_eq!(delete(&server.url("/api/topics/notes"), &admin).await, 400);
    assert_eq!(delete(&server.url("/api/topics/chat"), &ann).await, 204);
    let notice = bob_ws.next().await;
    assert_eq!(
        notice,
        json!({"type": "unsubscribed", "topic": "chat", "reason": "topic_deleted"})
    );
}

#[tokio::test]
async fn a_topics_subscribe_rule_that_reads_the_message_is_judged_on_each_one() {
    let (server, _admin, ann, bob) = notes_server().await;
    let (status, topic) = create_topic(
        &server,
        &ann,
        json!({"name": "alerts", "publish": "true", "subscribe": "level != 'secret'"}),
    )
    .await;
    assert_eq!(status, 201, "{topic}");
    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    let reply = bob_ws
        .request(json!({"action": "subscribe", "topic": "alerts"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    for (n, level) in ["secret", "info", "secret", "warning"].iter().enumerate() {
        let reply = ann_ws
            .request(
                json!({"action": "publish", "topic": "alerts", "data": {"n": n, "level": level}}),
            )
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    for expected in [1, 3] {
        let message = bob_ws.next().await;
        assert_eq!(message["type"], "message", "{message}");
        assert_eq!(message["data"]["n"], expected, "{message}");
    }
}
