//! Browser apps: CORS on the API (preflights, allowed and other origins,
//! WebSocket handshakes) and the app's own files from `public`, over real
//! HTTP against the real binary. Path tricks go over a raw socket, since
//! HTTP clients clean `..` out of a URL before sending it.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use common::{client, header, Options, TestServer};

/// A site with a page, a script, a subdirectory with its own index, a dot
/// file, and a symlink to a file outside it.
fn site(root: &Path) -> std::path::PathBuf {
    let site = root.join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(site.join("index.html"), "<h1>the app</h1>").unwrap();
    std::fs::write(site.join("app.js"), "export const app = 1;").unwrap();
    std::fs::write(site.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(site.join(".env"), "SECRET=1").unwrap();
    std::fs::write(root.join("outside/secret.txt"), "the secret").unwrap();
    std::os::unix::fs::symlink(root.join("outside/secret.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("outside"), site.join("leakdir")).unwrap();
    site
}

fn serve_site(root: &Path, spa: bool) -> TestServer {
    let site = site(root);
    let mut args = vec!["--public".to_owned(), site.display().to_string()];
    if spa {
        args.extend(["--public-spa".to_owned(), "true".to_owned()]);
    }
    TestServer::start_with(Options {
        args,
        ..Options::default()
    })
}

/// The status line and body of a request sent byte for byte as written.
fn raw_get(server: &TestServer, path: &str) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn public_serves_the_site_with_types_and_etags() {
    let root = tempfile::tempdir().unwrap();
    let server = serve_site(root.path(), false);
    let get = |path: &str| client().get(server.url(path)).send();

    let index = get("/").await.unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    let etag = header(&index, "etag");
    assert_eq!(index.text().await.unwrap(), "<h1>the app</h1>");

    let script = get("/app.js").await.unwrap();
    assert_eq!(
        header(&script, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(script.text().await.unwrap(), "export const app = 1;");
    let docs = get("/docs/").await.unwrap();
    assert_eq!(docs.text().await.unwrap(), "<h1>docs</h1>");

    let again = client()
        .get(server.url("/"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    std::fs::write(root.path().join("site/index.html"), "<h1>v2, longer</h1>").unwrap();
    let changed = client()
        .get(server.url("/"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200, "a changed file is sent again");

    // Without public_spa, an unknown path is the API's 404, in its shape.
    let missing = get("/no/such/page").await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "content-type"), "application/json");
    // The reserved prefixes keep their meaning.
    let admin = get("/admin/").await.unwrap();
    assert!(admin.text().await.unwrap().contains("<!doctype html>"));
    let api = get("/api/health").await.unwrap();
    assert_eq!(api.status(), 200);
    let unknown_api = get("/api/index.html").await.unwrap();
    assert_eq!(unknown_api.status(), 404);
    let sdk = get("/sdk/pulsebase.js").await.unwrap();
    assert_eq!(sdk.status(), 200);
    let post = client().post(server.url("/app.js")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn nothing_outside_public_is_served() {
    let root = tempfile::tempdir().unwrap();
    let server = serve_site(root.path(), true);
    for path in [
        "/../outside/secret.txt",
        "/docs/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/docs%2f..%2f..%2foutside%2fsecret.txt",
        "/..%5coutside%5csecret.txt",
        "/leak.txt",
        "/leakdir/secret.txt",
        "/.env",
    ] {
        let (status, body) = raw_get(&server, path);
        assert!(!body.contains("the secret"), "{path} leaked: {body}");
        assert!(!body.contains("SECRET=1"), "{path} leaked: {body}");
        // With public_spa a missing file is the app's page; a climb is
        // refused outright.
        assert!(
            [400, 404].contains(&status) || body == "<h1>the app</h1>",
            "{path}: {status} {body}"
        );
    }
    let (status, body) = raw_get(&server, "/some/app/route");
    assert_eq!((status, body.as_str()), (200, "<h1>the app</h1>"));
    let (status, _) = raw_get(&server, "/../outside/secret.txt");
    assert_eq!(status, 400);
}

#[tokio::test]
async fn any_origin_may_call_the_api_by_default() {
    let server = TestServer::start();
    let preflight = client()
        .request(reqwest::Method::OPTIONS, server.url("/api/auth/signin"))
        .header("Origin", "http://app.test:5173")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,authorization,x-api-key,x-pulsebase-client",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(header(&preflight, "access-control-allow-origin"), "*");
    let methods = header(&preflight, "access-control-allow-methods");
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = header(&preflight, "access-control-allow-headers");
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(allowed.contains("x-api-key"), "{allowed}");
    // The admin UI marks its requests; served from elsewhere it still may.
    assert!(allowed.contains("x-pulsebase-client"), "{allowed}");

    for path in ["/api/health", "/sdk/pulsebase.js", "/api/nope"] {
        let response = client()
            .get(server.url(path))
            .header("Origin", "http://app.test:5173")
            .send()
            .await
            .unwrap();
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            "*",
            "{path}"
        );
    }
}

#[tokio::test]
async fn listed_origins_only_and_websockets_held_to_the_list() {
    let server = TestServer::start_with(Options {
        args: vec![
            "--cors-origins".into(),
            "http://app.test:5173, https://other.test".into(),
        ],
        ..Options::default()
    });
    let from = |origin: &'static str| {
        client()
            .get(server.url("/api/health"))
            .header("Origin", origin)
            .send()
    };
    let listed = from("http://app.test:5173").await.unwrap();
    assert_eq!(
        header(&listed, "access-control-allow-origin"),
        "http://app.test:5173"
    );
    let other = from("http://evil.test").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let token = server.admin_token().await;
    let ws_url = server
        .url(&format!("/api/realtime?token={token}"))
        .replace("http://", "ws://");
    let handshake = |origin: &'static str| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                ws_url.as_str(),
            )
            .unwrap();
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    assert!(handshake("http://app.test:5173").await.is_ok());
    let refused = handshake("http://evil.test").await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    let own = server.base.clone();
    let own: &'static str = Box::leak(own.into_boxed_str());
    assert!(handshake(own).await.is_ok(), "the server's own pages");
}
