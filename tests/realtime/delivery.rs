//! Who receives which event: rules, ops, filters, record topics, tenants,
//! retention deletes.

use super::*;

#[tokio::test]
async fn each_subscriber_sees_exactly_what_its_rules_allow() {
    let (server, admin, ann, bob) = notes_server().await;
    let mut admin_ws = Ws::connect(&server, Some(&admin)).await;
    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    let mut anon_ws = Ws::connect(&server, None).await;
    assert_eq!(ann_ws.welcome["user"]["email"], "ann@example.com");
    assert_eq!(anon_ws.welcome["user"], Value::Null);
    for ws in [&mut admin_ws, &mut ann_ws, &mut bob_ws, &mut anon_ws] {
        let reply = ws
            .request(json!({"action": "subscribe", "topic": "notes"}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
        assert_eq!(reply["topic"], "notes");
        assert!(reply["seq"].is_u64());
    }

    let private = server
        .create_record(&ann, "notes", json!({"text": "mine", "secret": "s1"}))
        .await;
    let event = ann_ws.next().await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["op"], "create");
    assert_eq!(event["topic"], "notes");
    assert_eq!(event["record"]["id"], private["id"]);
    assert!(
        event["record"].get("secret").is_none(),
        "protected: {event}"
    );
    let event = admin_ws.next().await;
    assert_eq!(
        event["record"]["secret"], "s1",
        "admins see protected fields"
    );

    let shared = server
        .create_record(
            &ann,
            "notes",
            json!({"text": "for bob", "shared_with": [user_id(&server, &bob).await]}),
        )
        .await;
    let public = server
        .create_record(&ann, "notes", json!({"text": "all", "public": true}))
        .await;
    assert_eq!(bob_ws.next().await["record"]["id"], shared["id"]);
    assert_eq!(bob_ws.next().await["record"]["id"], public["id"]);
    assert_eq!(anon_ws.next().await["record"]["id"], public["id"]);
    bob_ws.expect_quiet(Duration::from_millis(300)).await;
    anon_ws.expect_quiet(Duration::from_millis(300)).await;
    assert_eq!(ann_ws.next().await["record"]["id"], shared["id"]);
    let before_delete = ann_ws.next().await;
    assert_eq!(before_delete["record"]["id"], public["id"]);

    // A delete is judged by the record as it was.
    let url = server.url(&format!(
        "/api/collections/notes/records/{}",
        shared["id"].as_str().unwrap()
    ));
    assert_eq!(delete(&url, &ann).await, 204);
    let event = bob_ws.next().await;
    assert_eq!(
        (event["op"].as_str(), &event["record"]["id"]),
        (Some("delete"), &shared["id"])
    );
    anon_ws.expect_quiet(Duration::from_millis(300)).await;
    let deleted = ann_ws.next().await;
    assert_eq!(deleted["op"], "delete");
    assert!(deleted["seq"].as_u64().unwrap() > before_delete["seq"].as_u64().unwrap());
}

#[tokio::test]
async fn ops_filter_and_record_topics() {
    let (server, _admin, ann, _bob) = notes_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "ops": ["update"], "filter": "text ~ 'x'"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let a = server
        .create_record(&ann, "notes", json!({"text": "x1"}))
        .await;
    let id = a["id"].as_str().unwrap();
    let reply = ws
        .request(json!({"action": "subscribe", "topic": format!("notes/{id}"), "ops": ["delete"]}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let url = server.url(&format!("/api/collections/notes/records/{id}"));
    assert_eq!(patch(&url, &ann, json!({"text": "x2"})).await, 200);
    assert_eq!(patch(&url, &ann, json!({"text": "no"})).await, 200);
    let event = ws.next().await;
    assert_eq!(
        (event["op"].as_str(), event["record"]["text"].as_str()),
        (Some("update"), Some("x2"))
    );
    assert_eq!(delete(&url, &ann).await, 204);
    let event = ws.next().await;
    assert_eq!(event["topic"], format!("notes/{id}"));
    assert_eq!(event["op"], "delete");
    ws.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "orders", "rules": {
                "list": "@user != null", "view": "tenant = @user.tenant",
                "create": "tenant = @user.tenant"}}),
        )
        .await;
    let mut sockets = Vec::new();
    let mut tokens = Vec::new();
    for tenant in ["acme", "globex"] {
        let email = format!("u@{tenant}.test");
        server
            .create_user(
                &admin,
                json!({"email": email, "password": "password-123", "tenant": tenant}),
            )
            .await;
        let token = server.signin(&email, "password-123").await;
        let mut ws = Ws::connect(&server, Some(&token)).await;
        assert_eq!(
            ws.request(json!({"action": "subscribe", "topic": "orders"}))
                .await["type"],
            "ok"
        );
        sockets.push(ws);
        tokens.push(token);
    }
    server
        .create_record(&tokens[0], "orders", json!({"tenant": "acme", "n": 1}))
        .await;
    server
        .create_record(&tokens[1], "orders", json!({"tenant": "globex", "n": 2}))
        .await;
    assert_eq!(sockets[0].next().await["record"]["tenant"], "acme");
    assert_eq!(sockets[1].next().await["record"]["tenant"], "globex");
    for ws in &mut sockets {
        ws.expect_quiet(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn records_over_the_socket_pass_the_same_access_checks() {
    let (server, _admin, ann, bob) = notes_server().await;
    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    let created = ann_ws
        .request(json!({"action": "create", "collection": "notes", "data": {"text": "hi", "secret": "s"}}))
        .await;
    assert_eq!(created["type"], "ok", "{created}");
    let id = created["record"]["id"].clone();
    assert!(created["record"].get("secret").is_none());
    let got = ann_ws
        .request(json!({"action": "get", "collection": "notes", "record": id}))
        .await;
    assert_eq!(got["record"]["text"], "hi");
    let updated = ann_ws
        .request(json!({"action": "update", "collection": "notes", "record": id, "data": {"text": "edited"}}))
        .await;
    assert_eq!(updated["record"]["rev"], 2, "{updated}");
    let list = ann_ws
        .request(json!({"action": "list", "collection": "notes", "sort": "-created", "limit": 5}))
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert!(list.get("next_cursor").is_some());

    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    for action in ["get", "update", "delete"] {
        let reply = bob_ws
            .request(json!({"action": action, "collection": "notes", "record": id, "data": {"text": "mine"}}))
            .await;
        assert_eq!(reply["code"], "not_found", "{action}: {reply}");
    }
    let list = bob_ws
        .request(json!({"action": "list", "collection": "notes"}))
        .await;
    assert_eq!(list["items"], json!([]));
    let deleted = ann_ws
        .request(json!({"action": "delete", "collection": "notes", "record": id}))
        .await;
    assert_eq!(deleted["type"], "ok", "{deleted}");
}

#[tokio::test]
async fn a_record_topic_is_not_found_unless_the_subscriber_may_view_the_record() {
    let (server, _admin, ann, bob) = notes_server().await;
    let hidden = server
        .create_record(&ann, "notes", json!({"text": "mine"}))
        .await;
    let hidden = hidden["id"].as_str().unwrap();
    let public = server
        .create_record(&ann, "notes", json!({"text": "all", "public": true}))
        .await;
    let public = public["id"].as_str().unwrap();
    let missing = "01JD3Q7ZK8NOSUCHRECORD0000";
    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    let mut anon_ws = Ws::connect(&server, None).await;
    for ws in [&mut bob_ws, &mut anon_ws] {
        let mut messages = Vec::new();
        for id in [hidden, missing] {
            let reply = ws
                .request(json!({"action": "subscribe", "topic": format!("notes/{id}")}))
                .await;
            assert_eq!(
                (reply["type"].as_str(), reply["code"].as_str()),
                (Some("error"), Some("not_found")),
                "notes/{id}: {reply}"
            );
            messages.push(reply["message"].as_str().unwrap().replace(id, "ID"));
        }
        // A hidden record reads exactly like one that does not exist.
        assert_eq!(messages[0], messages[1]);
        let reply = ws
            .request(json!({"action": "subscribe", "topic": format!("notes/{public}")}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    let url = server.url(&format!("/api/collections/notes/records/{hidden}"));
    assert_eq!(patch(&url, &ann, json!({"text": "still mine"})).await, 200);
    bob_ws.expect_quiet(Duration::from_millis(300)).await;
    let (status, sse) = Sse::open(&server, &format!("topic=notes/{hidden}&token={bob}"), &[]).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&sse.body_json().await), "not_found");
}

#[tokio::test]
async fn retention_removals_arrive_as_expired_deletes_for_those_who_saw_the_record() {
    let (server, admin, ann, bob) = notes_server().await;
    let url = server.url("/api/collections/notes");
    let (status, body) = send(
        client()
            .patch(&url)
            .bearer_auth(&admin)
            .json(&json!({"retention": {"max_records": 2}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    for ws in [&mut ann_ws, &mut bob_ws] {
        let reply = ws
            .request(json!({"action": "subscribe", "topic": "notes", "ops": ["delete"]}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    // Ann's private note is the oldest: the cap of 2 removes it.
    let oldest = server
        .create_record(&ann, "notes", json!({"text": "first"}))
        .await;
    for text in ["second", "third"] {
        server
            .create_record(&ann, "notes", json!({"text": text, "public": true}))
            .await;
    }
    // The retention pass runs every 2 s.
    let event = ann_ws.next().await;
    assert_eq!(
        (
            event["type"].as_str(),
            event["op"].as_str(),
            event["reason"].as_str()
        ),
        (Some("event"), Some("delete"), Some("expired")),
        "{event}"
    );
    assert_eq!(event["record"]["id"], oldest["id"], "{event}");
    // Bob could never see that note, so he is not told it went away.
    bob_ws.expect_quiet(Duration::from_millis(500)).await;
}
