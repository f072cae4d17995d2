//! Publishes that arrive together: a device that sends several QoS 1
//! readings in one TCP segment has them written as one append, and each
//! still gets its own PUBACK, in order, with its own verdict. The packets
//! are built with the `mqttbytes` codec (rumqttc's) and written in one go,
//! so the server reads them together; a client library would decide for
//! itself how to split them.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::mqtt::{collections, items, key, with_mqtt};
use common::TestServer;
use rumqttc::v5::mqttbytes::v5::{Connect, Login, Packet, PubAckReason, Publish};
use rumqttc::v5::mqttbytes::QoS;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Reads packets until `n` have come (or fails after 10 s).
async fn read_packets(stream: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Vec<Packet> {
    let mut packets = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while packets.len() < n {
        match Packet::read(buf, None) {
            Ok(packet) => packets.push(packet),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {
                let read = tokio::time::timeout_at(deadline, stream.read_buf(buf))
                    .await
                    .expect("the server answered in time")
                    .expect("the socket stayed open");
                assert!(read > 0, "the server closed after {packets:?}");
            }
            Err(e) => panic!("unreadable packet from the server: {e:?}"),
        }
    }
    packets
}

#[tokio::test]
async fn readings_sent_together_are_acked_one_by_one_and_a_bad_one_alone_is_refused() {
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    collections(&server, &admin).await;
    let secret = key(&server, &admin, &["device"]).await;
    let mut stream = TcpStream::connect(("127.0.0.1", server.mqtt_port()))
        .await
        .unwrap();
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive: 0,
        client_id: "batched".into(),
        clean_start: true,
        properties: None,
    };
    Packet::Connect(connect, None, Some(Login::new("gw", secret)))
        .write(&mut out, None)
        .unwrap();
    stream.write_all(&out).await.unwrap();
    let mut buf = BytesMut::new();
    let connack = read_packets(&mut stream, &mut buf, 1).await;
    assert!(matches!(connack[0], Packet::ConnAck(_)), "{connack:?}");

    // The third is of the wrong type; the others, JSON and line protocol,
    // are good. All six go out in one write.
    let payloads = [
        r#"{"temp": 1}"#,
        r#"[{"temp": 2}, {"temp": 3}]"#,
        r#"{"temp": "hot"}"#,
        r#"{"temp": 4}"#,
        "m temp=5",
        r#"{"temp": 6}"#,
    ];
    out.clear();
    for (pkid, payload) in (1..).zip(payloads) {
        let mut publish = Publish::new("climate/gw-1", QoS::AtLeastOnce, payload, None);
        publish.pkid = pkid;
        Packet::Publish(publish).write(&mut out, None).unwrap();
    }
    stream.write_all(&out).await.unwrap();

    let acks: Vec<(u16, PubAckReason)> = read_packets(&mut stream, &mut buf, payloads.len())
        .await
        .into_iter()
        .map(|packet| match packet {
            Packet::PubAck(ack) => (ack.pkid, ack.reason),
            other => panic!("expected PUBACKs, got {other:?}"),
        })
        .collect();
    let expected: Vec<(u16, PubAckReason)> = (1..)
        .zip(payloads)
        .map(|(pkid, payload)| {
            let reason = if payload.contains("hot") {
                PubAckReason::PayloadFormatInvalid
            } else {
                PubAckReason::Success
            };
            (pkid, reason)
        })
        .collect();
    assert_eq!(acks, expected);

    // Every acknowledged reading is stored once, from the topic's device,
    // in the order sent.
    let stored = items(&server, &admin, "climate").await;
    let temps: Vec<f64> = stored
        .iter()
        .map(|item| item["temp"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "{stored:?}");
    assert!(
        stored.iter().all(|item| item["device"] == "gw-1"),
        "{stored:?}"
    );
}
