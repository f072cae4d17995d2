//! Realtime delivery over real sockets: who sees which events,
//! ops and filters, record topics, deletes, custom topics, resume, limits.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::live::{RawWs, Sse, Ws, OPCODE_PING};
use common::{client, error_code, send, TestServer};
use futures_util::SinkExt;
use serde_json::{json, Value};

async fn create(server: &TestServer, token: &str, collection: &str, body: Value) -> Value {
    let (status, record) = send(
        client()
            .post(server.url(&format!("/api/collections/{collection}/records")))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{record}");
    record
}

/// Notes: each user sees their own and what is shared with them; `secret`
/// is protected.
async fn notes_server() -> (TestServer, String, String, String) {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "notes",
                "fields": {"text": {"type": "string"}, "secret": {"type": "string"},
                           "shared_with": {"type": "json"}, "public": {"type": "boolean"}},
                "protected": ["secret"],
                "rules": {
                    "list": "true",
                    "view": "public = true || owner = @user.id || @user.id in shared_with",
                    "create": "@user != null",
                    "update": "owner = @user.id",
                    "delete": "owner = @user.id"
                }
            }),
        )
        .await;
    for email in ["ann@example.com", "bob@example.com"] {
        server
            .create_user(&admin, json!({"email": email, "password": "password-123"}))
            .await;
    }
    let ann = server.signin("ann@example.com", "password-123").await;
    let bob = server.signin("bob@example.com", "password-123").await;
    (server, admin, ann, bob)
}

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

    let private = create(
        &server,
        &ann,
        "notes",
        json!({"text": "mine", "secret": "s1"}),
    )
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

    let shared = create(
        &server,
        &ann,
        "notes",
        json!({"text": "for bob", "shared_with": [user_id(&server, &bob).await]}),
    )
    .await;
    let public = create(
        &server,
        &ann,
        "notes",
        json!({"text": "all", "public": true}),
    )
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

async fn patch(url: &str, token: &str, body: Value) -> u16 {
    send(client().patch(url).bearer_auth(token).json(&body))
        .await
        .0
}

async fn delete(url: &str, token: &str) -> u16 {
    send(client().delete(url).bearer_auth(token)).await.0
}

async fn user_id(server: &TestServer, token: &str) -> Value {
    let (_, me) = send(client().get(server.url("/api/auth/me")).bearer_auth(token)).await;
    me["id"].clone()
}

#[tokio::test]
async fn ops_filter_and_record_topics() {
    let (server, _admin, ann, _bob) = notes_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "ops": ["update"], "filter": "text ~ 'x'"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let a = create(&server, &ann, "notes", json!({"text": "x1"})).await;
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
async fn custom_topics_publish_subscribe_history_and_deletion() {
    let (server, admin, ann, bob) = notes_server().await;
    let (status, topic) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(&ann)
            .json(&json!({"name": "chat", "history": 2, "publish": "@user != null", "subscribe": "@user != null"})),
    )
    .await;
    assert_eq!(status, 201, "{topic}");
    assert!(topic["owner"].is_string());
    let (status, body) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(&ann)
            .json(&json!({"name": "notes"})),
    )
    .await;
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
async fn resume_replays_the_gap_without_duplicates() {
    let (server, _admin, ann, _bob) = notes_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes"}))
        .await;
    let start = reply["seq"].as_u64().unwrap();
    create(&server, &ann, "notes", json!({"text": "a"})).await;
    let seen = ws.next().await["seq"].as_u64().unwrap();
    drop(ws);
    let mut missed = Vec::new();
    for text in ["b", "c", "d"] {
        missed.push(create(&server, &ann, "notes", json!({"text": text})).await["id"].clone());
    }
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "notes", "since": seen}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let live = create(&server, &ann, "notes", json!({"text": "e"})).await;
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

fn options(args: &[&str]) -> common::Options {
    common::Options {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..common::Options::default()
    }
}

#[tokio::test]
async fn a_slow_consumer_is_closed_while_a_fast_one_loses_nothing() {
    // The slow client never reads, so once its socket buffers are full (a
    // few MB: some 160 of these events) its outbox overflows 40 events
    // later, well within the 10 s the server gives a stuck write; the fast
    // one reads each batch of 100, which its socket buffers alone can hold.
    let server = TestServer::start_with(options(&["--outbox", "40", "--durability", "relaxed"]));
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
        acknowledged.push(create(&server, &admin, "log", json!({"n": n})).await["id"].clone());
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
    create(
        &server,
        &tokens[0],
        "orders",
        json!({"tenant": "acme", "n": 1}),
    )
    .await;
    create(
        &server,
        &tokens[1],
        "orders",
        json!({"tenant": "globex", "n": 2}),
    )
    .await;
    assert_eq!(sockets[0].next().await["record"]["tenant"], "acme");
    assert_eq!(sockets[1].next().await["record"]["tenant"], "globex");
    for ws in &mut sockets {
        ws.expect_quiet(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn admins_watch_connections_and_users() {
    let (server, admin, ann, _bob) = notes_server().await;
    let mut watcher = Ws::connect(&server, Some(&admin)).await;
    for topic in ["_users", "_connections"] {
        let reply = watcher
            .request(json!({"action": "subscribe", "topic": topic}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let notice = watcher.next().await;
    assert_eq!(notice["topic"], "_connections");
    assert_eq!(notice["data"]["event"], "connect");
    assert_eq!(notice["data"]["connection"], ws.welcome["connection"]);
    ws.request(json!({"action": "subscribe", "topic": "notes"}))
        .await;
    let notice = watcher.next().await;
    assert_eq!(
        (
            notice["data"]["event"].as_str(),
            notice["data"]["topic"].as_str()
        ),
        (Some("subscribe"), Some("notes"))
    );
    drop(ws);
    let notice = watcher.next().await;
    assert_eq!(notice["data"]["event"], "disconnect");
    server
        .create_user(
            &admin,
            json!({"email": "cy@example.com", "password": "password-123"}),
        )
        .await;
    let event = watcher.next().await;
    assert_eq!(
        (event["topic"].as_str(), event["op"].as_str()),
        (Some("_users"), Some("create"))
    );
    assert!(
        event["record"].get("password_hash").is_none() && event["record"].get("hash").is_none(),
        "{event}"
    );
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
async fn a_record_topic_is_not_found_unless_the_subscriber_may_view_the_record() {
    let (server, _admin, ann, bob) = notes_server().await;
    let hidden = create(&server, &ann, "notes", json!({"text": "mine"})).await;
    let hidden = hidden["id"].as_str().unwrap();
    let public = create(
        &server,
        &ann,
        "notes",
        json!({"text": "all", "public": true}),
    )
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
    let oldest = create(&server, &ann, "notes", json!({"text": "first"})).await;
    for text in ["second", "third"] {
        create(
            &server,
            &ann,
            "notes",
            json!({"text": text, "public": true}),
        )
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

#[tokio::test]
async fn admins_read_the_counts_the_dashboard_charts() {
    let (server, admin, ann, bob) = notes_server().await;
    let stats = |token: String| {
        let url = server.url("/api/stats");
        async move { send(client().get(url).bearer_auth(token)).await }
    };
    let (status, before) = stats(admin.clone()).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["connections"], 0, "{before}");
    let mut sockets = Vec::new();
    for token in [&ann, &bob] {
        let mut ws = Ws::connect(&server, Some(token)).await;
        for topic in ["notes", "notes/none"] {
            ws.request(json!({"action": "subscribe", "topic": topic}))
                .await;
        }
        sockets.push(ws);
    }
    for text in ["a", "b", "c"] {
        create(
            &server,
            &ann,
            "notes",
            json!({"text": text, "public": true}),
        )
        .await;
    }
    for ws in &mut sockets {
        for _ in 0..3 {
            assert_eq!(ws.next().await["type"], "event");
        }
    }
    let (_, after) = stats(admin.clone()).await;
    assert_eq!(after["connections"], 2, "{after}");
    // notes/none does not exist: refused, so one subscription each.
    assert_eq!(after["subscriptions"], 2, "{after}");
    let delivered = |v: &Value| v["events_delivered"].as_u64().unwrap();
    assert_eq!(
        delivered(&after) - delivered(&before),
        6,
        "{before} {after}"
    );
    let seq = |v: &Value| v["seq"].as_u64().unwrap();
    assert_eq!(seq(&after) - seq(&before), 3, "{before} {after}");
    assert_eq!(after["records"]["notes"], 3, "{after}");
    assert!(after["storage_bytes"].as_u64().unwrap() > 0, "{after}");
    drop(sockets);
    let (status, body) = stats(ann.clone()).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, _) = send(client().get(server.url("/api/stats"))).await;
    assert_eq!(status, 401);
}
