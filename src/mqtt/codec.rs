//! Framing over the codec crate (`rumqttc`'s `mqttbytes`, which has one
//! packet type per protocol version): the version is learnt from the
//! CONNECT, and the rest of the listener handles one view of what a client
//! sent ([`Inbound`]) and says what to send back ([`Outbound`]) whichever
//! version it speaks. The packets themselves stay the crate's.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

pub use super::publish_packet::Publish as OutgoingPublish;

/// The protocol a client spoke in its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0.
    V5,
}

/// A CONNECT, whichever version.
#[derive(Debug)]
pub struct Hello {
    pub client_id: String,
    pub keep_alive: u16,
    /// The password of the CONNECT (the username is free: a device name).
    pub password: Option<String>,
    /// 3.1.1 clean session, 5.0 clean start.
    pub clean_start: bool,
    /// 5.0 session expiry interval in seconds; 3.1.1 has none (a session
    /// that is not clean then lasts until it is cleaned).
    pub session_expiry: Option<u32>,
    /// 5.0: how many QoS 1 messages the client takes unacknowledged.
    pub receive_maximum: Option<u16>,
    /// What to publish if the connection ends unexpectedly.
    pub will: Option<Will>,
}

/// The Will of a CONNECT. Its 5.0 properties (the delay interval among
/// them) are not kept: the message goes out at once (docs/mqtt.md).
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

/// One filter of a SUBSCRIBE and the QoS asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub path: String,
    pub qos: u8,
}

/// A PUBLISH, whichever version.
#[derive(Debug)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub pkid: u16,
    pub retain: bool,
}

/// What a client sent, as the listener handles it.
#[derive(Debug)]
pub enum Inbound {
    Connect(Hello),
    Publish(Publish),
    Subscribe {
        pkid: u16,
        filters: Vec<Filter>,
        /// 5.0 user properties, for the whole packet (`filter`, `ops`).
        properties: Vec<(String, String)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    Disconnect,
    /// The client acknowledged a QoS 1 message the server sent.
    PubAck(u16),
    /// A 5.0 DISCONNECT with reason 0x04: leaving, and the Will is to be
    /// published all the same.
    DisconnectWithWill,
    /// Acknowledgements of messages this server never sends at QoS 2,
    /// and packets only a server sends: nothing to do.
    Ignored,
}

/// Why the bytes a client sent cannot be read as MQTT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Larger than the packets this server accepts.
    TooLarge,
    /// A protocol level other than 4 (3.1.1) or 5.
    UnsupportedVersion,
    /// The first packet was not a CONNECT, or a second CONNECT came.
    Protocol(String),
    Malformed(String),
}

/// Reads packets out of a connection's buffer. Holds the version once the
/// CONNECT told it.
#[derive(Debug)]
pub struct Framer {
    version: Option<Version>,
    max_packet: usize,
}

impl Framer {
    pub fn new(max_packet: usize) -> Framer {
        Framer {
            version: None,
            max_packet,
        }
    }

    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// The next whole packet in `buf` (consumed), or `None` until more
    /// bytes come.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        match self.version {
            None => self.first(buf),
            Some(Version::V311) => {
                let packet = match v4::Packet::read(buf, self.max_packet) {
                    Ok(packet) => packet,
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                    Err(e) => return Err(v4_error(e)),
                };
                from_v4(packet).map(Some)
            }
            Some(Version::V5) => {
                // A DISCONNECT with reason 0 and no properties may be sent
                // with no body at all, which the crate refuses; one with a
                // reason and no properties may omit their length, which the
                // crate takes for a packet not yet whole.
                if buf.starts_with(&[0xE0, 0x00]) {
                    let _ = buf.split_to(2);
                    return Ok(Some(Inbound::Disconnect));
                }
                if let [0xE0, 0x01, reason, ..] = buf[..] {
                    let _ = buf.split_to(3);
                    return Ok(Some(disconnect_v5(reason)));
                }
                let packet = match v5::Packet::read(buf, Some(self.max_u32())) {
                    Ok(packet) => packet,
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => return Ok(None),
                    Err(e) => return Err(v5_error(e)),
                };
                from_v5(packet).map(Some)
            }
        }
    }

    fn max_u32(&self) -> u32 {
        u32::try_from(self.max_packet).unwrap_or(u32::MAX)
    }

    /// The CONNECT: tried as 5.0 on a copy (a failed read consumes the
    /// frame), then as 3.1.1 when its protocol level says 4.
    fn first(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        if buf.first().is_some_and(|b| b >> 4 != 1) {
            return Err(DecodeError::Protocol(
                "the first packet must be CONNECT".into(),
            ));
        }
        let mut probe = buf.clone();
        match v5::Packet::read(&mut probe, Some(self.max_u32())) {
            Ok(packet) => {
                *buf = probe;
                self.version = Some(Version::V5);
                from_v5(packet).map(Some)
            }
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(rumqttc::v5::mqttbytes::Error::InvalidProtocolLevel(4)) => {
                match v4::Packet::read(buf, self.max_packet) {
                    Ok(packet) => {
                        self.version = Some(Version::V311);
                        from_v4(packet).map(Some)
                    }
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
                    Err(e) => Err(v4_error(e)),
                }
            }
            Err(rumqttc::v5::mqttbytes::Error::InvalidProtocolLevel(_))
            | Err(rumqttc::v5::mqttbytes::Error::InvalidProtocol) => {
                Err(DecodeError::UnsupportedVersion)
            }
            Err(e) => Err(v5_error(e)),
        }
    }
}

fn v4_error(e: rumqttc::mqttbytes::Error) -> DecodeError {
    match e {
        rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_) => DecodeError::TooLarge,
        other => DecodeError::Malformed(other.to_string()),
    }
}

fn v5_error(e: rumqttc::v5::mqttbytes::Error) -> DecodeError {
    match e {
        rumqttc::v5::mqttbytes::Error::PayloadSizeLimitExceeded { .. } => DecodeError::TooLarge,
        other => DecodeError::Malformed(other.to_string()),
    }
}

fn from_v4(packet: v4::Packet) -> Result<Inbound, DecodeError> {
    Ok(match packet {
        v4::Packet::Connect(connect) => Inbound::Connect(Hello {
            client_id: connect.client_id,
            keep_alive: connect.keep_alive,
            password: connect.login.map(|login| login.password),
            clean_start: connect.clean_session,
            session_expiry: None,
            receive_maximum: None,
            will: connect.last_will.map(|will| Will {
                topic: will.topic,
                payload: will.message,
                qos: will.qos as u8,
                retain: will.retain,
            }),
        }),
        v4::Packet::Publish(publish) => Inbound::Publish(Publish {
            topic: publish.topic,
            payload: publish.payload,
            qos: publish.qos as u8,
            pkid: publish.pkid,
            retain: publish.retain,
        }),
        v4::Packet::Subscribe(subscribe) => Inbound::Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: f.qos as u8,
                })
                .collect(),
            properties: Vec::new(),
        },
        v4::Packet::Unsubscribe(unsubscribe) => Inbound::Unsubscribe {
            pkid: unsubscribe.pkid,
            filters: unsubscribe.topics,
        },
        v4::Packet::PingReq => Inbound::PingReq,
        v4::Packet::PubAck(ack) => Inbound::PubAck(ack.pkid),
        v4::Packet::Disconnect => Inbound::Disconnect,
        _ => Inbound::Ignored,
    })
}

fn from_v5(packet: v5::Packet) -> Result<Inbound, DecodeError> {
    Ok(match packet {
        v5::Packet::Connect(connect, will, login) => Inbound::Connect(Hello {
            client_id: connect.client_id,
            keep_alive: connect.keep_alive,
            password: login.map(|login| login.password),
            clean_start: connect.clean_start,
            session_expiry: connect
                .properties
                .as_ref()
                .and_then(|p| p.session_expiry_interval),
            receive_maximum: connect.properties.as_ref().and_then(|p| p.receive_maximum),
            will: match will {
                Some(will) => Some(Will {
                    topic: String::from_utf8(will.topic.to_vec()).map_err(|_| {
                        DecodeError::Malformed("the Will topic is not UTF-8".into())
                    })?,
                    payload: will.message,
                    qos: will.qos as u8,
                    retain: will.retain,
                }),
                None => None,
            },
        }),
        v5::Packet::Publish(publish) => {
            // Topic aliases are not offered (CONNACK says 0), so a topic
            // is always spelled out.
            let topic = String::from_utf8(publish.topic.to_vec())
                .map_err(|_| DecodeError::Malformed("the topic is not UTF-8".into()))?;
            Inbound::Publish(Publish {
                topic,
                payload: publish.payload,
                qos: publish.qos as u8,
                pkid: publish.pkid,
                retain: publish.retain,
            })
        }
        v5::Packet::Subscribe(subscribe) => Inbound::Subscribe {
            pkid: subscribe.pkid,
            filters: subscribe
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: f.qos as u8,
                })
                .collect(),
            properties: subscribe
                .properties
                .map(|p| p.user_properties)
                .unwrap_or_default(),
        },
        v5::Packet::Unsubscribe(unsubscribe) => Inbound::Unsubscribe {
            pkid: unsubscribe.pkid,
            filters: unsubscribe.filters,
        },
        v5::Packet::PingReq(_) => Inbound::PingReq,
        v5::Packet::PubAck(ack) => Inbound::PubAck(ack.pkid),
        v5::Packet::Disconnect(d) => disconnect_v5(d.reason_code as u8),
        _ => Inbound::Ignored,
    })
}

/// A 5.0 DISCONNECT by its reason code: 0x04 asks for the Will.
fn disconnect_v5(reason: u8) -> Inbound {
    if reason == v5::DisconnectReasonCode::DisconnectWithWillMessage as u8 {
        Inbound::DisconnectWithWill
    } else {
        Inbound::Disconnect
    }
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The password is not a valid key or token.
    BadCredentials,
    /// No password, and anonymous clients are not let in.
    NotAuthorized,
    /// The server cannot take the connection now.
    Unavailable,
}

/// Why a PUBLISH was refused (MQTT 5 PUBACK reason codes).
pub use v5::PubAckReason;

/// The answer to one filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubCode {
    /// Granted at this QoS (0 or 1).
    Granted(u8),
    /// A rule does not let this client subscribe.
    NotAuthorized,
    /// Not a filter, or one that names nothing here.
    TopicFilterInvalid,
    /// Over `max_subscriptions` or the filter budget.
    QuotaExceeded,
    /// A `filter` or `ops` property that does not parse, or a filter that
    /// matches nothing delivered here.
    BadRequest,
    /// Anything else (storage trouble, a filter expression that does not
    /// parse).
    Unspecified,
}

/// What the listener sends.
#[derive(Debug)]
pub enum Outbound<'a> {
    ConnAck {
        refusal: Option<Refusal>,
        /// Whether a stored session was taken up.
        session_present: bool,
        /// Offered to 5.0 clients: the in-flight window and packet limit.
        receive_maximum: u16,
        max_packet: usize,
        /// The id given to a 5.0 client that sent none.
        assigned_id: Option<&'a str>,
    },
    PubAck {
        pkid: u16,
        /// A refusal's reason, message and the contract's error code.
        refused: Option<(PubAckReason, &'a str, &'a str)>,
    },
    SubAck {
        pkid: u16,
        codes: Vec<SubCode>,
        /// 5.0: why the refused ones were (the first refusal's message).
        reason: Option<&'a str>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
    /// A message to the client: at QoS 0 (`pkid` 0) or 1.
    Publish(OutgoingPublish<'a>),
    /// 5.0 only: why the server closes the connection.
    Disconnect(v5::DisconnectReasonCode),
}

impl Outbound<'_> {
    /// Appends the packet to `out`. Packets 3.1.1 has no form for (a
    /// server's DISCONNECT) write nothing.
    pub fn encode(&self, version: Version, out: &mut BytesMut) -> Result<(), String> {
        match version {
            Version::V311 => self.encode_v4(out),
            Version::V5 => self.encode_v5(out),
        }
    }

    fn encode_v4(&self, out: &mut BytesMut) -> Result<(), String> {
        let packet = match self {
            Outbound::ConnAck {
                refusal,
                session_present,
                ..
            } => {
                let code = match refusal {
                    None => v4::ConnectReturnCode::Success,
                    Some(Refusal::BadCredentials) => v4::ConnectReturnCode::BadUserNamePassword,
                    Some(Refusal::NotAuthorized) => v4::ConnectReturnCode::NotAuthorized,
                    Some(Refusal::Unavailable) => v4::ConnectReturnCode::ServiceUnavailable,
                };
                v4::Packet::ConnAck(v4::ConnAck::new(code, *session_present))
            }
            // 3.1.1 has no reason codes: a refusal is told on `_errors/`.
            Outbound::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(*pkid)),
            Outbound::SubAck { pkid, codes, .. } => v4::Packet::SubAck(v4::SubAck::new(
                *pkid,
                codes
                    .iter()
                    .map(|code| match code {
                        SubCode::Granted(qos) => v4::SubscribeReasonCode::Success(v4_qos(*qos)),
                        _ => v4::SubscribeReasonCode::Failure,
                    })
                    .collect(),
            )),
            Outbound::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(*pkid)),
            Outbound::PingResp => v4::Packet::PingResp,
            Outbound::Publish(publish) => return publish.put(Version::V311, out),
            Outbound::Disconnect(_) => return Ok(()),
        };
        packet
            .write(out, usize::MAX)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn encode_v5(&self, out: &mut BytesMut) -> Result<(), String> {
        let packet = match self {
            Outbound::ConnAck {
                refusal,
                session_present,
                receive_maximum,
                max_packet,
                assigned_id,
            } => {
                let code = match refusal {
                    None => v5::ConnectReturnCode::Success,
                    Some(Refusal::BadCredentials) => v5::ConnectReturnCode::BadUserNamePassword,
                    Some(Refusal::NotAuthorized) => v5::ConnectReturnCode::NotAuthorized,
                    Some(Refusal::Unavailable) => v5::ConnectReturnCode::ServerUnavailable,
                };
                let properties = refusal.is_none().then(|| v5::ConnAckProperties {
                    receive_max: Some(*receive_maximum),
                    max_packet_size: Some(u32::try_from(*max_packet).unwrap_or(u32::MAX)),
                    // What is not built yet is said, so a client does not
                    // try it.
                    retain_available: Some(0),
                    max_qos: Some(1),
                    topic_alias_max: Some(0),
                    shared_subscription_available: Some(0),
                    subscription_identifiers_available: Some(0),
                    wildcard_subscription_available: None,
                    session_expiry_interval: None,
                    assigned_client_identifier: assigned_id.map(str::to_owned),
                    reason_string: None,
                    user_properties: Vec::new(),
                    server_keep_alive: None,
                    response_information: None,
                    server_reference: None,
                    authentication_method: None,
                    authentication_data: None,
                });
                v5::Packet::ConnAck(v5::ConnAck {
                    session_present: *session_present,
                    code,
                    properties,
                })
            }
            Outbound::PubAck { pkid, refused } => {
                let mut ack = v5::PubAck::new(*pkid, None);
                if let Some((reason, message, code)) = refused {
                    ack.reason = *reason;
                    ack.properties = Some(v5::PubAckProperties {
                        reason_string: Some((*message).to_owned()),
                        user_properties: vec![("code".to_owned(), (*code).to_owned())],
                    });
                }
                v5::Packet::PubAck(ack)
            }
            Outbound::SubAck {
                pkid,
                codes,
                reason,
            } => v5::Packet::SubAck(v5::SubAck {
                pkid: *pkid,
                return_codes: codes
                    .iter()
                    .map(|code| match code {
                        SubCode::Granted(qos) => v5::SubscribeReasonCode::Success(v5_qos(*qos)),
                        SubCode::NotAuthorized => v5::SubscribeReasonCode::NotAuthorized,
                        SubCode::TopicFilterInvalid => v5::SubscribeReasonCode::TopicFilterInvalid,
                        SubCode::QuotaExceeded => v5::SubscribeReasonCode::QuotaExceeded,
                        SubCode::BadRequest => v5::SubscribeReasonCode::ImplementationSpecific,
                        SubCode::Unspecified => v5::SubscribeReasonCode::Unspecified,
                    })
                    .collect(),
                properties: reason.map(|reason| v5::SubAckProperties {
                    reason_string: Some(reason.to_owned()),
                    user_properties: Vec::new(),
                }),
            }),
            Outbound::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
                pkid: *pkid,
                reasons: vec![v5::UnsubAckReason::Success; *count],
                properties: None,
            }),
            Outbound::PingResp => v5::Packet::PingResp(v5::PingResp),
            Outbound::Publish(publish) => return publish.put(Version::V5, out),
            // Always with a reason string: without properties the crate
            // (0.25.1) writes a remaining length of 1 and then 2 bytes,
            // and with empty ones it writes a bare DISCONNECT (reason 0).
            Outbound::Disconnect(reason) => v5::Packet::Disconnect(v5::Disconnect {
                reason_code: *reason,
                properties: Some(v5::DisconnectProperties {
                    session_expiry_interval: None,
                    reason_string: Some(format!("{reason:?}")),
                    user_properties: Vec::new(),
                    server_reference: None,
                }),
            }),
        };
        packet
            .write(out, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

pub(super) fn v4_qos(qos: u8) -> rumqttc::mqttbytes::QoS {
    if qos == 0 {
        rumqttc::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::mqttbytes::QoS::AtLeastOnce
    }
}

pub(super) fn v5_qos(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    if qos == 0 {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
