// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use super::*;

const MAX: usize = 4096;

fn v4_bytes(packet: v4::Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, usize::MAX).unwrap();
    out.to_vec()
}

fn v5_bytes(packet: v5::Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    packet.write(&mut out, None).unwrap();
    out.to_vec()
}

fn v4_connect(password: &str) -> Vec<u8> {
    let mut connect = v4::Connect::new("device-1");
    connect.set_login("gw", password);
    v4_bytes(v4::Packet::Connect(connect))
}

fn v5_connect(password: &str) -> Vec<u8> {
    let connect = v5::Connect {
        keep_alive: 30,
        client_id: "device-1".into(),
        clean_start: true,
        properties: None,
    };
    v5_bytes(v5::Packet::Connect(
        connect,
        None,
        Some(v5::Login::new("gw", password)),
    ))
}

/// A session's worth of valid packets: CONNECT, publishes, a subscribe,
/// a ping and a DISCONNECT.
fn session(version: Version) -> Vec<u8> {
    let mut bytes = Vec::new();
    match version {
        Version::V311 => {
            bytes.extend(v4_connect("pbk_secret"));
            let mut publish = v4::Publish::new(
                "readings/gw-7",
                rumqttc::mqttbytes::QoS::AtLeastOnce,
                br#"{"temp": 21.5}"#.to_vec(),
            );
            publish.pkid = 1;
            bytes.extend(v4_bytes(v4::Packet::Publish(publish)));
            bytes.extend(v4_bytes(v4::Packet::Subscribe(v4::Subscribe::new(
                "_errors/device-1",
                rumqttc::mqttbytes::QoS::AtMostOnce,
            ))));
            bytes.extend(v4_bytes(v4::Packet::PingReq));
            bytes.extend(v4_bytes(v4::Packet::Disconnect));
        }
        Version::V5 => {
            bytes.extend(v5_connect("pbk_secret"));
            let mut publish = v5::Publish::new(
                "readings/gw-7",
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                &b"m temp=1"[..],
                None,
            );
            publish.pkid = 1;
            bytes.extend(v5_bytes(v5::Packet::Publish(publish)));
            bytes.extend(v5_bytes(v5::Packet::PingReq(v5::PingReq)));
            bytes.extend([0xE0, 0x00]);
        }
    }
    bytes
}

/// Feeds `bytes` in chunks of random sizes, as a socket would, and reads
/// every packet it can; answers what it read, up to the first error.
fn feed(bytes: &[u8], rng: &mut StdRng) -> (Vec<Inbound>, Option<DecodeError>) {
    let mut framer = Framer::new(MAX);
    let mut buf = BytesMut::new();
    let mut read = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let end = (at + rng.gen_range(1..=64)).min(bytes.len());
        buf.extend_from_slice(&bytes[at..end]);
        at = end;
        loop {
            match framer.next(&mut buf) {
                Ok(Some(packet)) => read.push(packet),
                Ok(None) => break,
                Err(e) => return (read, Some(e)),
            }
        }
    }
    (read, None)
}

#[test]
fn both_versions_are_read_from_the_connect() {
    let mut rng = StdRng::seed_from_u64(1);
    for version in [Version::V311, Version::V5] {
        let (packets, error) = feed(&session(version), &mut rng);
        assert_eq!(error, None, "{version:?}");
        let Some(Inbound::Connect(hello)) = packets.first() else {
            panic!("{version:?}: no CONNECT first: {packets:?}");
        };
        assert_eq!(hello.password.as_deref(), Some("pbk_secret"));
        assert_eq!(hello.client_id, "device-1");
        assert!(
            matches!(&packets[1], Inbound::Publish(p) if p.topic == "readings/gw-7" && p.qos == 1 && p.pkid == 1),
            "{version:?}: {packets:?}"
        );
        assert!(
            matches!(packets.last(), Some(Inbound::Disconnect)),
            "{version:?}: {packets:?}"
        );
    }
}

#[test]
fn what_is_not_mqtt_is_refused_not_waited_for() {
    let mut rng = StdRng::seed_from_u64(2);
    let (_, error) = feed(b"GET / HTTP/1.1\r\n\r\n", &mut rng);
    assert!(matches!(error, Some(DecodeError::Protocol(_))), "{error:?}");
    // MQTT 3.1 (`MQIsdp`, level 3) is not spoken.
    let mut old = v4_connect("x");
    let level = old.iter().position(|&b| b == b'T').unwrap() + 2;
    old[level] = 3;
    let (_, error) = feed(&old, &mut rng);
    assert!(error.is_some(), "level 3 was accepted");
}

#[test]
fn a_packet_over_the_limit_is_refused_before_it_is_read() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut bytes = v4_connect("x");
    let publish = v4::Publish::new(
        "readings",
        rumqttc::mqttbytes::QoS::AtMostOnce,
        vec![b'1'; MAX + 1],
    );
    // Only the header arrives: the size alone is enough to refuse.
    let big = v4_bytes(v4::Packet::Publish(publish));
    bytes.extend(&big[..8]);
    let (packets, error) = feed(&bytes, &mut rng);
    assert_eq!(packets.len(), 1);
    assert_eq!(error, Some(DecodeError::TooLarge));
}

#[test]
fn refusals_are_told_in_each_versions_words() {
    let mut out = BytesMut::new();
    let refused = Outbound::ConnAck {
        refusal: Some(Refusal::BadCredentials),
        session_present: false,
        receive_maximum: 8,
        max_packet: MAX,
        assigned_id: None,
    };
    refused.encode(Version::V311, &mut out).unwrap();
    // CONNACK, length 2, no session, return code 4.
    assert_eq!(&out[..], &[0x20, 0x02, 0x00, 0x04]);
    out.clear();
    refused.encode(Version::V5, &mut out).unwrap();
    assert_eq!(out[3], 0x86, "bad user name or password: {out:?}");
    out.clear();
    let puback = Outbound::PubAck {
        pkid: 7,
        refused: Some((PubAckReason::NotAuthorized, "no", "forbidden")),
    };
    puback.encode(Version::V5, &mut out).unwrap();
    assert_eq!(&out[..1], &[0x40]);
    assert_eq!(out[4], 0x87, "not authorized: {out:?}");
    out.clear();
    // 3.1.1 has no reason: a plain PUBACK.
    puback.encode(Version::V311, &mut out).unwrap();
    assert_eq!(&out[..], &[0x40, 0x02, 0x00, 0x07]);
}

/// Random and mutated bytes never panic the decoder and never make it
/// loop without progress: every call consumes, waits or refuses.
#[test]
fn byte_soup_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x6d717474);
    let seeds = [session(Version::V311), session(Version::V5)];
    for round in 0..20_000 {
        let mut bytes = seeds[round % 2].clone();
        match round % 4 {
            // Flip a few bytes.
            0 | 1 => {
                for _ in 0..rng.gen_range(1..8) {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            // Cut it short, or splice random bytes in.
            2 => {
                let at = rng.gen_range(0..bytes.len());
                if rng.gen() {
                    bytes.truncate(at);
                } else {
                    let soup: Vec<u8> = (0..rng.gen_range(1..32)).map(|_| rng.gen()).collect();
                    bytes.splice(at..at, soup);
                }
            }
            // Pure soup, after a valid CONNECT half of the time.
            _ => {
                let soup: Vec<u8> = (0..rng.gen_range(1..256)).map(|_| rng.gen()).collect();
                if rng.gen() {
                    bytes.truncate(0);
                }
                bytes.extend(soup);
            }
        }
        let _ = feed(&bytes, &mut rng);
    }
}

#[test]
fn a_servers_disconnect_is_one_whole_packet_with_its_reason() {
    for reason in [
        v5::DisconnectReasonCode::KeepAliveTimeout,
        v5::DisconnectReasonCode::MalformedPacket,
        v5::DisconnectReasonCode::ServerShuttingDown,
    ] {
        let mut out = BytesMut::new();
        Outbound::Disconnect(reason)
            .encode(Version::V5, &mut out)
            .unwrap();
        assert_eq!(out[0], 0xE0);
        assert_eq!(out.len(), 2 + out[1] as usize, "{out:x?}");
        assert_eq!(out[2], reason as u8);
        let mut back = out.clone();
        let read = v5::Packet::read(&mut back, None).unwrap();
        assert!(
            matches!(read, v5::Packet::Disconnect(d) if d.reason_code == reason),
            "{out:x?}"
        );
        // 3.1.1 has no server DISCONNECT: the connection just closes.
        out.clear();
        Outbound::Disconnect(reason)
            .encode(Version::V311, &mut out)
            .unwrap();
        assert!(out.is_empty());
    }
}
