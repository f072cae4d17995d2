//! Collection rules, owners and protected fields through REST.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, Options, TestServer};
use serde_json::{json, Value};

fn signup_server() -> TestServer {
    TestServer::start_with(Options {
        args: vec!["--allow-signup".into(), "true".into()],
        ..Options::default()
    })
}

async fn signup(server: &TestServer, email: &str) -> (String, String) {
    let (status, body) = send(
        client()
            .post(server.url("/api/auth/signup"))
            .json(&json!({"email": email, "password": "password-123"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["token"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn records(
    server: &TestServer,
    collection: &str,
    token: Option<&str>,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = client()
        .get(server.url(&format!("/api/collections/{collection}/records")))
        .query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

async fn create(
    server: &TestServer,
    collection: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client()
        .post(server.url(&format!("/api/collections/{collection}/records")))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    send(request).await
}

fn count(page: &Value) -> usize {
    page["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn owners_see_and_change_only_their_own_records() {
    let server = signup_server();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "notes",
                "rules": {
                    "list": "owner = @user.id", "view": "owner = @user.id",
                    "create": "@user != null",
                    "update": "owner = @user.id", "delete": "owner = @user.id"
                },
                "indexes": ["owner"]
            }),
        )
        .await;
    let (alice, alice_id) = signup(&server, "alice@example.com").await;
    let (bob, _) = signup(&server, "bob@example.com").await;

    let (status, note) = create(
        &server,
        "notes",
        Some(&alice),
        json!({"text": "alice's", "owner": "someone-else"}),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(
        note["owner"],
        alice_id.as_str(),
        "owner comes from the principal, not the body"
    );
    let id = note["id"].as_str().unwrap();
    create(&server, "notes", Some(&bob), json!({"text": "bob's"})).await;

    let (_, page) = records(&server, "notes", Some(&alice), &[]).await;
    assert_eq!(count(&page), 1);
    assert_eq!(page["items"][0]["text"], "alice's");
    let (_, page) = records(&server, "notes", Some(&admin), &[]).await;
    assert_eq!(count(&page), 2, "admins pass every rule");

    let url = server.url(&format!("/api/collections/notes/records/{id}"));
    let (status, body) = send(client().get(&url).bearer_auth(&bob)).await;
    assert_eq!(
        (status, error_code(&body)),
        (404, "not_found"),
        "not 403: existence is not revealed"
    );
    let (status, _) = send(
        client()
            .patch(&url)
            .bearer_auth(&bob)
            .json(&json!({"text": "mine now"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(client().delete(&url).bearer_auth(&bob)).await;
    assert_eq!(status, 404);
    let (status, body) = send(
        client()
            .patch(&url)
            .bearer_auth(&alice)
            .json(&json!({"owner": "bob"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["owner"],
        alice_id.as_str(),
        "owner is read-only for non-admins"
    );
    let (status, _) = send(client().get(&url)).await;
    assert_eq!(status, 404, "anonymous cannot view");
    let (status, body) = create(&server, "notes", None, json!({"text": "anon"})).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
}

#[tokio::test]
async fn missing_rules_mean_admins_only_and_errors_deny() {
    let server = signup_server();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "locked"}))
        .await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "broken",
                "rules": {"list": "temp && true", "view": "temp && true", "create": "true"}
            }),
        )
        .await;
    let (user, _) = signup(&server, "carol@example.com").await;

    let (status, body) = create(&server, "locked", Some(&user), json!({"a": 1})).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, record) = create(&server, "locked", Some(&admin), json!({"a": 1})).await;
    assert_eq!(status, 201);
    let (status, body) = records(&server, "locked", Some(&user), &[]).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let url = server.url(&format!(
        "/api/collections/locked/records/{}",
        record["id"].as_str().unwrap()
    ));
    let (status, _) = send(client().get(&url).bearer_auth(&user)).await;
    assert_eq!(status, 404);

    // `temp` is a number, so `temp && true` fails to evaluate: deny.
    let (status, _) = create(&server, "broken", Some(&user), json!({"temp": 5})).await;
    assert_eq!(status, 201);
    let (status, page) = records(&server, "broken", Some(&user), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(count(&page), 0);
}

#[tokio::test]
async fn rules_see_the_caller() {
    let server = signup_server();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({
            "name": "posts",
            "rules": {
                "list": "public = true || @user != null", "view": "public = true || @user != null",
                "create": "@user.email ~ '@example.com'",
                "update": "owner = @user.id && locked != true"
            }
        }))
        .await;
    let (dave, _) = signup(&server, "dave@example.com").await;
    let (eve, _) = signup(&server, "eve@elsewhere.org").await;

    let (status, _) = create(&server, "posts", Some(&eve), json!({"public": true})).await;
    assert_eq!(status, 403);
    let (status, open) = create(&server, "posts", Some(&dave), json!({"public": true})).await;
    assert_eq!(status, 201);
    let (status, _) = create(&server, "posts", Some(&dave), json!({"public": false})).await;
    assert_eq!(status, 201);

    let (_, page) = records(&server, "posts", None, &[]).await;
    assert_eq!(count(&page), 1, "anonymous sees public posts only");
    let (_, page) = records(&server, "posts", Some(&eve), &[]).await;
    assert_eq!(count(&page), 2);

    // The update rule is checked on the result too: locking is one-way.
    let url = server.url(&format!(
        "/api/collections/posts/records/{}",
        open["id"].as_str().unwrap()
    ));
    let (status, body) = send(
        client()
            .patch(&url)
            .bearer_auth(&dave)
            .json(&json!({"locked": true})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = send(
        client()
            .patch(&url)
            .bearer_auth(&dave)
            .json(&json!({"title": "t"})),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn protected_fields_are_hidden_and_cannot_be_probed() {
    let server = signup_server();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({
            "name": "devices",
            "fields": {"name": {"type": "string"}, "secret": {"type": "string"}},
            "protected": ["secret"],
            "indexes": ["secret"],
            "rules": {"list": "true", "view": "true", "create": "@user != null", "update": "true"}
        }))
        .await;
    let (user, _) = signup(&server, "frank@example.com").await;
    let (status, created) = create(
        &server,
        "devices",
        Some(&user),
        json!({"name": "d1", "secret": "hunter2"}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(
        created.get("secret").is_none(),
        "not even in the create answer: {created}"
    );
    let url = server.url(&format!(
        "/api/collections/devices/records/{}",
        created["id"].as_str().unwrap()
    ));
    let (_, fetched) = send(client().get(&url).bearer_auth(&user)).await;
    assert!(fetched.get("secret").is_none());
    let (_, fetched) = send(client().get(&url).bearer_auth(&admin)).await;
    assert_eq!(fetched["secret"], "hunter2");
    let (_, patched) = send(
        client()
            .patch(&url)
            .bearer_auth(&user)
            .json(&json!({"name": "d2"})),
    )
    .await;
    assert!(patched.get("secret").is_none());

    for filter in [
        "secret = 'hunter2'",
        "secret ~ 'hun'",
        "secret > 'a'",
        "secret != null",
    ] {
        let (status, page) = records(&server, "devices", Some(&user), &[("filter", filter)]).await;
        assert_eq!(status, 200);
        assert_eq!(
            count(&page),
            0,
            "filter {filter} must not see the protected value"
        );
    }
    let (_, page) = records(
        &server,
        "devices",
        Some(&user),
        &[("filter", "secret = null")],
    )
    .await;
    assert_eq!(count(&page), 1, "to a non-admin the field is absent");
    let (_, page) = records(
        &server,
        "devices",
        Some(&user),
        &[("fields", "secret,name")],
    )
    .await;
    assert!(page["items"][0].get("secret").is_none());
    let (_, page) = records(
        &server,
        "devices",
        Some(&admin),
        &[("filter", "secret = 'hunter2'")],
    )
    .await;
    assert_eq!(count(&page), 1);
}
