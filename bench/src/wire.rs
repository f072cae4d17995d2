//! Cheap realtime clients for the fan-out benchmark.
//!
//! The generator shares two cores with the server and may have to take in a
//! million events a second, so it does not decode JSON or build a message
//! object per event: a WebSocket client written against the raw socket walks
//! the frames in its read buffer, an SSE client (in `sse_wire.rs`) splits
//! the stream on blank lines, and both only look for the two numbers the
//! benchmark put into each record (`"n"`, the write's index, and `"sent"`,
//! when it was sent).

use std::net::SocketAddr;

use anyhow::{bail, Context as _};
use bytes::{Buf as _, BytesMut};
use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub use crate::sse_wire::Sse;

/// What the benchmark reads out of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub n: u64,
    pub sent_us: u64,
}

/// Finds the benchmark's stamp in an event's JSON.
pub struct StampFinder {
    n: memmem::Finder<'static>,
    sent: memmem::Finder<'static>,
}

impl StampFinder {
    pub fn new() -> StampFinder {
        StampFinder {
            n: memmem::Finder::new(b"\"n\":"),
            sent: memmem::Finder::new(b"\"sent\":"),
        }
    }

    pub fn find(&self, event: &[u8]) -> Option<Stamp> {
        let n = number_after(event, self.n.find(event)? + 4)?;
        let sent_us = number_after(event, self.sent.find(event)? + 7)?;
        Some(Stamp { n, sent_us })
    }
}

/// The unsigned integer starting at `at` (after optional spaces); a
/// fraction, as a float-only encoder may write, is ignored.
fn number_after(bytes: &[u8], mut at: usize) -> Option<u64> {
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    let mut value: u64 = 0;
    let start = at;
    while let Some(d) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        at += 1;
    }
    (at > start).then_some(value)
}

/// A TCP connection to `addr` with Nagle's algorithm off: every client of
/// the generator sends small requests it wants answered at once.
pub async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One WebSocket client connection on a raw socket.
pub struct Ws {
    stream: TcpStream,
    buf: BytesMut,
    /// Set once the server sent a close frame: (code, reason).
    pub closed: Option<(u16, String)>,
    pings: Vec<Vec<u8>>,
}

const HANDSHAKE_KEY: &str = "cHVsc2ViYXNlLWJlbmNoIQ==";

impl Ws {
    /// Opens `/api/realtime` with a bearer token (or anonymously).
    pub async fn connect(
        addr: SocketAddr,
        token: Option<&str>,
        buffer: usize,
    ) -> anyhow::Result<Ws> {
        let mut stream = connect(addr).await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /api/realtime HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {HANDSHAKE_KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{auth}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(buffer.max(1024));
        let header_end = loop {
            if let Some(end) = memmem::find(&buf, b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > 16 * 1024 {
                bail!("the upgrade answer has no end of headers");
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("the server closed the connection during the upgrade");
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            bail!(
                "upgrade refused: {}",
                head.lines().next().unwrap_or_default()
            );
        }
        buf.advance(header_end);
        Ok(Ws {
            stream,
            buf,
            closed: None,
            pings: Vec::new(),
        })
    }

    /// Sends one text frame (masked, as a client must).
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(0x1, text.as_bytes()).await
    }

    async fn send(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        client_frame(opcode, payload, &mut frame);
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// Reads more bytes from the socket; false once it is closed.
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(4096);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Calls `each` for every complete frame in the buffer, records a
    /// close, keeps pings for [`Ws::answer_pings`], and drops the frames it
    /// has walked. Synchronous, so a caller may hold a borrow across it.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let mut at = 0;
        while let Some((opcode, start, end)) = parse_frame(&self.buf[at..])? {
            let payload = &self.buf[at + start..at + end];
            match opcode {
                0x1 | 0x2 => each(payload),
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .unwrap_or(1005);
                    let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default());
                    self.closed = Some((code, reason.into_owned()));
                }
                0x9 => self.pings.push(payload.to_vec()),
                _ => {}
            }
            at += end;
        }
        self.buf.advance(at);
        Ok(())
    }

    /// Answers the pings [`Ws::drain`] found (the server drops a peer that
    /// stops answering).
    pub async fn answer_pings(&mut self) -> anyhow::Result<()> {
        for ping in std::mem::take(&mut self.pings) {
            self.send(0xa, &ping).await?;
        }
        Ok(())
    }

    /// The socket and what was read past the last frame walked, for a
    /// publisher that writes and reads on separate tasks.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Waits for the next text frame (setup only: welcome, replies).
    pub async fn next_text(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            let mut got = None;
            if let Some((opcode, start, end)) = parse_frame(&self.buf)? {
                if opcode == 0x1 {
                    got = Some(self.buf[start..end].to_vec());
                } else if opcode == 0x8 {
                    bail!("the server closed the socket during setup");
                }
                self.buf.advance(end);
                if let Some(text) = got {
                    return Ok(text);
                }
                continue;
            }
            if !self.fill().await? {
                bail!("the server closed the socket during setup");
            }
        }
    }
}

/// Appends one masked client frame (as a client must send) to `frame`.
pub fn client_frame(opcode: u8, payload: &[u8], frame: &mut Vec<u8>) {
    let mask = [0x5a, 0x17, 0xc3, 0x2e];
    frame.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// (opcode, payload start, frame end) of the first complete frame.
pub fn parse_frame(buf: &[u8]) -> anyhow::Result<Option<(u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let opcode = buf[0] & 0x0f;
    if buf[0] & 0x80 == 0 || opcode == 0 {
        bail!("fragmented frames are not expected from the server");
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, header) = match buf[1] & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as usize, 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(b);
                (usize::try_from(u64::from_be_bytes(be))?, 10)
            }
            None => return Ok(None),
        },
        len => (len as usize, 2),
    };
    if masked {
        bail!("the server sent a masked frame");
    }
    let end = header + len;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((opcode, header, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_stamp_in_either_servers_json() {
        let finder = StampFinder::new();
        let ours = br#"{"type":"event","topic":"readings","op":"create","seq":9,"ts":"2026-11-22T09:00:00.000Z","record":{"device":"gw-1","n":42,"sent":1234567,"temp":21.5}}"#;
        assert_eq!(
            finder.find(ours),
            Some(Stamp {
                n: 42,
                sent_us: 1234567
            })
        );
        let pocketbase = b"id:x\nevent:readings/*\ndata:{\"action\":\"create\",\"record\":{\"n\":7,\"sent\":99.0}}";
        assert_eq!(finder.find(pocketbase), Some(Stamp { n: 7, sent_us: 99 }));
        assert_eq!(finder.find(br#"{"type":"heartbeat","ts":"x"}"#), None);
    }

    #[test]
    fn walks_server_frames_of_every_length_form() {
        let mut buf = vec![0x81, 3, b'a', b'b', b'c'];
        buf.extend_from_slice(&[0x81, 126, 0x01, 0x00]);
        buf.extend(std::iter::repeat_n(b'x', 256));
        let (op, start, end) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!((op, &buf[start..end]), (1, &b"abc"[..]));
        let (op, start, end2) = parse_frame(&buf[end..]).unwrap().unwrap();
        assert_eq!((op, end2 - start), (1, 256));
        assert!(parse_frame(&buf[end..end + 100]).unwrap().is_none());
    }
}
