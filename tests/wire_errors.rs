//! Every error answer has the contract's shape, `{"error": {"code",
//! "message"}}`, including the ones made before any handler runs: a path
//! that is not UTF-8 once decoded, and requests hyper itself refuses (a
//! request line with raw non-ASCII bytes, a URI over 64 KiB, headers over
//! its buffer, a malformed header line).

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, read_answer, TestServer};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// hyper's read buffer limit: a request head that does not end within it
/// is refused with 431.
const HYPER_MAX_BUFFER: usize = 8192 + 4096 * 100;

/// A raw answer: status, the head's lines, and the body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `request` as is over a fresh connection and reads the answer
/// until the server closes the connection.
async fn raw(server: &TestServer, request: &[u8]) -> Answer {
    let host = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    stream.write_all(request).await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    let status = head[9..12].parse().unwrap();
    Answer { status, head, body }
}

/// Asserts the error shape with `code`, and a JSON content type and a
/// matching length in the head.
fn assert_shape(answer: &Answer, status: u16, code: &str) {
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or_else(|_| {
        panic!(
            "not JSON ({}): {:?}\n{}",
            answer.status,
            String::from_utf8_lossy(&answer.body),
            answer.head
        )
    });
    assert_eq!(answer.status, status, "{}\n{body}", answer.head);
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let head = answer.head.to_ascii_lowercase();
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", answer.body.len())),
        "{head}"
    );
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_bad_request_in_the_error_shape() {
    let server = TestServer::start();
    for path in [
        "/api/collections/%FF/records",
        "/api/collections/%C3%28",
        "/api/collections/notes/records/%FF%FE",
        "/api/users/%80",
    ] {
        let response = client().get(server.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = common::header(&response, "content-type");
        let text = response.text().await.unwrap();
        assert_eq!(status, 400, "{path}: {text}");
        assert_eq!(content_type, "application/json", "{path}: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{path}: {body}");
    }
    // The same bytes raw on the wire, not percent-encoded: hyper refuses
    // the request line before the router.
    let answer = raw(
        &server,
        b"GET /api/collections/\xff/records HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert_shape(&answer, 400, "bad_request");
}

#[tokio::test]
async fn requests_hyper_refuses_answer_in_the_error_shape() {
    let server = TestServer::start();
    let long_uri = format!(
        "GET /api/health?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    assert_shape(&raw(&server, long_uri.as_bytes()).await, 414, "bad_request");

    let bad_header = b"GET /api/health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n";
    assert_shape(&raw(&server, bad_header).await, 400, "bad_request");

    // Exactly the buffer, so the server has read everything it was sent
    // when it answers (unread bytes would turn its close into a reset).
    let mut huge = b"GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.resize(HYPER_MAX_BUFFER, b'a');
    assert_shape(&raw(&server, &huge).await, 431, "bad_request");

    // A well-formed request on the same server is untouched.
    let fine = raw(
        &server,
        b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(fine.status, 200);
    let body: Value = serde_json::from_slice(&fine.body).unwrap();
    assert_eq!(body["status"], "ok");
}
