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

/// The token in a mailed link (`.../#/reset-password/<token>`).
fn token_in(mail: &Value, route: &str) -> String {
    let body = mail["body"].as_str().unwrap();
    let at = body
        .find(&format!("#/{route}/"))
        .unwrap_or_else(|| panic!("no {route} link in {body}"));
    body[at + route.len() + 3..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn mail_server(test: &str) -> Option<(common::smtp::SmtpSink, TestServer)> {
    let sink = common::smtp::SmtpSink::start(test)?;
    let server = TestServer::start_with(common::Options {
        args: vec![
            "--smtp-url".into(),
            format!("smtp://127.0.0.1:{}", sink.port),
            "--smtp-from".into(),
            "Example App <no-reply@app.example>".into(),
            "--app-url".into(),
            "https://app.example/".into(),
        ],
        ..common::Options::default()
    });
    Some((sink, server))
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const QUIET: std::time::Duration = std::time::Duration::from_secs(2);

async fn post(server: &TestServer, path: &str, body: Value) -> (u16, Value) {
    send(client().post(server.url(path)).json(&body)).await
}

#[tokio::test]
async fn a_forgotten_password_is_reset_through_a_mailed_link_once() {
    let Some((sink, server)) = mail_server("reset") else {
        return;
    };
    let admin = server.admin_token().await;
    server
        .create_user(
            &admin,
            json!({"email": "u@example.com", "password": "old-password"}),
        )
        .await;
    let (_, session) = sign_in(&server, "u@example.com", "old-password").await;

    // Unknown and known addresses get the same answer; only one gets mail.
    let (status, _) = post(
        &server,
        "/api/auth/request-reset",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        sink.next_mail(QUIET).is_none(),
        "mail to an unknown address"
    );
    let (status, _) = post(
        &server,
        "/api/auth/request-reset",
        json!({"email": " U@Example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let mail = sink.next_mail(WAIT).expect("the reset mail");
    assert_eq!(mail["to"], json!(["u@example.com"]));
    assert_eq!(mail["from"], "no-reply@app.example");
    assert!(mail["body"]
        .as_str()
        .unwrap()
        .contains("https://app.example/admin/#/reset-password/"));
    let token = token_in(&mail, "reset-password");
    // A second request within the minute sends nothing more.
    post(
        &server,
        "/api/auth/request-reset",
        json!({"email": "u@example.com"}),
    )
    .await;
    assert!(
        sink.next_mail(QUIET).is_none(),
        "a second mail within a minute"
    );

    // A weak password spends nothing; the link then works once.
    let (status, weak) = post(
        &server,
        "/api/auth/reset",
        json!({"token": token, "password": "short"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(weak["error"]["details"]["password"].is_string(), "{weak}");
    let (status, body) = post(
        &server,
        "/api/auth/reset",
        json!({"token": token, "password": "new-password"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, again) = post(
        &server,
        "/api/auth/reset",
        json!({"token": token, "password": "other-password"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(again["error"]["details"]["token"].is_string(), "{again}");
    let (status, forged) = post(
        &server,
        "/api/auth/reset",
        json!({"token": "pr_forged", "password": "other-password"}),
    )
    .await;
    assert_eq!((status, error_code(&forged)), (400, "validation_failed"));

    assert_eq!(me_status(&server, &session["token"]).await, 401);
    assert_eq!(
        sign_in(&server, "u@example.com", "old-password").await.0,
        401
    );
    let (status, fresh) = sign_in(&server, "u@example.com", "new-password").await;
    assert_eq!(status, 200);
    assert_eq!(
        fresh["user"]["verified"], true,
        "the link reached the inbox"
    );
}

#[tokio::test]
async fn an_address_is_verified_through_a_mailed_link() {
    let Some((sink, server)) = mail_server("verify") else {
        return;
    };
    let admin = server.admin_token().await;
    server
        .create_user(
            &admin,
            json!({"email": "v@example.com", "password": "a-password"}),
        )
        .await;
    let (_, session) = sign_in(&server, "v@example.com", "a-password").await;
    assert_eq!(session["user"]["verified"], false);
    let token = session["token"].as_str().unwrap();
    let ask = || {
        send(
            client()
                .post(server.url("/api/auth/request-verification"))
                .bearer_auth(token),
        )
    };
    assert_eq!(ask().await.0, 202);
    let mail = sink.next_mail(WAIT).expect("the verification mail");
    assert_eq!(mail["to"], json!(["v@example.com"]));
    let link = token_in(&mail, "verify");
    let (status, _) = ask().await;
    assert_eq!(status, 429, "one mail a minute");

    // A reset link is not a verification link.
    let (status, _) = post(
        &server,
        "/api/auth/reset",
        json!({"token": link, "password": "x-password"}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(&server, "/api/auth/verify", json!({"token": link})).await;
    assert_eq!(status, 400, "the wrong-purpose try spent the token");

    // A fresh link (after the minute would pass; here through a new user).
    server
        .create_user(
            &admin,
            json!({"email": "w@example.com", "password": "a-password"}),
        )
        .await;
    let (_, w) = sign_in(&server, "w@example.com", "a-password").await;
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/request-verification"))
            .bearer_auth(w["token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 202);
    let link = token_in(&sink.next_mail(WAIT).expect("mail for w"), "verify");
    let (status, user) = post(&server, "/api/auth/verify", json!({"token": link})).await;
    assert_eq!((status, &user["verified"]), (200, &json!(true)), "{user}");
    let (status, _) = post(&server, "/api/auth/verify", json!({"token": link})).await;
    assert_eq!(status, 400, "single use");
    // The sign-in is untouched by verifying.
    assert_eq!(me_status(&server, &w["token"]).await, 200);
}

#[tokio::test]
async fn without_smtp_the_mail_endpoints_say_so() {
    let server = TestServer::start();
    let (status, body) = post(
        &server,
        "/api/auth/request-reset",
        json!({"email": "a@example.com"}),
    )
    .await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"));
}
