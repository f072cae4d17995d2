//! The JavaScript client: served by the binary, and its own tests
//! (tests/sdk/*.test.mjs) run in Node against the real server: reconnect
//! after kill -9, resume without gaps, token refresh on an open socket.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;

use common::{client, TestServer};

#[tokio::test]
async fn the_binary_serves_the_client_it_was_built_with() {
    let server = TestServer::start();
    let response = client()
        .get(server.url("/sdk/pulsebase.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/sdk/pulsebase.js"))
            .unwrap();
    assert_eq!(body, source);

    let again = client()
        .get(server.url("/sdk/pulsebase.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.text().await.unwrap().is_empty());

    let missing = client()
        .get(server.url("/sdk/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Assets are read-only.
    let post = client()
        .post(server.url("/sdk/pulsebase.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[test]
fn the_javascript_client_passes_its_tests_against_the_real_server() {
    common::node::run_node_tests(&["tests/sdk/pulsebase.test.mjs"], &[]);
}

/// Plain `node`, as a user runs it: on Node 18 and 20 there is no
/// WebSocket then, and realtime must work over SSE read with `fetch`.
#[test]
fn realtime_works_in_node_without_flags_over_fetch_sse() {
    common::node::run_plain_node_tests(OsStr::new("node"), &["tests/sdk/fetch-sse.test.mjs"], &[]);
}

#[tokio::test]
async fn the_admin_ui_is_served_read_only_with_its_security_headers() {
    let server = TestServer::start_with(common::Options {
        admin: false,
        ..common::Options::default()
    });
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/admin"] {
        let response = no_redirects.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/admin/", "{path}");
    }
    let page = client().get(server.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("admin.js"));
    let script = client()
        .get(server.url("/admin/admin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let post = client().post(server.url("/admin/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    // With no admin yet, the UI offers the setup form; after it, not.
    let (status, body) = common::send(client().get(server.url("/api/setup"))).await;
    assert_eq!((status, body), (200, serde_json::json!({"needed": true})));
}
