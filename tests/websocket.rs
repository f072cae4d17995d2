//! The WebSocket protocol itself (RFC 6455), over real sockets: the opening
//! handshake's key, the closing handshake, and frames that break the rules.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::live::{RawWs, Ws, OPCODE_CLOSE, OPCODE_TEXT, WAIT};
use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// A client's close is answered with a close frame of the same code, and
/// then the server ends the TCP connection: the client sees a clean close,
/// not 1006.
#[tokio::test]
async fn a_client_close_is_echoed_with_its_code_and_the_connection_ends() {
    let server = TestServer::start();
    for code in [1000u16, 4321] {
        let mut ws = Ws::connect(&server, None).await;
        ws.stream
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "done".into(),
            })))
            .await
            .unwrap();
        let echoed = loop {
            match tokio::time::timeout(WAIT, ws.stream.next()).await {
                Err(_) => panic!("no close frame within the wait"),
                Ok(Some(Ok(Message::Close(frame)))) => break frame,
                Ok(Some(Ok(_))) => {}
                Ok(other) => panic!("the connection ended without a close frame: {other:?}"),
            }
        };
        assert_eq!(echoed.map(|f| u16::from(f.code)), Some(code));
        // After the handshake the server closes the TCP connection.
        let end = tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("the server kept the connection open");
        assert!(
            matches!(end, None | Some(Err(_))),
            "a frame after the close: {end:?}"
        );
    }
}

/// Reads raw frames until a close frame; answers its code.
async fn close_code(raw: &mut RawWs) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let frame = raw
            .read_frame(deadline)
            .await
            .expect("the connection ended without a close frame");
        if frame.opcode == OPCODE_CLOSE {
            return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
        }
    }
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    let server = TestServer::start();
    let mut raw = RawWs::connect(&server, None).await;
    raw.send_frame(OPCODE_TEXT, b"{\"action\":\"ping\",\"id\":\"\xff\xfe\"}")
        .await;
    assert_eq!(close_code(&mut raw).await, 1007);

    // Valid UTF-8 that is not JSON is only a bad request.
    let mut ws = Ws::connect(&server, None).await;
    ws.send(Value::String("hello".into())).await;
    let reply = ws.next().await;
    assert_eq!(reply["code"], "bad_request", "{reply}");
    ws.stays_open(Duration::from_millis(300)).await;
}

/// The raw answer to an upgrade request with this `Sec-WebSocket-Key`
/// line (or none): its status and body.
async fn upgrade_with(server: &TestServer, key_line: &str) -> (u16, String) {
    let headers = format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\n{key_line}Sec-WebSocket-Version: 13\r\n"
    );
    let (status, _, body) = answer_to(server, &headers).await;
    (status, body)
}

/// The raw answer to `GET /api/realtime` with these header lines: its
/// status, head (lowercase) and body.
async fn answer_to(server: &TestServer, header_lines: &str) -> (u16, String, String) {
    let host = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let request = format!("GET /api/realtime HTTP/1.1\r\nHost: {host}\r\n{header_lines}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    // Up to the end of the head and the body its length names.
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("no answer within the wait")
            .unwrap();
        bytes.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse().unwrap());
            if n == 0 || text.len() >= end + 4 + length {
                let status = text[9..12].parse().unwrap();
                let body = text[end + 4..end + 4 + length].to_owned();
                return (status, head, body);
            }
        }
        assert!(n > 0, "the connection ended early: {text}");
    }
}

/// The server answers the opening handshake itself (RFC 6455 §4.2): a
/// request that is not a WebSocket upgrade gets the API's 400 whatever it
/// lacks, and a valid one is accepted with the RFC's key and the
/// subprotocol, even when `Connection` lists other tokens too.
#[tokio::test]
async fn the_handshake_refuses_what_is_not_an_upgrade_and_accepts_token_lists() {
    let server = TestServer::start();
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let refused = [
        (
            "no Upgrade",
            format!("Connection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n"),
        ),
        (
            "Upgrade: h2c",
            format!("Upgrade: h2c\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n"),
        ),
        (
            "Connection: close",
            format!(
                "Upgrade: websocket\r\nConnection: close\r\n{key}Sec-WebSocket-Version: 13\r\n"
            ),
        ),
        (
            "version 8",
            format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 8\r\n"
            ),
        ),
        (
            "no version",
            format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{key}"),
        ),
        ("a plain GET", String::new()),
    ];
    for (what, headers) in refused {
        let (status, _, body) = answer_to(&server, &headers).await;
        assert_eq!(status, 400, "{what}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{what}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("WebSocket upgrade"), "{what}: {body}");
    }

    let headers = format!(
        "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: chat, pulsebase.v1\r\n"
    );
    let (status, head, _) = answer_to(&server, &headers).await;
    assert_eq!(status, 101, "{head}");
    // The head is lowercased: the RFC's accept value, s3pPLMBiTxaQ9kYGzzhZRbK+xOo=.
    let has = |line: &str| head.lines().any(|l| l == line);
    assert!(
        has("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(has("sec-websocket-protocol: pulsebase.v1"), "{head}");

    let headers = format!("Upgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n");
    let (status, head, _) = answer_to(&server, &headers).await;
    assert_eq!(status, 101, "{head}");
    assert!(
        !head.contains("sec-websocket-protocol"),
        "a protocol the client did not offer: {head}"
    );
}

#[tokio::test]
async fn the_upgrade_needs_a_valid_sec_websocket_key() {
    let server = TestServer::start();
    for key_line in [
        "Sec-WebSocket-Key: \r\n",
        "",
        "Sec-WebSocket-Key: abc\r\n",
        // Base64, but of 15 bytes, not 16.
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j\r\n",
    ] {
        let (status, body) = upgrade_with(&server, key_line).await;
        assert_eq!(status, 400, "{key_line:?}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], "bad_request", "{key_line:?}: {body}");
    }
    let (status, _) =
        upgrade_with(&server, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n").await;
    assert_eq!(status, 101);
}
