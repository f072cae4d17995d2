//! Will messages: what a device leaves with its CONNECT is published when
//! it goes away without a DISCONNECT (a killed client over TCP or
//! WebSocket, keep-alive silence, a protocol error), under the topic's
//! `publish` rule, and not when it says goodbye (unless a 5.0 DISCONNECT
//! asks for it). Seen by a realtime subscriber to the topic.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::mqtt::{blocking, clients_available, first, key, with_mqtt};
use common::mqtt_session::{
    connect_v311, device_topic, next_message, paho_session, subscriber, CONNACK_OK,
};
use common::TestServer;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A Paho session over `transport` to `port` with a Will on `status/<id>`
/// carrying `{"gone": id}`, ended by `end`.
fn plan(port: u16, transport: &str, version: u8, id: &str, secret: &str, end: &str) -> Value {
    json!({
        "port": port, "version": version, "transport": transport,
        "client_id": id, "password": secret,
        "will": {"topic": format!("status/{id}"), "payload": json!({"gone": id}).to_string(),
                 "qos": 1, "retain": false},
        "end": end,
    })
}

async fn run(plan: Value) {
    let lines = blocking(move || paho_session(&plan)).await;
    assert_eq!(first(&lines, "connack"), 0, "{lines:?}");
    assert!(lines.iter().any(|l| l.get("end").is_some()), "{lines:?}");
}

fn http_port(server: &TestServer) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_will_is_published_when_a_device_dies_over_tcp_or_websocket() {
    if !clients_available("will_on_death") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "status").await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut ws = subscriber(&server, &admin, "status").await;

    run(plan(
        server.mqtt_port(),
        "tcp",
        3,
        "tcp-3",
        &secret,
        "abort",
    ))
    .await;
    assert_eq!(next_message(&mut ws).await, json!({"gone": "tcp-3"}));
    let port = http_port(&server);
    run(plan(port, "websockets", 5, "ws-5", &secret, "abort")).await;
    assert_eq!(next_message(&mut ws).await, json!({"gone": "ws-5"}));
}

#[tokio::test]
async fn a_clean_disconnect_publishes_no_will_unless_it_asks_for_it() {
    if !clients_available("will_on_disconnect") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "status").await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut ws = subscriber(&server, &admin, "status").await;
    let port = server.mqtt_port();

    run(plan(port, "tcp", 3, "clean-3", &secret, "disconnect")).await;
    run(plan(port, "tcp", 5, "clean-5", &secret, "disconnect")).await;
    let http = http_port(&server);
    run(plan(
        http,
        "websockets",
        5,
        "clean-ws",
        &secret,
        "disconnect",
    ))
    .await;
    // 5.0 DISCONNECT 0x04: leaving, with the Will all the same. Had a
    // clean disconnect published its Will, that one would come first.
    run(plan(
        port,
        "tcp",
        5,
        "asks",
        &secret,
        "disconnect_with_will",
    ))
    .await;
    assert_eq!(next_message(&mut ws).await, json!({"gone": "asks"}));
    ws.expect_quiet(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_will_is_published_after_keep_alive_silence_or_a_protocol_error() {
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "status").await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut ws = subscriber(&server, &admin, "status").await;
    let port = server.mqtt_port();

    // Keep-alive 1 s, then silence: closed after 1.5 s.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let will = Some(("status/silent", br#""silent""#.as_slice()));
    silent
        .write_all(&connect_v311("silent", 1, &secret, will))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    silent.read_exact(&mut connack).await.unwrap();
    assert_eq!(connack, CONNACK_OK);
    assert_eq!(next_message(&mut ws).await, json!("silent"));

    // A reserved packet type after the CONNECT.
    let mut broken = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let will = Some(("status/broken", br#""broken""#.as_slice()));
    let mut bytes = connect_v311("broken", 30, &secret, will);
    bytes.extend_from_slice(&[0x00, 0x00]);
    broken.write_all(&bytes).await.unwrap();
    assert_eq!(next_message(&mut ws).await, json!("broken"));
    drop(silent);
}

#[tokio::test]
async fn a_will_on_a_topic_the_device_may_not_publish_to_is_not_published() {
    if !clients_available("will_forbidden") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "status").await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let device = key(&server, &admin, &["device"]).await;
    let mut ws = subscriber(&server, &admin, "status").await;
    let port = server.mqtt_port();

    run(plan(port, "tcp", 3, "viewer", &viewer, "abort")).await;
    // The device's Will, sent after, is the first to arrive.
    run(plan(port, "tcp", 3, "device", &device, "abort")).await;
    assert_eq!(next_message(&mut ws).await, json!({"gone": "device"}));
    ws.expect_quiet(Duration::from_millis(500)).await;
}
