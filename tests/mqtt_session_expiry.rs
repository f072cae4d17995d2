//! Persistent sessions whose client never comes back are swept once their
//! expiry has passed since their connection ended; a connected client's
//! session is kept however old its last save, and one that never expires
//! stays. Counted by `GET /api/stats` (`mqtt_sessions`), with Paho and
//! `mosquitto_sub` as the devices.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::mqtt::{
    blocking, clients_available, key, message, paho, paho_spawn, topic, with_mqtt, Sub,
};
use common::{client, send, TestServer};
use serde_json::json;

async fn stored_sessions(server: &TestServer, admin: &str) -> u64 {
    let (status, body) = send(client().get(server.url("/api/stats")).bearer_auth(admin)).await;
    assert_eq!(status, 200, "{body}");
    body["mqtt_sessions"].as_u64().unwrap()
}

/// Waits until `GET /api/stats` counts `n` stored sessions.
async fn until_stored(server: &TestServer, admin: &str, n: u64, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let stored = stored_sessions(server, admin).await;
        if stored == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{why}: {stored} sessions, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn expired_sessions_are_swept_but_not_while_their_client_is_connected() {
    if !clients_available("session_expiry") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    topic(
        &server,
        &admin,
        json!({"name": "alerts", "subscribe": "true"}),
    )
    .await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = |id: &str, expected: usize| {
        json!({
            "port": server.mqtt_port(), "version": 5, "client_id": id, "password": viewer,
            "clean": false, "session_expiry": 1,
            "subscribe": [{"topic": "alerts", "qos": 1}],
            "messages_expected": expected, "wait": 40,
        })
    };
    // Connected first, so its last save is older than the leaver's.
    let (mut connected, lines) = paho_spawn(&plan("stays", 1));
    let lines = blocking(move || {
        let mut lines = lines;
        lines.find(|l| l.get("suback").is_some()).unwrap();
        lines
    })
    .await;
    let leaver = plan("leaves", 0);
    let said = blocking(move || paho(&leaver)).await;
    assert!(said.iter().any(|l| l.get("suback").is_some()), "{said:?}");
    // 3.1.1 persistent sessions never expire.
    let (port, secret) = (server.mqtt_port(), viewer.clone());
    let forever = ["-c", "-i", "forever", "-q", "1"];
    blocking(move || drop(Sub::start(port, "mqttv311", &secret, &["alerts"], &forever))).await;
    assert_eq!(stored_sessions(&server, &admin).await, 3);

    until_stored(&server, &admin, 2, "the one that left is swept").await;
    // Its last save is older than the swept one's: only being connected
    // kept it. Now it gets a message, disconnects, and expires in turn.
    message(&server, &admin, "alerts", json!({"n": 1})).await;
    blocking(move || {
        let got = lines.filter(|l| l.get("message").is_some()).count();
        let _ = connected.wait();
        assert_eq!(got, 1);
    })
    .await;
    until_stored(&server, &admin, 1, "swept once disconnected").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(stored_sessions(&server, &admin).await, 1, "3.1.1: kept");
}
