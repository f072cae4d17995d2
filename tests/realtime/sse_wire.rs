//! The SSE stream as bytes on the wire: a connection that opens with an SSE
//! request is served outside the general HTTP server, so its head parsing,
//! framing, errors and the end of the stream are checked here over raw TCP.

use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until `needle` has arrived; everything read so far.
async fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{:?} never came; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(seen)
                )
            })
            .unwrap();
        assert!(
            read > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&chunk[..read]);
    }
}

/// Sends `request` on a new connection and reads the answer to its end:
/// the head (in lower case) and the JSON body.
async fn refused(server: &TestServer, request: &[u8]) -> (String, Value) {
    let mut stream = connect(server).await;
    stream.write_all(request).await.unwrap();
    let (head, body) = common::read_answer(&mut stream).await;
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(&format!("\r\ncontent-length: {}", body.len())),
        "{head}"
    );
    let body = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("not JSON: {:?}\n{head}", String::from_utf8_lossy(&body)));
    (head, body)
}

async fn sse_connections(server: &TestServer, admin: &str) -> u64 {
    let (status, stats) = send(client().get(server.url("/api/stats")).bearer_auth(admin)).await;
    assert_eq!(status, 200, "{stats}");
    stats["transports"]["sse"].as_u64().unwrap()
}

#[tokio::test]
async fn a_stream_requested_in_pieces_is_chunked_and_ends_when_the_client_leaves() {
    let (server, admin, ann, _bob) = notes_server().await;
    let mut stream = connect(&server).await;
    // The request line arrives in two writes, the second after the server
    // has already looked at the first.
    stream.write_all(b"GET /api/re").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rest = format!("altime/sse?topic=notes&token={admin} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"event: ok").await;
    let head = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: text/event-stream"),
        "{head}"
    );
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );

    let (status, note) = send(
        client()
            .post(server.url("/api/collections/notes/records"))
            .bearer_auth(&ann)
            .json(&json!({"text": "over the wire", "public": true})),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    read_until(
        &mut stream,
        &mut seen,
        note["id"].as_str().unwrap().as_bytes(),
    )
    .await;
    assert_eq!(sse_connections(&server, &admin).await, 1);

    // Heartbeats are far off: the server learns the client left from the
    // socket itself, and the hub forgets the stream at once.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while sse_connections(&server, &admin).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unreadable_stream_request_gets_the_error_shape() {
    let server = TestServer::start();
    let request = b"GET /api/realtime/sse?topic=notes HTTP/1.1\r\nHost test\r\n\r\n";
    let (head, body) = refused(&server, request).await;
    assert!(head.starts_with("http/1.1 400 "), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    assert_eq!(error_code(&body), "bad_request", "{body}");

    // Refusals from the stream's handler come back the same way, with
    // the connection closed after them.
    let request = b"GET /api/realtime/sse?topic=x&token=nonsense HTTP/1.1\r\nHost: test\r\n\r\n";
    let (head, body) = refused(&server, request).await;
    assert!(head.starts_with("http/1.1 401 "), "{head}");
    assert_eq!(error_code(&body), "unauthorized", "{body}");
}

#[tokio::test]
async fn an_http_1_0_stream_is_sent_unframed_and_a_longer_path_is_not_a_stream() {
    let (server, admin, _ann, _bob) = notes_server().await;
    let mut stream = connect(&server).await;
    let request = format!("GET /api/realtime/sse?topic=notes&token={admin} HTTP/1.0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, b"event: ok").await;
    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(body.starts_with("event: ok"), "{body:?}");

    let request = b"GET /api/realtime/ssex HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
    let (head, body) = refused(&server, request).await;
    assert!(head.starts_with("http/1.1 404 "), "{head}");
    assert_eq!(error_code(&body), "not_found", "{body}");
}

/// The events of one chunked stream, grouped by the chunk that carried
/// them: each group the `event:` names in that chunk.
fn events_per_chunk(body: &[u8]) -> Vec<Vec<String>> {
    let mut chunks = Vec::new();
    let mut at = 0;
    while let Some(line_end) = body[at..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[at..at + line_end]).unwrap();
        let size = usize::from_str_radix(size, 16).unwrap();
        let start = at + line_end + 2;
        if size == 0 || start + size > body.len() {
            break;
        }
        let text = String::from_utf8_lossy(&body[start..start + size]);
        let names = text
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .map(str::to_owned)
            .collect();
        chunks.push(names);
        at = start + size + 2;
    }
    chunks
}

/// Events that are ready together leave together: a resumed stream's
/// replayed page is one chunk, one socket write, not a chunk per event
/// (as it was when every event was a body chunk of its own).
#[tokio::test]
async fn a_replayed_page_goes_out_in_one_chunk() {
    let (server, admin, ann, _bob) = notes_server().await;
    let mut last_id = String::new();
    for n in 0..20 {
        let (status, note) = send(
            client()
                .post(server.url("/api/collections/notes/records"))
                .bearer_auth(&ann)
                .json(&json!({"text": format!("note {n}"), "public": true})),
        )
        .await;
        assert_eq!(status, 201, "{note}");
        last_id = note["id"].as_str().unwrap().to_owned();
    }
    let mut stream = connect(&server).await;
    let request = format!(
        "GET /api/realtime/sse?topic=notes&since=0&token={admin} HTTP/1.1\r\nHost: test\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    read_until(&mut stream, &mut seen, last_id.as_bytes()).await;
    // Then to the end of the chunk that holds the last event.
    let last = seen
        .windows(last_id.len())
        .position(|w| w == last_id.as_bytes());
    let mut tail = seen.split_off(last.unwrap());
    read_until(&mut stream, &mut tail, b"\n\n\r\n").await;
    seen.append(&mut tail);
    let at = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let chunks = events_per_chunk(&seen[at..]);
    let replayed: Vec<usize> = chunks
        .iter()
        .map(|names| names.iter().filter(|n| *n == "event").count())
        .filter(|&n| n > 0)
        .collect();
    assert_eq!(chunks[0], ["ok"], "the opening first, alone: {chunks:?}");
    assert_eq!(replayed, [20], "the 20 events in one chunk: {chunks:?}");
}
