//! `GET /api/logs/requests`: the recent requests, in a bounded ring, for
//! admins only, newest first, never holding a credential.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, TestServer};
use serde_json::Value;

/// The ring's size (`request_log::CAPACITY`).
const CAPACITY: usize = 500;

async fn log(server: &TestServer, token: &str, query: &str) -> (u16, Value) {
    send(
        client()
            .get(server.url(&format!("/api/logs/requests{query}")))
            .bearer_auth(token),
    )
    .await
}

fn paths(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_log_is_for_admins_only() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (status, body) = send(client().get(server.url("/api/logs/requests"))).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let user = server.plain_user_token(&admin, "plain@example.com").await;
    let (status, body) = log(&server, &user, "").await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = send(
        client()
            .post(server.url("/api/users"))
            .bearer_auth(&user)
            .json(&serde_json::json!({"email": "x@example.com", "password": "long-enough"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = log(&server, &admin, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["capacity"], CAPACITY);
    // The refusals above are in it, with who asked and what they were told;
    // reading the log is not.
    let refused = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == 403)
        .unwrap();
    assert_eq!(refused["path"], "/api/users");
    assert_eq!(refused["method"], "POST");
    assert!(refused["actor"].is_string());
    let forbidden = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "/api/logs/requests");
    assert!(!forbidden, "reads of the log are not logged: {body}");
}

#[tokio::test]
async fn the_newest_come_first_and_the_ring_keeps_only_the_last_500() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let http = client();
    for i in 0..CAPACITY + 20 {
        let response = http
            .get(server.url(&format!("/api/collections/c{i}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let (status, body) = log(&server, &admin, "").await;
    assert_eq!(status, 200, "{body}");
    let shown = paths(&body);
    assert_eq!(shown.len(), CAPACITY);
    let expected: Vec<String> = (20..CAPACITY + 20)
        .rev()
        .map(|i| format!("/api/collections/c{i}"))
        .collect();
    assert_eq!(shown, expected, "the newest first, the oldest 20 gone");
    let first = &body["items"][0];
    assert_eq!(first["status"], 404);
    assert_eq!(first["error"]["code"], "not_found");
    assert_eq!(
        first["error"]["message"],
        format!("collection c{} not found", CAPACITY + 19)
    );
    let times: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "times go back in time"
    );

    // Filters: status class and path prefix, with a limit.
    let (_, health) = send(http.get(server.url("/api/health"))).await;
    assert_eq!(health["status"], "ok");
    let (_, ok) = log(&server, &admin, "?status=2xx&prefix=/api/health").await;
    assert_eq!(paths(&ok), ["/api/health"]);
    assert!(ok["items"][0]["error"].is_null());
    let (_, errors) = log(&server, &admin, "?status=error&limit=3").await;
    assert_eq!(paths(&errors).len(), 3);
    let (status, bad) = log(&server, &admin, "?status=7xx").await;
    assert_eq!((status, error_code(&bad)), (400, "bad_request"));
}

#[tokio::test]
async fn a_token_in_the_query_never_reaches_the_log() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    // A realtime stream opened with `?token=` (EventSource cannot send
    // headers): it appears once, with who opened it, without the token.
    let stream = client()
        .get(server.url(&format!("/api/realtime/sse?topic=_users&token={admin}")))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    // A wrong one is refused and not kept either.
    let (status, _) = send(client().get(
        server.url("/api/realtime/sse?topic=_users&token=not-a-token-but-secret-all-the-same"),
    ))
    .await;
    assert_eq!(status, 401);
    let (status, body) = log(&server, &admin, "?prefix=/api/realtime").await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(
        !text.contains(&admin),
        "the admin's token is in the log: {text}"
    );
    assert!(
        !text.contains("secret-all-the-same"),
        "a token is in the log: {text}"
    );
    assert_eq!(
        paths(&body),
        ["/api/realtime/sse?topic=_users&token=[redacted]"; 2]
    );
    let opened = &body["items"][1];
    assert_eq!(opened["status"], 200);
    assert!(opened["actor"].is_string(), "the stream's user: {opened}");
    assert_eq!(body["items"][0]["status"], 401);
    drop(stream);
}

#[tokio::test]
async fn the_admin_uis_own_requests_are_marked_and_can_be_left_out() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let stats = |from_ui: bool| {
        let request = client().get(server.url("/api/stats")).bearer_auth(&admin);
        if from_ui {
            request.header("X-Pulsebase-Client", "admin-ui")
        } else {
            request
        }
    };
    // The admin UI's polling, then an admin's curl to the same route.
    assert_eq!(send(stats(true)).await.0, 200);
    assert_eq!(send(stats(false)).await.0, 200);
    let marks = |body: &Value| -> Vec<bool> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["admin_ui"].as_bool().unwrap())
            .collect()
    };

    let (status, all) = log(&server, &admin, "?prefix=/api/stats").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(marks(&all), [false, true], "newest first: {all}");
    assert_eq!(all["hidden"], 0);
    let (_, others) = log(&server, &admin, "?prefix=/api/stats&admin_ui=false").await;
    assert_eq!(marks(&others), [false], "{others}");
    assert_eq!(others["hidden"], 1);
    let (_, own) = log(&server, &admin, "?prefix=/api/stats&admin_ui=true").await;
    assert_eq!(marks(&own), [true], "{own}");
    assert_eq!(own["hidden"], 1);
    // Without a prefix the admin's other requests stay, none of the UI's.
    let (_, others) = log(&server, &admin, "?admin_ui=false").await;
    assert!(!marks(&others).contains(&true), "{others}");
    assert!(paths(&others).contains(&"/api/stats".to_owned()));

    // The browser fetches the admin UI's files without the header: they
    // are the UI's all the same.
    let page = client().get(server.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (_, files) = log(&server, &admin, "?prefix=/admin").await;
    assert_eq!(marks(&files), [true], "{files}");

    let (status, bad) = log(&server, &admin, "?admin_ui=maybe").await;
    assert_eq!((status, error_code(&bad)), (400, "bad_request"), "{bad}");
}
