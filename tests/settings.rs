//! Settings API: admins read every setting and change the runtime
//! ones; changes take effect at once and survive a restart; settings the
//! operator pinned at start stay pinned.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, Options, TestServer, ADMIN_EMAIL, ADMIN_PASSWORD};
use serde_json::{json, Value};

async fn settings(server: &TestServer, admin: &str) -> Value {
    let (status, body) = send(client().get(server.url("/api/settings")).bearer_auth(admin)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn change(server: &TestServer, admin: &str, patch: Value) -> (u16, Value) {
    send(
        client()
            .patch(server.url("/api/settings"))
            .bearer_auth(admin)
            .json(&patch),
    )
    .await
}

async fn signup(server: &TestServer, email: &str) -> u16 {
    send(
        client()
            .post(server.url("/api/auth/signup"))
            .json(&json!({"email": email, "password": "password-123"})),
    )
    .await
    .0
}

#[tokio::test]
async fn runtime_changes_apply_at_once_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), Options::default());
    let admin = server.admin_token().await;

    let before = settings(&server, &admin).await;
    assert_eq!(before["allow_signup"]["value"], false);
    assert_eq!(before["allow_signup"]["source"], "default");
    assert_eq!(before["allow_signup"]["editable"], true);
    assert_eq!(before["token_ttl"]["value"], "1h");
    assert_eq!(before["outbox_bytes"]["value"], 4 << 20);
    assert_eq!(before["outbox_budget_mb"]["value"], 256);
    assert_eq!(
        before["outbox"]["value"],
        Value::Null,
        "no message cap unless set"
    );
    assert_eq!(before["durability"]["value"], "sync");
    assert_eq!(before["durability"]["editable"], false);
    assert_eq!(signup(&server, "early@example.com").await, 403);

    let (status, after) = change(
        &server,
        &admin,
        json!({"allow_signup": true, "token_ttl": "2h", "max_batch": 2}),
    )
    .await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["allow_signup"]["value"], true);
    assert_eq!(after["allow_signup"]["source"], "runtime");
    assert_eq!(after["token_ttl"]["value"], "2h");

    assert_eq!(signup(&server, "ann@example.com").await, 201);
    let (_, signin) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(signin["expires_in"], 7200);
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "rules": {"create": "true"}}),
        )
        .await;
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/notes/records"))
            .bearer_auth(&admin)
            .json(&json!([{}, {}, {}])),
    )
    .await;
    assert_eq!(status, 413, "max_batch 2 must refuse 3 records: {body}");

    assert!(server.terminate());
    let server = TestServer::start_in(dir.path(), Options::default());
    let admin = server.admin_token().await;
    let restarted = settings(&server, &admin).await;
    assert_eq!(restarted["allow_signup"]["value"], true);
    assert_eq!(restarted["token_ttl"]["source"], "runtime");
    assert_eq!(signup(&server, "bob@example.com").await, 201);

    let (status, reset) = change(&server, &admin, json!({"allow_signup": null})).await;
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["allow_signup"]["value"], false);
    assert_eq!(reset["allow_signup"]["source"], "default");
    assert_eq!(reset["token_ttl"]["value"], "2h");
    assert_eq!(signup(&server, "carl@example.com").await, 403);
}

#[tokio::test]
async fn refused_changes_name_each_setting_and_change_nothing() {
    let server = TestServer::start_with(Options {
        env: vec![("PULSEBASE_MAX_BATCH".into(), "50".into())],
        ..Options::default()
    });
    let admin = server.admin_token().await;
    let shown = settings(&server, &admin).await;
    assert_eq!(shown["max_batch"]["value"], 50);
    assert_eq!(shown["max_batch"]["source"], "startup");
    assert_eq!(shown["max_batch"]["editable"], false);

    let (status, body) = change(
        &server,
        &admin,
        json!({
            "allow_signup": true,
            "max_batch": 10,
            "http": "0.0.0.0:80",
            "heartbeat": "sometimes",
            "topic_create_rule": "@user.roles ?? 'x'",
            "no_such_setting": 1
        }),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let details = body["error"]["details"].as_object().unwrap();
    let mut named: Vec<_> = details.keys().map(String::as_str).collect();
    named.sort_unstable();
    assert_eq!(
        named,
        [
            "heartbeat",
            "http",
            "max_batch",
            "no_such_setting",
            "topic_create_rule"
        ]
    );
    assert!(details["max_batch"]
        .as_str()
        .unwrap()
        .contains("PULSEBASE_MAX_BATCH"));
    assert_eq!(
        settings(&server, &admin).await["allow_signup"]["value"],
        false
    );

    let (status, body) = change(&server, &admin, json!(["allow_signup"])).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn only_admins_see_or_change_settings() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = server.plain_user_token(&admin, "u@example.com").await;

    let (status, _) = send(client().get(server.url("/api/settings"))).await;
    assert_eq!(status, 401);
    let (status, _) = send(client().get(server.url("/api/settings")).bearer_auth(&user)).await;
    assert_eq!(status, 403);
    let (status, _) = change(&server, &user, json!({"allow_signup": true})).await;
    assert_eq!(status, 403);
    assert_eq!(
        settings(&server, &admin).await["allow_signup"]["value"],
        false
    );
}
