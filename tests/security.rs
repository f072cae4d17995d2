//! Attacks on tokens, rules and fields, against the real server.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{client, error_code, ids, send, Options, TestServer};
use serde_json::{json, Value};

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn status_of(server: &TestServer, token: &str) -> (u16, Value) {
    send(
        client()
            .get(server.url("/api/collections"))
            .bearer_auth(token),
    )
    .await
}

async fn viewer(server: &TestServer, admin: &str) -> String {
    server
        .create_user(
            admin,
            json!({"email": "v@x.test", "password": "password-123", "roles": ["viewer"]}),
        )
        .await;
    server.signin("v@x.test", "password-123").await
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = viewer(&server, &admin).await;
    assert_eq!(status_of(&server, &user).await.0, 403);

    let mut claims = payload(&user);
    claims["roles"] = json!(["admin"]);
    let signature = user.split('.').nth(2).unwrap();
    let header = user.split('.').next().unwrap();
    let tampered = format!("{header}.{}.{signature}", b64(&claims));
    let (status, body) = status_of(&server, &tampered).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "unauthorized"),
        "tampered roles claim"
    );

    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&payload(&admin))
    );
    assert_eq!(status_of(&server, &unsigned).await.0, 401, "alg none");

    let mut bad_signature = admin.clone();
    let last = bad_signature.pop().unwrap();
    bad_signature.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        status_of(&server, &bad_signature).await.0,
        401,
        "wrong signature"
    );

    let hs512 = format!(
        "{}.{}.{}",
        b64(&json!({"alg": "HS512", "typ": "JWT"})),
        b64(&payload(&admin)),
        signature
    );
    assert_eq!(status_of(&server, &hs512).await.0, 401, "another algorithm");
}

#[tokio::test]
async fn a_validly_signed_admin_claim_does_not_make_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), Options::default());
    let admin = server.admin_token().await;
    let user = viewer(&server, &admin).await;
    assert!(server.terminate());

    // Sign a token whose claims say admin, with the server's own secret.
    let store = pulsebase::store::Store::open(&dir.path().join("db")).unwrap();
    let secret = store.meta_get("signing_secret").unwrap().unwrap();
    drop(store);
    let mut claims = payload(&user);
    claims["roles"] = json!(["admin"]);
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();

    let server = TestServer::start_in(dir.path(), Options::default());
    let (status, body) = status_of(&server, &forged).await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "admin comes from the stored user"
    );
}

#[tokio::test]
async fn protected_fields_cannot_be_probed_by_sorting_and_system_fields_cannot_be_assigned() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "vault",
                "protected": ["pin"],
                "rules": {"list": "true", "view": "true", "create": "true", "update": "true"}
            }),
        )
        .await;
    let records = server.url("/api/collections/vault/records");
    // Pins descend as records are created; sorting by pin must not reveal it.
    let mut created = Vec::new();
    for pin in [9, 7, 5, 3, 1] {
        let (_, record) = send(
            client()
                .post(&records)
                .bearer_auth(&admin)
                .json(&json!({"pin": pin})),
        )
        .await;
        created.push(record["id"].as_str().unwrap().to_owned());
    }
    let user = viewer(&server, &admin).await;
    let (_, by_pin) = send(
        client()
            .get(&records)
            .bearer_auth(&user)
            .query(&[("sort", "pin")]),
    )
    .await;
    assert_eq!(
        ids(&by_pin),
        created,
        "to a non-admin every pin is null, so id order stands"
    );
    let (_, by_pin) = send(
        client()
            .get(&records)
            .bearer_auth(&admin)
            .query(&[("sort", "pin")]),
    )
    .await;
    let mut reversed = created.clone();
    reversed.reverse();
    assert_eq!(ids(&by_pin), reversed, "admins sort by the real values");

    let url = server.url(&format!("/api/collections/vault/records/{}", created[0]));
    let (status, patched) = send(client().patch(&url).bearer_auth(&user).json(&json!({"id": "hijack", "owner": "me", "rev": 100, "created": "2000-01-01T00:00:00.000Z", "updated": "x", "note": "n"}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["id"], created[0].as_str());
    assert_eq!(patched["rev"], 2);
    assert_ne!(patched["created"], "2000-01-01T00:00:00.000Z");
    assert_eq!(
        patched["owner"],
        payload(&admin)["sub"],
        "only admins may change owner"
    );
}

#[tokio::test]
async fn oversized_and_deeply_nested_expressions_are_refused() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server.create_collection(&admin, json!({"name": "c"})).await;
    let records = server.url("/api/collections/c/records");
    let long = format!("a = '{}'", "x".repeat(5000));
    let deep = format!("{}a = 1{}", "(".repeat(100), ")".repeat(100));
    for filter in [long, deep] {
        let (status, body) = send(
            client()
                .get(&records)
                .bearer_auth(&admin)
                .query(&[("filter", filter.as_str())]),
        )
        .await;
        assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    }
    let (status, body) = send(
        client()
            .patch(server.url("/api/collections/c"))
            .bearer_auth(&admin)
            .json(&json!({"rules": {"view": "(".repeat(40) + "true" + &")".repeat(40)}})),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
}
