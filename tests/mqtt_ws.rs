//! MQTT over WebSocket at `/mqtt`: Eclipse Paho's `websockets` transport
//! writing through it, the byte stream carried across WebSocket messages
//! whatever their boundaries, a broken client closed alone, and no route
//! at all when the MQTT listener is off.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use common::mqtt::{acks, blocking, clients_available, collections, first, items, key, with_mqtt};
use common::mqtt_session::{connect_v311, paho_session, MqttWs, CONNACK_OK, PINGREQ, PINGRESP};
use std::time::Duration;

use common::{client, send, TestServer};
use serde_json::json;

#[tokio::test]
async fn paho_over_websocket_publishes_at_qos_1_and_the_writes_are_stored() {
    if !clients_available("paho_over_websocket") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    collections(&server, &admin).await;
    let secret = key(&server, &admin, &["device"]).await;
    // The HTTP port, not the MQTT one.
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    for version in [3, 5] {
        let plan = json!({
            "port": port, "version": version, "transport": "websockets",
            "client_id": format!("ws-{version}"), "password": secret,
            "publish": [
                {"topic": format!("climate/site/gw-ws-{version}"), "qos": 1,
                 "payload": r#"{"temp": 19.5}"#},
                {"topic": "notes", "qos": 1,
                 "payload": format!(r#"{{"text": "over ws {version}"}}"#)},
            ],
        });
        let lines = blocking(move || paho_session(&plan)).await;
        assert_eq!(first(&lines, "connack"), 0, "{lines:?}");
        assert_eq!(acks(&lines), [Some(0), Some(0)], "{lines:?}");
    }
    // A PUBACK comes once the write is durable: no polling needed.
    let readings = items(&server, &admin, "climate").await;
    let mut devices: Vec<&str> = readings
        .iter()
        .map(|r| r["device"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, ["gw-ws-3", "gw-ws-5"], "{readings:?}");
    let notes = items(&server, &admin, "notes").await;
    let mut texts: Vec<&str> = notes.iter().map(|r| r["text"].as_str().unwrap()).collect();
    texts.sort_unstable();
    assert_eq!(texts, ["over ws 3", "over ws 5"]);

    // The CONNECT password is checked as over TCP.
    let plan = json!({
        "port": port, "version": 5, "transport": "websockets",
        "client_id": "ws-bad", "password": "pbk_not_a_key",
    });
    let lines = blocking(move || paho_session(&plan)).await;
    assert_eq!(first(&lines, "connack"), 0x86, "{lines:?}");
}

#[tokio::test]
async fn the_mqtt_byte_stream_may_span_and_share_websocket_messages() {
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut ws = MqttWs::connect(&server, "mqtt").await;
    assert_eq!(ws.protocol.as_deref(), Some("mqtt"));
    // A CONNECT cut in two messages, then two packets in one.
    let connect = connect_v311("split", 30, &secret, None);
    let (head, tail) = connect.split_at(5);
    ws.send(head).await;
    ws.send(tail).await;
    assert_eq!(ws.read(4).await.unwrap(), CONNACK_OK);
    ws.send(&[PINGREQ, PINGREQ].concat()).await;
    assert_eq!(ws.read(4).await.unwrap(), [PINGRESP, PINGRESP].concat());

    // Older 3.1.1 clients offer `mqttv3.1`.
    let mut old = MqttWs::connect(&server, "mqttv3.1").await;
    assert_eq!(old.protocol.as_deref(), Some("mqttv3.1"));
    old.send(&connect_v311("old", 30, &secret, None)).await;
    assert_eq!(old.read(4).await.unwrap(), CONNACK_OK);
}

#[tokio::test]
async fn garbage_over_websocket_disconnects_only_that_client() {
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut good = MqttWs::connect(&server, "mqtt").await;
    good.send(&connect_v311("good", 30, &secret, None)).await;
    assert_eq!(good.read(4).await.unwrap(), CONNACK_OK);

    // A reserved packet type after a good CONNECT.
    let mut bad = MqttWs::connect(&server, "mqtt").await;
    bad.send(&connect_v311("bad", 30, &secret, None)).await;
    assert_eq!(bad.read(4).await.unwrap(), CONNACK_OK);
    bad.send(&[0x00, 0x02, 0xde, 0xad]).await;
    assert!(bad.closed().await, "garbage must close its connection");

    // Text is not MQTT.
    let mut text = MqttWs::connect(&server, "mqtt").await;
    text.send_text(r#"{"action": "subscribe"}"#).await;
    assert!(
        text.closed().await,
        "a text frame must close its connection"
    );

    // Garbage where the CONNECT should be.
    let mut early = MqttWs::connect(&server, "mqtt").await;
    early.send(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(early.closed().await);

    good.send(&PINGREQ).await;
    assert_eq!(good.read(2).await.unwrap(), PINGRESP, "the others go on");
}

#[tokio::test]
async fn mqtt_over_websocket_is_not_served_when_mqtt_is_off() {
    let server = TestServer::start();
    let (status, body) = send(client().get(server.url("/mqtt"))).await;
    assert_eq!(status, 404, "{body}");
    let url = server.base.replacen("http://", "ws://", 1) + "/mqtt";
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(refused.is_err(), "the upgrade must be refused");
    // And served once it is on.
    let on = TestServer::start_with(with_mqtt());
    let (status, _) = send(client().get(on.url("/mqtt"))).await;
    assert_eq!(status, 400, "a plain GET is told to upgrade");
}

#[tokio::test]
async fn websocket_clients_meet_the_same_caps_and_keep_alive_as_tcp() {
    let mut options = with_mqtt();
    options
        .env
        .push(("PULSEBASE_MAX_CONNECTIONS_PER_IP".into(), "1".into()));
    let server = TestServer::start_with(options);
    let admin = server.admin_token().await;
    let secret = key(&server, &admin, &["device"]).await;

    let mut first = MqttWs::connect(&server, "mqtt").await;
    first.send(&connect_v311("first", 1, &secret, None)).await;
    assert_eq!(first.read(4).await.unwrap(), CONNACK_OK);
    let silent_since = std::time::Instant::now();

    // Over the per-address cap: refused in the client's words (3.1.1
    // CONNACK 3, server unavailable), then closed.
    let mut second = MqttWs::connect(&server, "mqtt").await;
    second
        .send(&connect_v311("second", 30, &secret, None))
        .await;
    assert_eq!(second.read(4).await.unwrap(), [0x20, 0x02, 0x00, 0x03]);
    assert!(second.closed().await);

    // Keep-alive 1 s and silence: closed after 1.5 s, and its place freed.
    assert!(first.closed().await, "a silent client must be closed");
    let waited = silent_since.elapsed();
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    let mut third = MqttWs::connect(&server, "mqtt").await;
    third.send(&connect_v311("third", 30, &secret, None)).await;
    assert_eq!(third.read(4).await.unwrap(), CONNACK_OK);
}

/// A session over WebSocket ends at shutdown as one over TCP does,
/// telling a 5.0 client why (DISCONNECT 0x8B) before the server exits.
/// (That shutdown also waits for it is not seen here: one session's
/// goodbye usually wins the race with the exit anyway.)
#[tokio::test]
async fn a_websocket_session_is_told_of_the_shutdown_before_the_server_exits() {
    use bytes::BytesMut;
    use rumqttc::v5::mqttbytes::v5::{Connect, DisconnectReasonCode, Login, Packet};

    let mut server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut ws = MqttWs::connect(&server, "mqtt").await;
    let connect = Connect {
        keep_alive: 0,
        client_id: "ws-shutdown".into(),
        clean_start: true,
        properties: None,
    };
    let mut out = BytesMut::new();
    Packet::Connect(connect, None, Some(Login::new("gw", secret)))
        .write(&mut out, None)
        .unwrap();
    ws.send(&out).await;
    let mut buf = BytesMut::new();
    let mut next = async |ws: &mut MqttWs| loop {
        match Packet::read(&mut buf, None) {
            Ok(packet) => return Some(packet),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                buf.extend_from_slice(&ws.read(1).await?);
            }
            Err(e) => panic!("unreadable packet from the server: {e:?}"),
        }
    };
    let connack = next(&mut ws).await;
    assert!(matches!(connack, Some(Packet::ConnAck(_))), "{connack:?}");

    let exited = blocking(move || server.terminate()).await;
    assert!(exited, "a clean exit");
    let told = next(&mut ws).await;
    assert!(
        matches!(&told, Some(Packet::Disconnect(d)) if d.reason_code == DisconnectReasonCode::ServerShuttingDown),
        "{told:?}"
    );
}
