//! The MQTT listener's limits, met by what no well-behaved client sends
//! (raw bytes over a socket): keep-alive, malformed and oversized packets,
//! the connection caps, and a credential revoked while connected.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::mqtt::{
    blocking, clients_available, collections, first, items, key, mosquitto_pub, paho, with_mqtt,
};
use common::{client, send, TestServer};
use serde_json::{json, Value};

/// A 5.0 CONNECT as bytes, for what no well-behaved client sends.
fn raw_connect(keep_alive: u16, password: &str) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0xC2];
    body.extend(keep_alive.to_be_bytes());
    body.push(0); // no properties
    for field in ["raw", "device", password] {
        body.extend((field.len() as u16).to_be_bytes());
        body.extend(field.as_bytes());
    }
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

/// The reason code of the DISCONNECT `bytes` are, whole and alone.
fn disconnect_reason(bytes: &[u8]) -> u8 {
    assert_eq!(bytes.first(), Some(&0xE0), "not a DISCONNECT: {bytes:x?}");
    assert_eq!(bytes.len(), 2 + bytes[1] as usize, "{bytes:x?}");
    bytes[2]
}

/// Connects raw, sends `connect` then `then`, and reads until the server
/// closes: what it sent, and how long that took.
async fn raw_session(port: u16, connect: &[u8], then: &[u8]) -> (Vec<u8>, Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    stream.write_all(connect).await.unwrap();
    stream.write_all(then).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .unwrap();
    (got, started.elapsed())
}

/// A 5.0 QoS 1 PUBLISH as bytes.
fn raw_publish(topic: &str, pkid: u16, payload: &str) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend(topic.as_bytes());
    body.extend(pkid.to_be_bytes());
    body.push(0); // no properties
    body.extend(payload.as_bytes());
    assert!(body.len() < 128, "one length byte");
    let mut packet = vec![0x32, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn silence_past_one_and_a_half_keep_alives_and_bad_packets_close_only_that_client() {
    if !clients_available("keep_alive") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    collections(&server, &admin).await;
    let secret = key(&server, &admin, &["device"]).await;
    let port = server.mqtt_port();
    const CONNACK_OK: [u8; 3] = [0x20, 0x00, 0x00];

    // Keep-alive 1 s: a PINGREQ is answered, then silence closes it with
    // DISCONNECT 0x8D (keep alive timeout) after about 1.5 s.
    let (got, took) = raw_session(port, &raw_connect(1, &secret), &[0xC0, 0x00]).await;
    assert_eq!(got[0], 0x20, "CONNACK first: {got:x?}");
    assert_eq!(got[2..4], CONNACK_OK[1..], "{got:x?}");
    let after_connack = 2 + got[1] as usize;
    assert_eq!(
        got[after_connack..after_connack + 2],
        [0xD0, 0x00],
        "PINGRESP: {got:x?}"
    );
    assert_eq!(
        disconnect_reason(&got[after_connack + 2..]),
        0x8D,
        "keep alive timeout: {got:x?}"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
        "closed after {took:?}"
    );

    // A remaining length that never ends: 0x81 malformed packet.
    let bad = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    let (got, _) = raw_session(port, &raw_connect(30, &secret), &bad).await;
    let after_connack = 2 + got[1] as usize;
    assert_eq!(disconnect_reason(&got[after_connack..]), 0x81, "{got:x?}");

    // Larger than max_message_bytes allows: 0x95, refused from the header.
    let big = [0x30, 0x80, 0x80, 0x10]; // remaining length 262,144
    let (got, _) = raw_session(port, &raw_connect(30, &secret), &big).await;
    let after_connack = 2 + got[1] as usize;
    assert_eq!(disconnect_reason(&got[after_connack..]), 0x95, "{got:x?}");

    // QoS 2 is not offered: 0x9B. A second CONNECT: 0x82 protocol error.
    let mut exactly_once = raw_publish("notes", 1, r#"{"text": "x"}"#);
    exactly_once[0] = 0x34;
    let (got, _) = raw_session(port, &raw_connect(30, &secret), &exactly_once).await;
    let after_connack = 2 + got[1] as usize;
    assert_eq!(disconnect_reason(&got[after_connack..]), 0x9B, "{got:x?}");
    let again = raw_connect(30, &secret);
    let (got, _) = raw_session(port, &raw_connect(30, &secret), &again).await;
    let after_connack = 2 + got[1] as usize;
    assert_eq!(disconnect_reason(&got[after_connack..]), 0x82, "{got:x?}");

    // Nobody else noticed, and nothing was written.
    let out = blocking(move || {
        mosquitto_pub(
            port,
            "mqttv5",
            &secret,
            "notes",
            1,
            r#"{"text": "still here"}"#,
        )
    })
    .await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(items(&server, &admin, "notes").await.len(), 1);
}

#[tokio::test]
async fn a_client_over_the_connection_cap_is_told_the_server_is_unavailable() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if !clients_available("connection_cap") {
        return;
    }
    let mut options = with_mqtt();
    options
        .args
        .extend(["--max-connections-per-ip".into(), "1".into()]);
    let server = TestServer::start_with(options);
    let admin = server.admin_token().await;
    let secret = key(&server, &admin, &["device"]).await;
    let port = server.mqtt_port();
    let mut first_client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    first_client
        .write_all(&raw_connect(30, &secret))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    first_client.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack[..1], [0x20], "{connack:x?}");
    let connect = |secret: String| {
        let plan = json!({"port": port, "version": 5, "client_id": "second",
                          "password": secret});
        blocking(move || first(&paho(&plan), "connack").clone())
    };
    // 0x88: server unavailable.
    assert_eq!(connect(secret.clone()).await, 0x88);
    drop(first_client);
    let mut code = Value::Null;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        code = connect(secret.clone()).await;
        if code == 0 {
            break;
        }
    }
    assert_eq!(code, 0, "the place was not given back");
}

#[tokio::test]
async fn a_revoked_key_writes_no_more_on_a_connection_it_opened() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if !clients_available("revoked_key") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    collections(&server, &admin).await;
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "gateway", "roles": ["device"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.mqtt_port()))
        .await
        .unwrap();
    stream.write_all(&raw_connect(30, secret)).await.unwrap();
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.unwrap();
    let mut connack = vec![0u8; head[1] as usize];
    stream.read_exact(&mut connack).await.unwrap();
    assert_eq!((head[0], connack[1]), (0x20, 0), "{connack:x?}");
    stream
        .write_all(&raw_publish("notes", 1, r#"{"text": "before"}"#))
        .await
        .unwrap();
    let mut puback = [0u8; 4];
    stream.read_exact(&mut puback).await.unwrap();
    assert_eq!(puback, [0x40, 0x02, 0x00, 0x01], "PUBACK success");

    let url = server.url(&format!("/api/keys/{}", key["id"].as_str().unwrap()));
    let (status, _) = send(client().delete(&url).bearer_auth(&admin)).await;
    assert_eq!(status, 204);
    // The credential is checked again at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stream
        .write_all(&raw_publish("notes", 2, r#"{"text": "after"}"#))
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest))
        .await
        .expect("the server closes the connection")
        .unwrap();
    assert_eq!(disconnect_reason(&rest), 0x87, "not authorized: {rest:x?}");
    let texts: Vec<Value> = items(&server, &admin, "notes")
        .await
        .iter()
        .map(|r| r["text"].clone())
        .collect();
    assert_eq!(texts, ["before"]);
}

/// A connection signed in with an access token ends when the token
/// expires (5.0: DISCONNECT 0x87 not authorized), keep-alive or not; the
/// device reconnects with a fresh one.
#[tokio::test]
async fn a_connection_ends_when_its_access_token_expires() {
    use bytes::BytesMut;
    use rumqttc::v5::mqttbytes::v5::{Connect, DisconnectReasonCode, Login, Packet};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut options = with_mqtt();
    options.args.extend(["--token-ttl".into(), "2s".into()]);
    let server = TestServer::start_with(options);
    // The token's 2 s run from when it is issued, and its expiry is in
    // whole seconds: it may end as little as a second after this.
    let issued = std::time::Instant::now();
    let token = server.admin_token().await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", server.mqtt_port()))
        .await
        .unwrap();
    let connect = Connect {
        keep_alive: 0,
        client_id: "short-lived".into(),
        clean_start: true,
        properties: None,
    };
    let mut buf = BytesMut::new();
    Packet::Connect(connect, None, Some(Login::new("user", token)))
        .write(&mut buf, None)
        .unwrap();
    stream.write_all(&buf).await.unwrap();
    buf.clear();
    let mut packets = Vec::new();
    while packets.len() < 2 {
        match Packet::read(&mut buf, None) {
            Ok(packet) => packets.push(packet),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
                    .await
                    .expect("the server ends the connection within 10 s")
                    .unwrap();
                assert!(read > 0, "closed without a DISCONNECT: {packets:?}");
            }
            Err(e) => panic!("unreadable packet: {e:?}"),
        }
    }
    assert!(matches!(packets[0], Packet::ConnAck(_)), "{packets:?}");
    assert!(
        matches!(&packets[1], Packet::Disconnect(d) if d.reason_code == DisconnectReasonCode::NotAuthorized),
        "{packets:?}"
    );
    assert!(
        issued.elapsed() >= Duration::from_millis(900),
        "not before it expired"
    );
}
