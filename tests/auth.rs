//! Sign-in, first-admin setup, tokens (the core).

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{client, error_code, send, Options, TestServer, ADMIN_EMAIL, ADMIN_PASSWORD};
use serde_json::json;

#[tokio::test]
async fn signin_and_me() {
    let server = TestServer::start();
    let (status, body) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": "Admin@Example.com ", "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "emails are case-insensitive: {body}");
    assert_eq!(body["expires_in"], 3600);
    assert!(body["refresh_token"].as_str().unwrap().len() > 30);
    assert!(body["user"].get("password_hash").is_none());
    let token = body["token"].as_str().unwrap();
    let (status, me) = send(client().get(server.url("/api/auth/me")).bearer_auth(token)).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["roles"], json!(["admin"]));
    let (status, body) = send(client().get(server.url("/api/auth/me"))).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = send(
        client()
            .get(server.url("/api/auth/me"))
            .bearer_auth("not-a-token"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = send(
        client()
            .get(server.url("/api/auth/me"))
            .header("Authorization", "Basic abc"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let server = TestServer::start();
    let url = server.url("/api/auth/signin");
    // Warm up the dummy hash so both timings below are steady-state.
    send(
        client()
            .post(&url)
            .json(&json!({"email": "nobody@example.com", "password": "whatever-1"})),
    )
    .await;
    let started = Instant::now();
    let (status_wrong, wrong) = send(
        client()
            .post(&url)
            .json(&json!({"email": ADMIN_EMAIL, "password": "wrong-password"})),
    )
    .await;
    let wrong_time = started.elapsed();
    let started = Instant::now();
    let (status_unknown, unknown) = send(
        client()
            .post(&url)
            .json(&json!({"email": "nobody@example.com", "password": "wrong-password"})),
    )
    .await;
    let unknown_time = started.elapsed();
    assert_eq!((status_wrong, status_unknown), (401, 401));
    assert_eq!(wrong, unknown, "identical bodies");
    assert_eq!(error_code(&wrong), "invalid_credentials");
    // Both pay for one argon2 verification; a skipped hash would be ~100x faster.
    assert!(
        unknown_time * 5 > wrong_time,
        "unknown {unknown_time:?} vs wrong {wrong_time:?}"
    );
    let (status, body) = send(client().post(&url).json(&json!({"email": ADMIN_EMAIL}))).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
}

#[tokio::test]
async fn first_admin_through_the_one_time_setup_code() {
    let server = TestServer::start_with(Options {
        admin: false,
        ..Options::default()
    });
    let banner = server.banner.join("\n");
    let code = banner
        .split("setup code (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no setup code printed: {banner}"))
        .to_owned();
    let url = server.url("/api/setup");
    let (status, body) =
        send(client().post(&url).json(
            &json!({"code": "wrong", "email": "root@example.com", "password": "root-password"}),
        ))
        .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, body) = send(
        client()
            .post(&url)
            .json(&json!({"code": code, "email": "root@example.com", "password": "short"})),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
    let (status, body) =
        send(client().post(&url).json(
            &json!({"code": code, "email": "root@example.com", "password": "root-password"}),
        ))
        .await;
    assert_eq!(
        status, 201,
        "a failed attempt does not burn the code: {body}"
    );
    assert_eq!(body["user"]["roles"], json!(["admin"]));
    let (status, _) = send(
        client()
            .get(server.url("/api/collections"))
            .bearer_auth(body["token"].as_str().unwrap()),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) =
        send(client().post(&url).json(
            &json!({"code": code, "email": "second@example.com", "password": "root-password"}),
        ))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (403, "forbidden"),
        "the code works once"
    );
}

#[tokio::test]
async fn signup_is_off_by_default() {
    let server = TestServer::start();
    let (status, body) = send(
        client()
            .post(server.url("/api/auth/signup"))
            .json(&json!({"email": "new@example.com", "password": "password-123"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
}

#[tokio::test]
async fn expired_tokens_are_refused_with_token_expired() {
    let server = TestServer::start_with(Options {
        args: vec!["--token-ttl".into(), "1s".into()],
        ..Options::default()
    });
    let token = server.admin_token().await;
    let (status, _) = send(client().get(server.url("/api/auth/me")).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = send(client().get(server.url("/api/auth/me")).bearer_auth(&token)).await;
    assert_eq!((status, error_code(&body)), (401, "token_expired"));
}

/// `exp` is the first second in which the token no longer works: a
/// request made during that second, after `exp * 1000` ms, is refused.
#[tokio::test]
async fn a_token_is_refused_from_the_start_of_its_exp_second() {
    use base64::Engine as _;
    let server = TestServer::start_with(Options {
        args: vec!["--token-ttl".into(), "1s".into()],
        ..Options::default()
    });
    let token = server.admin_token().await;
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    let exp_ms = claims["exp"].as_u64().unwrap() * 1000;
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    tokio::time::sleep(Duration::from_millis(
        (exp_ms + 100).saturating_sub(now_ms()),
    ))
    .await;
    let (status, body) = send(client().get(server.url("/api/auth/me")).bearer_auth(&token)).await;
    assert!(
        now_ms() < exp_ms + 1000,
        "the request took too long to show anything"
    );
    assert_eq!(
        (status, error_code(&body)),
        (401, "token_expired"),
        "{body}"
    );
}

async fn session(server: &TestServer) -> serde_json::Value {
    let (status, body) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(status, 200);
    body
}

async fn refresh(
    server: &TestServer,
    refresh_token: &serde_json::Value,
) -> (u16, serde_json::Value) {
    send(
        client()
            .post(server.url("/api/auth/refresh"))
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn me_status(server: &TestServer, token: &serde_json::Value) -> u16 {
    send(
        client()
            .get(server.url("/api/auth/me"))
            .bearer_auth(token.as_str().unwrap()),
    )
    .await
    .0
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_session() {
    let server = TestServer::start();
    let first = session(&server).await;
    let other = session(&server).await;

    let (status, second) = refresh(&server, &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["user"]["email"], ADMIN_EMAIL);
    assert_eq!(me_status(&server, &second["token"]).await, 200);

    // The rotated token comes back: someone copied it. The session ends.
    let (status, body) = refresh(&server, &first["refresh_token"]).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, _) = refresh(&server, &second["refresh_token"]).await;
    assert_eq!(
        status, 401,
        "the newest refresh token of the session is revoked too"
    );
    assert_eq!(
        me_status(&server, &second["token"]).await,
        401,
        "and its access tokens"
    );
    assert_eq!(me_status(&server, &first["token"]).await, 401);
    // Other sign-ins of the same user are untouched.
    assert_eq!(me_status(&server, &other["token"]).await, 200);
    let (status, _) = refresh(&server, &other["refresh_token"]).await;
    assert_eq!(status, 200);

    let (status, body) = refresh(&server, &json!("rt_made_up")).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
}

#[tokio::test]
async fn signout_ends_the_session() {
    let server = TestServer::start();
    let signed_in = session(&server).await;
    let url = server.url("/api/auth/signout");
    let (status, _) = send(
        client()
            .post(&url)
            .json(&json!({"refresh_token": signed_in["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(me_status(&server, &signed_in["token"]).await, 401);
    let (status, _) = refresh(&server, &signed_in["refresh_token"]).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        client()
            .post(&url)
            .json(&json!({"refresh_token": signed_in["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 204, "signing out twice is fine");
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let server = TestServer::start_with(Options {
        args: vec!["--refresh-ttl".into(), "1s".into()],
        ..Options::default()
    });
    let signed_in = session(&server).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = refresh(&server, &signed_in["refresh_token"]).await;
    assert_eq!((status, error_code(&body)), (401, "token_expired"));
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let server = TestServer::start();
    let url = server.url("/api/auth/signin");
    for _ in 0..5 {
        let (status, _) = send(
            client()
                .post(&url)
                .json(&json!({"email": ADMIN_EMAIL, "password": "guess-guess"})),
        )
        .await;
        assert_eq!(status, 401);
    }
    let response = client()
        .post(&url)
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "even the right password waits");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 900, "{retry_after}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "rate_limited");
}

#[tokio::test]
async fn signed_out_sessions_stay_revoked_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), Options::default());
    let signed_in = session(&server).await;
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/signout"))
            .json(&json!({"refresh_token": signed_in["refresh_token"]})),
    )
    .await;
    assert_eq!(status, 204);
    assert!(server.terminate());
    let server = TestServer::start_in(dir.path(), Options::default());
    assert_eq!(me_status(&server, &signed_in["token"]).await, 401);
    assert_eq!(refresh(&server, &signed_in["refresh_token"]).await.0, 401);
}

async fn failed_signin_from(server: &TestServer, email: &str, forwarded: &str) -> u16 {
    send(
        client()
            .post(server.url("/api/auth/signin"))
            .header("X-Forwarded-For", forwarded)
            .json(&json!({"email": email, "password": "guess-guess"})),
    )
    .await
    .0
}

#[tokio::test]
async fn behind_a_trusted_proxy_throttling_counts_the_forwarded_address() {
    let server = TestServer::start_with(Options {
        args: vec!["--trust-proxy".into(), "true".into()],
        ..Options::default()
    });
    // A client may prepend anything; only the proxy's own last entry counts.
    for n in 0..20 {
        let forwarded = format!("198.51.100.{n}, 10.0.0.1");
        assert_eq!(
            failed_signin_from(&server, &format!("u{n}@x.test"), &forwarded).await,
            401
        );
    }
    assert_eq!(
        failed_signin_from(&server, "new@x.test", "10.0.0.1").await,
        429
    );
    assert_eq!(
        failed_signin_from(&server, "new@x.test", "10.0.0.2").await,
        401
    );
}

#[tokio::test]
async fn without_trust_proxy_a_forged_forwarded_header_changes_nothing() {
    let server = TestServer::start();
    for n in 0..20 {
        let forwarded = format!("203.0.113.{n}");
        assert_eq!(
            failed_signin_from(&server, &format!("u{n}@x.test"), &forwarded).await,
            401
        );
    }
    assert_eq!(
        failed_signin_from(&server, "new@x.test", "203.0.113.99").await,
        429
    );
}
