//! API keys: devices and backends authenticate without a password.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{client, error_code, send, TestServer};
use serde_json::{json, Value};

async fn new_key(server: &TestServer, admin: &str, body: Value) -> Value {
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(admin)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key
}

async fn ingest(server: &TestServer, header: (&str, String)) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .header(header.0, header.1)
            .json(&json!({"temp": 21.5})),
    )
    .await
}

#[tokio::test]
async fn a_device_key_creates_records_it_owns_until_revoked() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({
            "name": "readings",
            "rules": {"create": "'device' in @user.roles", "list": "owner = @user.id", "view": "owner = @user.id"}
        }))
        .await;
    let key = new_key(
        &server,
        &admin,
        json!({"name": "gateway 7", "roles": ["device"]}),
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("pbk_"));
    let viewer = new_key(
        &server,
        &admin,
        json!({"name": "dashboard", "roles": ["viewer"]}),
    )
    .await;

    let (status, record) = ingest(&server, ("X-Api-Key", secret.clone())).await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["owner"], key["id"], "the key owns what it writes");
    let (status, _) = ingest(&server, ("Authorization", format!("Bearer {secret}"))).await;
    assert_eq!(status, 201);
    let (status, page) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .header("X-Api-Key", &secret),
    )
    .await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 2));
    let (status, body) = ingest(
        &server,
        ("X-Api-Key", viewer["secret"].as_str().unwrap().to_owned()),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "roles feed rules"
    );
    let (status, _) = send(
        client()
            .get(server.url("/api/collections"))
            .header("X-Api-Key", &secret),
    )
    .await;
    assert_eq!(status, 403, "a device key is no admin");

    let (_, list) = send(client().get(server.url("/api/keys")).bearer_auth(&admin)).await;
    let listed = list["items"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|k| k.get("secret").is_none() && k.get("secret_digest").is_none()),
        "{list}"
    );

    let forged = format!("{}x", &secret[..secret.len() - 1]);
    let (status, body) = ingest(&server, ("X-Api-Key", forged)).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));

    let url = server.url(&format!("/api/keys/{}", key["id"].as_str().unwrap()));
    let (status, _) = send(client().delete(&url).bearer_auth(&admin)).await;
    assert_eq!(status, 204);
    let (status, body) = ingest(&server, ("X-Api-Key", secret)).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "unauthorized"),
        "revoked keys stop at once"
    );
    let (status, _) = send(client().delete(&url).bearer_auth(&admin)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keys_expire_and_are_validated() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "readings", "rules": {"create": "@user != null"}}),
        )
        .await;
    let soon = pulsebase::clock::format_ms(pulsebase::clock::now_ms() + 1000);
    let key = new_key(
        &server,
        &admin,
        json!({"name": "temporary", "expires": soon}),
    )
    .await;
    assert_eq!(key["expires"], soon.as_str());
    let secret = key["secret"].as_str().unwrap().to_owned();
    let (status, _) = ingest(&server, ("X-Api-Key", secret.clone())).await;
    assert_eq!(status, 201);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = ingest(&server, ("X-Api-Key", secret)).await;
    assert_eq!((status, error_code(&body)), (401, "token_expired"));

    for body in [
        json!({"name": ""}),
        json!({"name": "k", "expires": "2001-01-01T00:00:00Z"}),
        json!({"name": "k", "expires": "soon"}),
    ] {
        let (status, answer) = send(
            client()
                .post(server.url("/api/keys"))
                .bearer_auth(&admin)
                .json(&body),
        )
        .await;
        assert_eq!(
            (status, error_code(&answer)),
            (400, "validation_failed"),
            "{body}"
        );
    }
    let (status, _) = send(
        client()
            .post(server.url("/api/keys"))
            .json(&json!({"name": "k"})),
    )
    .await;
    assert_eq!(status, 401);
}
