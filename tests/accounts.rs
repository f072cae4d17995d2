//! A user's own account: changing their password ends every other
//! sign-in and keeps the caller signed in.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, TestServer};
use serde_json::{json, Value};

async fn sign_in(server: &TestServer, email: &str, password: &str) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": email, "password": password})),
    )
    .await
}

async fn me_status(server: &TestServer, token: &Value) -> u16 {
    let token = token.as_str().unwrap();
    send(client().get(server.url("/api/auth/me")).bearer_auth(token))
        .await
        .0
}

async fn refresh_status(server: &TestServer, refresh_token: &Value) -> u16 {
    send(
        client()
            .post(server.url("/api/auth/refresh"))
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
    .0
}

async fn change(server: &TestServer, token: &Value, body: Value) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/auth/password"))
            .bearer_auth(token.as_str().unwrap())
            .json(&body),
    )
    .await
}

#[tokio::test]
async fn changing_ones_password_signs_out_every_other_session() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_user(
            &admin,
            json!({"email": "u@example.com", "password": "first-password"}),
        )
        .await;
    let (_, phone) = sign_in(&server, "u@example.com", "first-password").await;
    let (_, laptop) = sign_in(&server, "u@example.com", "first-password").await;

    // The current password is checked, and a weak new one refused, with
    // nothing changed either way.
    let (status, wrong) = change(
        &server,
        &laptop["token"],
        json!({"password": "not-it", "new_password": "second-password"}),
    )
    .await;
    assert_eq!((status, error_code(&wrong)), (400, "validation_failed"));
    assert!(wrong["error"]["details"]["password"].is_string(), "{wrong}");
    let (status, weak) = change(
        &server,
        &laptop["token"],
        json!({"password": "first-password", "new_password": "short"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        weak["error"]["details"]["new_password"].is_string(),
        "{weak}"
    );
    assert_eq!(me_status(&server, &phone["token"]).await, 200);

    let (status, fresh) = change(
        &server,
        &laptop["token"],
        json!({"password": "first-password", "new_password": "second-password"}),
    )
    .await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh["user"]["email"], "u@example.com");
    assert_eq!(me_status(&server, &fresh["token"]).await, 200);
    assert_eq!(refresh_status(&server, &fresh["refresh_token"]).await, 200);
    for old in [&phone, &laptop] {
        assert_eq!(me_status(&server, &old["token"]).await, 401);
        assert_eq!(refresh_status(&server, &old["refresh_token"]).await, 401);
    }
    assert_eq!(
        sign_in(&server, "u@example.com", "first-password").await.0,
        401
    );
    assert_eq!(
        sign_in(&server, "u@example.com", "second-password").await.0,
        200
    );

    // Keys and anonymous callers have no password of their own.
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/password"))
            .json(&json!({"password": "a", "new_password": "second-password"})),
    )
    .await;
    assert_eq!(status, 401);
}
