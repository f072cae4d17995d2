//! A connection's Will: the message a client leaves with its CONNECT, to
//! be published if it goes away without saying goodbye.
//!
//! It is published as a PUBLISH of its topic from that client would be
//! ([`super::publish::apply`]: a custom topic's `publish` rule, or a
//! collection's write rules), under the connection's credential as it
//! stands when the connection ends: a revoked key or an expired token
//! publishes nothing, and changed roles apply.

use std::net::IpAddr;

use super::codec::Will;
use crate::auth::Principal;
use crate::state::AppState;

/// Publishes `will` for a connection that ended unexpectedly. A refusal is
/// only logged: there is no one left to tell.
pub async fn publish(
    state: &AppState,
    credential: Option<&str>,
    principal: Principal,
    peer: IpAddr,
    client_id: &str,
    will: Will,
) {
    let principal = match credential {
        None => principal,
        Some(credential) => match state.auth.authenticate(credential) {
            Ok(principal) => principal,
            Err(e) => {
                tracing::debug!(client = %client_id, error = %e, "mqtt: Will not published, the credential no longer holds");
                return;
            }
        },
    };
    let published = super::publish::apply(
        state,
        &principal,
        peer,
        &will.topic,
        will.payload,
        will.retain,
    );
    match published.await {
        Ok(()) => tracing::debug!(client = %client_id, topic = %will.topic, "mqtt: Will published"),
        Err(e) => {
            tracing::debug!(client = %client_id, topic = %will.topic, code = e.code, "mqtt: Will refused")
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use rumqttc::mqttbytes::v4;
    use rumqttc::v5::mqttbytes::v5;

    use crate::mqtt::codec::{Framer, Inbound};

    fn read_all(bytes: &[u8]) -> Vec<Inbound> {
        let mut framer = Framer::new(1 << 16);
        let mut buf = BytesMut::from(bytes);
        let mut packets = Vec::new();
        while let Some(packet) = framer.next(&mut buf).expect("readable") {
            packets.push(packet);
        }
        assert!(buf.is_empty(), "left unread: {buf:x?}");
        packets
    }

    #[test]
    fn a_v311_connect_hands_over_its_will() {
        let mut connect = v4::Connect::new("dev");
        connect.last_will = Some(v4::LastWill::new(
            "status/dev",
            "gone",
            rumqttc::mqttbytes::QoS::AtLeastOnce,
            true,
        ));
        let mut bytes = BytesMut::new();
        v4::Packet::Connect(connect)
            .write(&mut bytes, usize::MAX)
            .expect("encodable");
        let packets = read_all(&bytes);
        let Some(Inbound::Connect(hello)) = packets.first() else {
            panic!("{packets:?}");
        };
        let will = hello.will.as_ref().expect("a will");
        assert_eq!(will.topic, "status/dev");
        assert_eq!(&will.payload[..], b"gone");
        assert_eq!((will.qos, will.retain), (1, true));
    }

    #[test]
    fn a_v5_connect_hands_over_its_will_and_disconnect_0x04_asks_for_it() {
        let connect = v5::Connect {
            keep_alive: 30,
            client_id: "dev".into(),
            clean_start: true,
            properties: None,
        };
        let will = v5::LastWill::new(
            "status/dev",
            "gone",
            rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            false,
            None,
        );
        let mut bytes = BytesMut::new();
        v5::Packet::Connect(connect, Some(will), None)
            .write(&mut bytes, None)
            .expect("encodable");
        // As bytes: the crate (0.25.1) cannot write a DISCONNECT with a
        // reason and no properties. With an empty property list, without
        // one (as the standard allows), then a normal DISCONNECT.
        bytes.extend_from_slice(&[0xE0, 0x02, 0x04, 0x00]);
        bytes.extend_from_slice(&[0xE0, 0x01, 0x04, 0xE0, 0x01, 0x00]);
        let packets = read_all(&bytes);
        assert!(
            matches!(&packets[..], [
                Inbound::Connect(hello),
                Inbound::DisconnectWithWill,
                Inbound::DisconnectWithWill,
                Inbound::Disconnect,
            ] if hello.will.as_ref().is_some_and(|w| w.topic == "status/dev" && &w.payload[..] == b"gone" && w.qos == 0)),
            "{packets:?}"
        );
    }
}
