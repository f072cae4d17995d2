//! A minimal MQTT 3.1.1 client for load: only the packets the scenarios
//! use (CONNECT, PUBLISH at QoS 0 and 1, PUBACK, SUBSCRIBE, and what
//! comes back), written by hand so the generator does no more per packet
//! than a length prefix, a copy and, for a PUBLISH, a scan of its payload
//! for the message number. The same client speaks to pulsebase and
//! Mosquitto, so neither gets a faster client than the other.

use std::net::SocketAddr;

use anyhow::bail;
use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What came back from the server, reduced to what the scenarios count.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet {
    ConnAck {
        code: u8,
    },
    PubAck {
        pkid: u16,
    },
    /// One return code per filter (0x80: refused).
    SubAck {
        codes: Vec<u8>,
    },
    /// A delivery: its QoS, its packet id (0 at QoS 0) and the number
    /// after `"n":` in its payload, if there is one.
    Publish {
        qos: u8,
        pkid: u16,
        n: Option<u64>,
    },
    Other(u8),
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects, sends CONNECT (keep-alive off, clean session) and waits
    /// for an accepting CONNACK.
    pub async fn open(
        addr: SocketAddr,
        client_id: &str,
        password: Option<&str>,
    ) -> anyhow::Result<Conn> {
        anyhow::ensure!(addr.ip().is_loopback(), "only loopback targets are allowed");
        let stream = crate::wire::connect(addr).await?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        };
        conn.send(&connect(client_id, password)).await?;
        match conn.next().await? {
            Packet::ConnAck { code: 0 } => Ok(conn),
            other => bail!("CONNECT refused: {other:?}"),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next packet, reading as needed.
    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = parse(&mut self.buf)? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }

    /// One read; fails when the server closed the connection.
    pub async fn fill(&mut self) -> anyhow::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }

    /// Every whole packet read so far.
    pub fn drain(&mut self, mut each: impl FnMut(Packet)) -> anyhow::Result<()> {
        while let Some(packet) = parse(&mut self.buf)? {
            each(packet);
        }
        Ok(())
    }
}

fn put_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

pub fn connect(client_id: &str, password: Option<&str>) -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4];
    body.push(if password.is_some() { 0xC2 } else { 0x02 });
    body.extend_from_slice(&0u16.to_be_bytes()); // no keep-alive
    put_str(&mut body, client_id.as_bytes());
    if let Some(password) = password {
        put_str(&mut body, b"bench");
        put_str(&mut body, password.as_bytes());
    }
    let mut out = vec![0x10];
    put_len(&mut out, body.len());
    out.extend(body);
    out
}

/// Appends a PUBLISH (QoS 0 or 1; `pkid` unused at QoS 0).
pub fn publish(out: &mut Vec<u8>, topic: &str, payload: &[u8], qos: u8, pkid: u16) {
    out.push(0x30 | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_len(out, 2 + topic.len() + id_len + payload.len());
    put_str(out, topic.as_bytes());
    if qos > 0 {
        out.extend_from_slice(&pkid.to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a PUBACK for `pkid`.
pub fn puback(out: &mut Vec<u8>, pkid: u16) {
    out.extend_from_slice(&[0x40, 0x02]);
    out.extend_from_slice(&pkid.to_be_bytes());
}

/// A SUBSCRIBE of one filter at `qos`.
pub fn subscribe(pkid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    put_str(&mut body, filter.as_bytes());
    body.push(qos);
    let mut out = vec![0x82];
    put_len(&mut out, body.len());
    out.extend(body);
    out
}

/// The next whole packet in `buf` (consumed), or `None` until more come.
fn parse(buf: &mut BytesMut) -> anyhow::Result<Option<Packet>> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header > 4 {
            bail!("a malformed remaining length from the server");
        }
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    buf.advance(header);
    let body = buf.split_to(len);
    let u16_at = |i: usize| -> u16 {
        match (body.get(i), body.get(i + 1)) {
            (Some(&a), Some(&b)) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    };
    Ok(Some(match first >> 4 {
        2 => Packet::ConnAck {
            code: body.get(1).copied().unwrap_or(0xFF),
        },
        3 => publish_of(first, &body),
        4 => Packet::PubAck { pkid: u16_at(0) },
        9 => Packet::SubAck {
            codes: body.get(2..).map(<[u8]>::to_vec).unwrap_or_default(),
        },
        kind => Packet::Other(kind),
    }))
}

/// A PUBLISH's QoS, packet id and message number, read from its fixed
/// header's flags and its body (topic, packet id at QoS > 0, payload).
fn publish_of(first: u8, body: &[u8]) -> Packet {
    let qos = (first >> 1) & 0x03;
    let topic_len = match body {
        [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
        _ => return Packet::Other(3),
    };
    let id_len = if qos > 0 { 2 } else { 0 };
    let Some(payload) = body.get(2 + topic_len + id_len..) else {
        return Packet::Other(3);
    };
    let pkid = match (qos, body.get(2 + topic_len..2 + topic_len + 2)) {
        (1.., Some(&[a, b])) => u16::from_be_bytes([a, b]),
        _ => 0,
    };
    Packet::Publish {
        qos,
        pkid,
        n: message_number(payload),
    }
}

/// The digits after the first `"n":` in a JSON payload, found by hand:
/// Mosquitto delivers the publisher's `{"n":7}` as is, pulsebase inside
/// its event (`..."data":{"n":7}...`), and a parsed JSON tree per
/// delivery would cost the generator more than the broker's work.
pub fn message_number(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"n\":";
    let at = payload.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = payload.get(at..)?;
    let rest = &rest[rest.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    rest[..digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_written_are_read_back_whole_and_only_whole() {
        let mut out = Vec::new();
        publish(&mut out, "readings/d1", b"{}", 1, 7);
        // A PUBLISH the server would send, then a PUBACK, then half of one.
        let mut buf = BytesMut::from(&out[..]);
        buf.extend_from_slice(&[0x40, 0x02, 0x00, 0x07, 0x40, 0x02]);
        assert_eq!(
            parse(&mut buf).unwrap(),
            Some(Packet::Publish {
                qos: 1,
                pkid: 7,
                n: None
            })
        );
        assert_eq!(parse(&mut buf).unwrap(), Some(Packet::PubAck { pkid: 7 }));
        assert_eq!(parse(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), 2);
        let mut big = Vec::new();
        publish(&mut big, "t", &[b'x'; 300], 0, 0);
        // 2 + 1 + 300 = 303 = 2 × 128 + 47.
        assert_eq!(&big[..3], &[0x30, 0x80 | 47, 0x02], "a two-byte length");
    }

    #[test]
    fn a_delivery_gives_its_qos_packet_id_and_number() {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Mosquitto passes the publisher's payload on; pulsebase wraps it.
        publish(&mut out, "alerts", br#"{"n":65537}"#, 1, 0xABCD);
        publish(
            &mut out,
            "alerts",
            br#"{"type":"message","seq":12,"data":{"n": 42}}"#,
            0,
            0,
        );
        publish(&mut out, "alerts", br#"{"nn":3,"m":4}"#, 1, 1);
        buf.extend_from_slice(&out);
        let publishes: Vec<_> = std::iter::from_fn(|| parse(&mut buf).unwrap()).collect();
        assert_eq!(
            publishes,
            [
                Packet::Publish {
                    qos: 1,
                    pkid: 0xABCD,
                    n: Some(65537)
                },
                Packet::Publish {
                    qos: 0,
                    pkid: 0,
                    n: Some(42)
                },
                Packet::Publish {
                    qos: 1,
                    pkid: 1,
                    n: None
                },
            ]
        );
        let mut ack = Vec::new();
        puback(&mut ack, 0xABCD);
        let mut buf = BytesMut::from(&ack[..]);
        assert_eq!(
            parse(&mut buf).unwrap(),
            Some(Packet::PubAck { pkid: 0xABCD })
        );
        assert_eq!(message_number(br#"{"n":99999999999999999999}"#), None);
    }
}
