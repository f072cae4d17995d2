//! The PUBLISH packets the server sends, written here rather than through
//! the codec crate: its packet owns its topic and payload, so every
//! delivery to every subscriber would allocate and copy both before being
//! copied again into the connection's buffer. A PUBLISH is a header, the
//! topic and the payload; this writes them straight into that buffer.

use bytes::{BufMut as _, BytesMut};

use super::codec::Version;

/// The largest remaining length MQTT's four-byte length can say.
const MAX_REMAINING: usize = 268_435_455;

/// One PUBLISH from the server.
#[derive(Clone, Copy, Debug)]
pub struct Publish<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// 0 or 1: the server never sends QoS 2.
    pub qos: u8,
    /// The packet id; only written at QoS 1.
    pub pkid: u16,
    pub retain: bool,
}

impl Publish<'_> {
    /// Appends the packet to `out`: 5.0 with no properties, which is what
    /// the server has to say on a delivery.
    pub fn put(&self, version: Version, out: &mut BytesMut) -> Result<(), String> {
        let topic_len = u16::try_from(self.topic.len())
            .map_err(|_| format!("a topic name of {} bytes", self.topic.len()))?;
        let pkid_len = if self.qos > 0 { 2 } else { 0 };
        let properties_len = match version {
            Version::V311 => 0,
            Version::V5 => 1,
        };
        let remaining = 2 + self.topic.len() + pkid_len + properties_len + self.payload.len();
        if remaining > MAX_REMAINING {
            return Err(format!("a PUBLISH of {remaining} bytes"));
        }
        out.reserve(5 + remaining);
        out.put_u8(0x30 | (self.qos.min(1) << 1) | u8::from(self.retain));
        put_length(out, remaining);
        out.put_u16(topic_len);
        out.put_slice(self.topic.as_bytes());
        if self.qos > 0 {
            out.put_u16(self.pkid);
        }
        if version == Version::V5 {
            // The properties' length: none.
            out.put_u8(0);
        }
        out.put_slice(self.payload);
        Ok(())
    }
}

/// MQTT's variable byte integer: seven bits a byte, low first.
fn put_length(out: &mut BytesMut, mut length: usize) {
    loop {
        let byte = (length % 128) as u8;
        length /= 128;
        if length == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::codec::{v4_qos, v5_qos};
    use bytes::Bytes;
    use rumqttc::mqttbytes::v4;
    use rumqttc::v5::mqttbytes::v5;

    fn ours(version: Version, publish: Publish<'_>) -> BytesMut {
        let mut out = BytesMut::new();
        publish.put(version, &mut out).expect("encodes");
        out
    }

    /// What the codec crate writes for the same packet.
    fn crates(version: Version, publish: Publish<'_>) -> BytesMut {
        let mut out = BytesMut::new();
        match version {
            Version::V311 => {
                let qos = v4_qos(publish.qos);
                let mut packet = v4::Publish::new(publish.topic, qos, publish.payload.to_vec());
                packet.pkid = publish.pkid;
                packet.retain = publish.retain;
                packet.write(&mut out).expect("the crate encodes");
            }
            Version::V5 => {
                let packet = v5::Publish {
                    dup: false,
                    qos: v5_qos(publish.qos),
                    retain: publish.retain,
                    topic: Bytes::copy_from_slice(publish.topic.as_bytes()),
                    pkid: publish.pkid,
                    payload: Bytes::copy_from_slice(publish.payload),
                    properties: None,
                };
                packet.write(&mut out).expect("the crate encodes");
            }
        }
        out
    }

    #[test]
    fn packets_match_the_codec_crates_byte_for_byte() {
        let long = vec![b'x'; 20_000];
        for version in [Version::V311, Version::V5] {
            for (qos, pkid) in [(0, 0), (1, 1), (1, 65_535)] {
                for retain in [false, true] {
                    for payload in [&b""[..], b"{\"n\":1}", &long[..127], &long[..128], &long] {
                        let publish = Publish {
                            topic: "sensors/rec_1",
                            payload,
                            qos,
                            pkid,
                            retain,
                        };
                        assert_eq!(
                            ours(version, publish),
                            crates(version, publish),
                            "{version:?} qos {qos} retain {retain}, {} bytes",
                            payload.len()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn what_mqtt_cannot_carry_is_refused() {
        let topic = "t".repeat(70_000);
        let publish = Publish {
            topic: &topic,
            payload: b"{}",
            qos: 0,
            pkid: 0,
            retain: false,
        };
        let mut out = BytesMut::new();
        assert!(publish.put(Version::V311, &mut out).is_err());
        assert!(out.is_empty(), "nothing half written");
    }
}
