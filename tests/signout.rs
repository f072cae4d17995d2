//! Ending a sign-in (sign-out, or a reused refresh token revoking it) ends
//! everything opened with it at once: its access tokens fail on REST from
//! the next request, and its realtime connections close (WebSocket 4001,
//! SSE ends) instead of streaming until the token expires.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::live::{Sse, Ws};
use common::{client, send, TestServer, ADMIN_EMAIL, ADMIN_PASSWORD};
use serde_json::{json, Value};

/// How soon "at once" must be.
const PROMPTLY: Duration = Duration::from_secs(3);

async fn sign_in(server: &TestServer) -> Value {
    let (status, body) = send(
        client()
            .post(server.url("/api/auth/signin"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn token(session: &Value) -> &str {
    session["token"].as_str().unwrap()
}

async fn post(server: &TestServer, path: &str, refresh_token: &Value) -> (u16, Value) {
    send(
        client()
            .post(server.url(path))
            .json(&json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn me(server: &TestServer, token: &str) -> u16 {
    send(client().get(server.url("/api/auth/me")).bearer_auth(token))
        .await
        .0
}

/// Asserts the WebSocket closes with 4001 promptly.
async fn closes_with_4001(ws: &mut Ws) {
    let closed = tokio::time::timeout(PROMPTLY, ws.closed())
        .await
        .expect("the connection stayed open");
    assert_eq!(closed.code, Some(4001), "{closed:?}");
}

/// Asserts the SSE stream ends promptly (after an error event, if any).
async fn ends(sse: &mut Sse) {
    tokio::time::timeout(PROMPTLY, async {
        while let Some(event) = sse.next().await {
            assert_eq!(event.event, "error", "{event:?}");
        }
    })
    .await
    .expect("the stream went on");
}

async fn open_sse(server: &TestServer, token: &str) -> Sse {
    let (status, sse) = Sse::open(server, &format!("topic=_users&token={token}"), &[]).await;
    assert_eq!(status, 200);
    sse
}

#[tokio::test]
async fn signing_out_closes_that_sign_ins_connections_at_once() {
    let server = TestServer::start();
    let leaving = sign_in(&server).await;
    let staying = sign_in(&server).await;
    let mut ws = Ws::connect(&server, Some(token(&leaving))).await;
    let mut sse = open_sse(&server, token(&leaving)).await;
    let mut other = Ws::connect(&server, Some(token(&staying))).await;

    let (status, _) = post(&server, "/api/auth/signout", &leaving["refresh_token"]).await;
    assert_eq!(status, 204);
    closes_with_4001(&mut ws).await;
    ends(&mut sse).await;
    assert_eq!(me(&server, token(&leaving)).await, 401);

    // Another sign-in of the same user goes on.
    other.stays_open(Duration::from_millis(500)).await;
    assert_eq!(me(&server, token(&staying)).await, 200);
    let pong = other.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn a_reused_refresh_token_closes_the_whole_sign_ins_connections() {
    let server = TestServer::start();
    let first = sign_in(&server).await;
    let (status, second) = post(&server, "/api/auth/refresh", &first["refresh_token"]).await;
    assert_eq!(status, 200, "{second}");
    // Connections opened with the old and the new access token alike.
    let mut old = Ws::connect(&server, Some(token(&first))).await;
    let mut new = Ws::connect(&server, Some(token(&second))).await;
    let mut sse = open_sse(&server, token(&second)).await;

    let (status, _) = post(&server, "/api/auth/refresh", &first["refresh_token"]).await;
    assert_eq!(status, 401, "the rotated refresh token came back");
    closes_with_4001(&mut old).await;
    closes_with_4001(&mut new).await;
    ends(&mut sse).await;
    assert_eq!(me(&server, token(&second)).await, 401);
}

/// `auth` moves a connection to another sign-in: from then on that one's
/// end closes it, and the first one's no longer does.
#[tokio::test]
async fn a_connection_follows_the_sign_in_of_its_latest_auth() {
    let server = TestServer::start();
    let first = sign_in(&server).await;
    let second = sign_in(&server).await;
    let mut ws = Ws::connect(&server, Some(token(&first))).await;
    let reply = ws
        .request(json!({"action": "auth", "token": token(&second)}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");

    let (status, _) = post(&server, "/api/auth/signout", &first["refresh_token"]).await;
    assert_eq!(status, 204);
    ws.stays_open(Duration::from_millis(500)).await;

    let (status, _) = post(&server, "/api/auth/signout", &second["refresh_token"]).await;
    assert_eq!(status, 204);
    closes_with_4001(&mut ws).await;
}
