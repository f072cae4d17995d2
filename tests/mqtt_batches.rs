//! Packets that go together. Publishes that arrive together: a device
//! that sends several QoS 1 readings in one TCP segment has them written
//! as one append, and each still gets its own PUBACK, in order, with its
//! own verdict. The packets are built with the `mqttbytes` codec
//! (rumqttc's) and written in one go, so the server reads them together;
//! a client library would decide for itself how to split them. And
//! deliveries that waited together leave together, in one socket write;
//! a QoS 0 subscriber that gets them in batches is then paced as busy.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::mqtt::{collections, items, key, message, topic, with_mqtt};
use common::TestServer;
use rumqttc::v5::mqttbytes::v5::{
    Connect, Filter, Login, Packet, PubAck, PubAckReason, Publish, Subscribe,
};
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

/// A 5.0 client connected with `secret`, its CONNACK read: the socket
/// and what was read past it.
async fn connected(server: &TestServer, client_id: &str, secret: String) -> (TcpStream, BytesMut) {
    let stream = TcpStream::connect(("127.0.0.1", server.mqtt_port()))
        .await
        .unwrap();
    connect_on(stream, client_id, secret).await
}

/// Sends a 5.0 CONNECT on `stream` and reads the CONNACK.
async fn connect_on(
    mut stream: TcpStream,
    client_id: &str,
    secret: String,
) -> (TcpStream, BytesMut) {
    let mut out = BytesMut::new();
    let connect = Connect {
        keep_alive: 0,
        client_id: client_id.into(),
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
    (stream, buf)
}

#[tokio::test]
async fn readings_sent_together_are_acked_one_by_one_and_a_bad_one_alone_is_refused() {
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    collections(&server, &admin).await;
    let secret = key(&server, &admin, &["device"]).await;
    let (mut stream, mut buf) = connected(&server, "batched", secret).await;
    let mut out = BytesMut::new();

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

/// The number in a metric's sample line, 0 when it has none yet.
async fn metric(server: &TestServer, name: &str) -> f64 {
    let response = common::client()
        .get(server.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

const METRICS_TOKEN: &str = "scrape-token-0123456789";

/// A server with metrics, a custom topic `alerts`, and a device key's
/// secret: (server, admin token, secret).
async fn alerts_server() -> (TestServer, String, String) {
    let mut options = with_mqtt();
    options
        .env
        .push(("PULSEBASE_METRICS_TOKEN".into(), METRICS_TOKEN.into()));
    // Publishing over REST counts against the sender's message rate.
    options
        .env
        .push(("PULSEBASE_MESSAGE_RATE".into(), "10000".into()));
    let server = TestServer::start_with(options);
    let admin = server.admin_token().await;
    topic(
        &server,
        &admin,
        serde_json::json!({"name": "alerts", "subscribe": "true", "history": 100}),
    )
    .await;
    let secret = key(&server, &admin, &["device"]).await;
    (server, admin, secret)
}

/// Subscribes to `alerts` at `qos` and reads the SUBACK.
async fn subscribe(stream: &mut TcpStream, buf: &mut BytesMut, qos: QoS) {
    let mut out = BytesMut::new();
    let mut subscribe = Subscribe::new(Filter::new("alerts", qos), None);
    subscribe.pkid = 1;
    Packet::Subscribe(subscribe).write(&mut out, None).unwrap();
    stream.write_all(&out).await.unwrap();
    let answer = read_packets(stream, buf, 1).await;
    assert!(matches!(answer[0], Packet::SubAck(_)), "{answer:?}");
}

#[tokio::test]
async fn deliveries_that_waited_for_the_window_go_out_in_one_batch() {
    let (server, admin, secret) = alerts_server().await;
    let (mut stream, mut buf) = connected(&server, "reader", secret).await;
    subscribe(&mut stream, &mut buf, QoS::AtLeastOnce).await;
    let mut out = BytesMut::new();

    // The first 32 fill the client's window (it acknowledges none yet);
    // the next 32 wait in the connection's outbox meanwhile.
    for n in 0..64 {
        message(&server, &admin, "alerts", serde_json::json!({"n": n})).await;
    }
    let first = read_packets(&mut stream, &mut buf, 32).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metric(&server, "pulsebase_realtime_outbox_depth").await < 32.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rest never queued"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let batches_before = metric(&server, "pulsebase_realtime_delivery_lag_seconds_count").await;

    // Acknowledging the whole window at once frees room for all of them.
    out.clear();
    for packet in &first {
        let Packet::Publish(publish) = packet else {
            panic!("expected PUBLISHes, got {packet:?}");
        };
        Packet::PubAck(PubAck::new(publish.pkid, None))
            .write(&mut out, None)
            .unwrap();
    }
    stream.write_all(&out).await.unwrap();
    let second = read_packets(&mut stream, &mut buf, 32).await;
    let numbers: Vec<u64> = first
        .iter()
        .chain(&second)
        .map(|packet| match packet {
            Packet::Publish(publish) => {
                let data: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
                data["data"]["n"].as_u64().unwrap()
            }
            other => panic!("expected PUBLISHes, got {other:?}"),
        })
        .collect();
    assert_eq!(
        numbers,
        (0..64).collect::<Vec<u64>>(),
        "all of them, in order"
    );

    // One batch taken from the outbox: one socket write, where one write
    // per delivery made a busy subscriber's writes as many as its messages.
    let batches =
        metric(&server, "pulsebase_realtime_delivery_lag_seconds_count").await - batches_before;
    assert_eq!(
        batches, 1.0,
        "the waiting deliveries were taken in {batches} batches"
    );

    // A QoS 1 subscriber is paced by its PUBACKs, not by a gap: a gap on
    // top would cap it at one window per gap.
    assert_eq!(
        metric(&server, "pulsebase_realtime_paced_connections").await,
        0.0,
        "a QoS 1 subscriber is not counted as paced"
    );
}

/// Publishes the messages numbered `numbers` on `alerts`, about 8 KiB each.
async fn publish_padded(server: &TestServer, admin: &str, numbers: std::ops::Range<u64>) {
    for n in numbers {
        let data = serde_json::json!({"n": n, "pad": "x".repeat(8000)});
        message(server, admin, "alerts", data).await;
    }
}

#[tokio::test]
async fn a_busy_qos0_subscriber_is_paced_until_it_goes_quiet() {
    let (server, admin, secret) = alerts_server().await;
    // While the client does not read, the server's writes block once the
    // socket's buffers are full (a small receive buffer on this side; the
    // server's send buffer still grows to a few MiB on loopback), and
    // what comes next waits in the connection's outbox, to leave in one
    // batch when the client reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(([127, 0, 0, 1], server.mqtt_port()).into())
        .await
        .unwrap();
    let (mut stream, mut buf) = connect_on(stream, "reader", secret).await;
    subscribe(&mut stream, &mut buf, QoS::AtMostOnce).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut published = 0;
    while metric(&server, "pulsebase_realtime_outbox_depth").await < 8.0 {
        assert!(published < 1000, "nothing queued behind the blocked write");
        publish_padded(&server, &admin, published..published + 25).await;
        published += 25;
    }
    // Every message handed to the outbox before reading, so that none
    // comes after the batch and is written alone.
    while metric(&server, "pulsebase_realtime_events_delivered_total").await < published as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all handed over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = read_packets(&mut stream, &mut buf, published as usize).await;
    assert!(
        all.iter().all(|p| matches!(p, Packet::Publish(_))),
        "{all:?}"
    );
    assert_eq!(
        metric(&server, "pulsebase_realtime_paced_connections").await,
        1.0,
        "a subscriber whose deliveries left in a batch of 8 or more is busy"
    );

    // A batch of one takes it off the count.
    publish_padded(&server, &admin, published..published + 1).await;
    let last = read_packets(&mut stream, &mut buf, 1).await;
    assert!(matches!(last[0], Packet::Publish(_)), "{last:?}");
    assert_eq!(
        metric(&server, "pulsebase_realtime_paced_connections").await,
        0.0,
        "a batch of one is not busy"
    );
}
