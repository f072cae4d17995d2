//! Retained messages published by devices: a PUBLISH (or a Will) with the
//! retain flag keeps its message as the topic's retained one, on disk,
//! even on a topic that keeps no history; a subscriber gets it right after
//! its SUBACK with the flag set; a retained PUBLISH with an empty payload
//! clears it. Driven by Eclipse Paho, across a kill -9 of the server.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use common::mqtt::{
    acks, blocking, clients_available, key, message, paho, paho_subscribed, with_mqtt,
};
use common::mqtt_session::{device_topic, paho_session};
use common::TestServer;
use serde_json::{json, Value};

/// Publishes `payload` on `topic` with the retain flag at QoS 1 (5.0);
/// answers the PUBACK reason code.
async fn publish_retained(server: &TestServer, secret: &str, topic: &str, payload: &str) -> u64 {
    let plan = json!({
        "port": server.mqtt_port(), "version": 5, "client_id": "lamp-switch",
        "password": secret,
        "publish": [{"topic": topic, "payload": payload, "qos": 1, "retain": true}],
    });
    let lines = blocking(move || paho(&plan)).await;
    acks(&lines)[0].unwrap_or_else(|| panic!("no PUBACK: {lines:?}"))
}

/// Subscribes to `topic` and, once subscribed, has `admin` publish
/// `{"live": true}` on it over REST: answers `(retain flag, payload)` of
/// every message up to and including that live one. A retained message
/// comes before the live one, so an empty answer before it means none.
async fn subscribe_then_publish(
    server: &TestServer,
    secret: &str,
    admin: &str,
    topic: &str,
) -> Vec<(Value, Value)> {
    let plan = json!({
        "port": server.mqtt_port(), "version": 5, "client_id": "lamp-watcher",
        "password": secret, "subscribe": [{"topic": topic, "qos": 1}],
        "messages_expected": 2, "wait": 3,
    });
    let (mut child, suback, lines) = paho_subscribed(&plan).await;
    assert_eq!(suback, json!([1]));
    message(server, admin, topic, json!({"live": true})).await;
    blocking(move || {
        let mut got = Vec::new();
        for line in lines {
            let Some(m) = line.get("message") else {
                continue;
            };
            got.push((m["retain"].clone(), m["payload"]["data"].clone()));
            if m["payload"]["data"] == json!({"live": true}) {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        got
    })
    .await
}

#[tokio::test]
async fn a_retained_publish_outlives_kill_9_without_history_and_an_empty_one_clears_it() {
    if !clients_available("retained_publish") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "lamp").await;
    let device = key(&server, &admin, &["device"]).await;
    let viewer = key(&server, &admin, &["viewer"]).await;

    assert_eq!(
        publish_retained(&server, &device, "lamp", r#"{"on": true}"#).await,
        0
    );
    // Clearing is publishing: the viewer may not.
    assert_eq!(publish_retained(&server, &viewer, "lamp", "").await, 0x87);
    server.kill();

    let server = TestServer::start_in(dir.path(), with_mqtt());
    let admin = server.admin_token().await;
    let got = subscribe_then_publish(&server, &viewer, &admin, "lamp").await;
    assert_eq!(
        got,
        [
            (json!(true), json!({"on": true})),
            (json!(false), json!({"live": true})),
        ],
        "the retained message first, flagged, then the live one"
    );

    assert_eq!(publish_retained(&server, &device, "lamp", "").await, 0);
    let got = subscribe_then_publish(&server, &viewer, &admin, "lamp").await;
    assert_eq!(got, [(json!(false), json!({"live": true}))], "cleared");
}

#[tokio::test]
async fn a_will_with_the_retain_flag_becomes_the_topic_s_retained_message() {
    if !clients_available("retained_will") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    device_topic(&server, &admin, "status").await;
    let device = key(&server, &admin, &["device"]).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = json!({
        "port": server.mqtt_port(), "version": 3, "transport": "tcp",
        "client_id": "gw-9", "password": device,
        "will": {"topic": "status", "payload": r#"{"gone": "gw-9"}"#, "qos": 1, "retain": true},
        "end": "abort",
    });
    let lines = blocking(move || paho_session(&plan)).await;
    assert!(lines.iter().any(|l| l.get("end").is_some()), "{lines:?}");

    // The Will is published once the server sees the socket die.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = subscribe_then_publish(&server, &viewer, &admin, "status").await;
        // Published while this one was subscribed, it came live: the next
        // subscriber gets it as retained.
        if got.first() == Some(&(json!(true), json!({"gone": "gw-9"}))) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retained Will: {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
