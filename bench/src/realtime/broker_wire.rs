//! Minimal NATS (text protocol) and Redis (RESP2 pub/sub) clients on raw
//! sockets, as cheap per delivery as the WebSocket client in `wire`: frames
//! are walked in the read buffer and each message's payload is handed out
//! as a slice, never copied or decoded beyond its length prefix.

use std::net::SocketAddr;

use anyhow::bail;
use bytes::{Buf as _, BytesMut};
use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Nats,
    Redis,
}

/// One subscribed (or publishing) broker connection.
pub struct BrokerConn {
    protocol: Protocol,
    stream: TcpStream,
    buf: BytesMut,
    /// NATS PINGs seen by [`BrokerConn::drain`], answered by
    /// [`BrokerConn::answer_pings`] (the server drops a silent client).
    pings: usize,
    /// An error line the server sent (`-ERR …`), after which it closes.
    pub error: Option<String>,
    /// Integer replies seen (Redis answers each PUBLISH with one).
    pub replies: u64,
}

impl BrokerConn {
    pub async fn connect(
        protocol: Protocol,
        addr: SocketAddr,
        buffer: usize,
    ) -> anyhow::Result<BrokerConn> {
        let stream = crate::wire::connect(addr).await?;
        let mut conn = BrokerConn {
            protocol,
            stream,
            buf: BytesMut::with_capacity(buffer.max(1024)),
            pings: 0,
            error: None,
            replies: 0,
        };
        if protocol == Protocol::Nats {
            // The server speaks first (INFO); verbose off so a PUB gets no +OK.
            conn.stream
                .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                .await?;
            conn.wait_for(b"PONG\r\n").await?;
        }
        Ok(conn)
    }

    /// Subscribes to `subject` (a NATS subject or Redis channel) and waits
    /// until the server confirms it, so no message published after this
    /// returns can be missed.
    pub async fn subscribe(&mut self, subject: &str) -> anyhow::Result<()> {
        match self.protocol {
            Protocol::Nats => {
                let cmd = format!("SUB {subject} 1\r\nPING\r\n");
                self.stream.write_all(cmd.as_bytes()).await?;
                self.wait_for(b"PONG\r\n").await
            }
            Protocol::Redis => {
                let cmd = format!(
                    "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{subject}\r\n",
                    subject.len()
                );
                self.stream.write_all(cmd.as_bytes()).await?;
                // The confirmation ends with the subscription count.
                self.wait_for(b"subscribe\r\n").await?;
                while !self.buf.ends_with(b"\r\n") || memchr::memchr(b':', &self.buf).is_none() {
                    if !self.fill().await? {
                        bail!("the server closed the connection while subscribing");
                    }
                }
                self.buf.clear();
                Ok(())
            }
        }
    }

    /// Reads until `needle` is in the buffer and drops everything up to it
    /// (setup only).
    async fn wait_for(&mut self, needle: &[u8]) -> anyhow::Result<()> {
        loop {
            if let Some(at) = memmem::find(&self.buf, needle) {
                self.buf.advance(at + needle.len());
                return Ok(());
            }
            if let Some(at) = memmem::find(&self.buf, b"-ERR") {
                let line = String::from_utf8_lossy(&self.buf[at..]).into_owned();
                bail!("the server refused: {}", line.trim());
            }
            if !self.fill().await? {
                bail!("the server closed the connection during setup");
            }
        }
    }

    /// Appends one publish of `payload` on `subject` to `out`.
    pub fn publish_into(protocol: Protocol, subject: &str, payload: &[u8], out: &mut Vec<u8>) {
        let head = match protocol {
            Protocol::Nats => format!("PUB {subject} {}\r\n", payload.len()),
            Protocol::Redis => format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{subject}\r\n${}\r\n",
                subject.len(),
                payload.len()
            ),
        };
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
    }

    /// The socket and what was read past the setup, for a publisher that
    /// writes and reads on separate tasks.
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads more bytes from the socket; false once it is closed.
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Reads what is already there without waiting (a publisher throwing
    /// away replies between paced sends; a zero timeout would wait for the
    /// timer's next millisecond tick).
    pub fn try_fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(4096);
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Calls `each` with the payload of every complete message in the
    /// buffer and drops what it walked. Synchronous, so a caller may hold a
    /// borrow across it.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let walked = match self.protocol {
            Protocol::Nats => nats_walk(&self.buf, &mut each, &mut self.pings, &mut self.error),
            Protocol::Redis => redis_walk(&self.buf, &mut each, &mut self.replies)?,
        };
        self.buf.advance(walked);
        Ok(())
    }

    pub async fn answer_pings(&mut self) -> anyhow::Result<()> {
        for _ in 0..std::mem::take(&mut self.pings) {
            self.stream.write_all(b"PONG\r\n").await?;
        }
        Ok(())
    }
}

/// Walks a publisher's replies: bytes consumed, and the server's error if
/// it sent one.
pub fn walk_replies(protocol: Protocol, buf: &[u8]) -> (usize, Option<String>) {
    let mut ignore = |_: &[u8]| {};
    match protocol {
        Protocol::Nats => {
            let (mut pings, mut error) = (0, None);
            let used = nats_walk(buf, &mut ignore, &mut pings, &mut error);
            (used, error)
        }
        Protocol::Redis => {
            let mut replies = 0;
            match redis_walk(buf, &mut ignore, &mut replies) {
                Ok(used) => (used, None),
                Err(e) => (buf.len(), Some(format!("{e:#}"))),
            }
        }
    }
}

/// Walks NATS server lines: `MSG <subject> <sid> [reply-to] <#bytes>`
/// followed by the payload, PING, PONG, +OK, INFO and -ERR. Returns how many
/// bytes were consumed (a partial message stays for the next read).
fn nats_walk(
    buf: &[u8],
    each: &mut impl FnMut(&[u8]),
    pings: &mut usize,
    error: &mut Option<String>,
) -> usize {
    let mut at = 0;
    while let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") {
        let line = &buf[at..at + eol];
        if let Some(rest) = line.strip_prefix(b"MSG ") {
            let Some(size) = rest
                .rsplit(|b| *b == b' ')
                .next()
                .and_then(|s| std::str::from_utf8(s).ok()?.parse::<usize>().ok())
            else {
                *error = Some(format!("bad MSG line {}", String::from_utf8_lossy(line)));
                return buf.len();
            };
            let start = at + eol + 2;
            if buf.len() < start + size + 2 {
                break;
            }
            each(&buf[start..start + size]);
            at = start + size + 2;
            continue;
        }
        if line == b"PING" {
            *pings += 1;
        } else if line.starts_with(b"-ERR") {
            error.get_or_insert_with(|| String::from_utf8_lossy(line).into_owned());
        }
        at += eol + 2;
    }
    at
}

/// Walks RESP2 replies: `message` pushes (`*3` of bulk strings, the third
/// being the payload) go to `each`, integer replies (to PUBLISH) are
/// counted, subscribe confirmations are skipped.
fn redis_walk(
    buf: &[u8],
    each: &mut impl FnMut(&[u8]),
    replies: &mut u64,
) -> anyhow::Result<usize> {
    let mut at = 0;
    loop {
        match buf.get(at) {
            None => return Ok(at),
            Some(b':') => {
                let Some(eol) = memmem::find(&buf[at..], b"\r\n") else {
                    return Ok(at);
                };
                *replies += 1;
                at += eol + 2;
            }
            Some(b'*') => {
                let Some((count, mut p)) = resp_number(buf, at + 1) else {
                    return Ok(at);
                };
                let mut items: [(usize, usize); 3] = [(0, 0); 3];
                let mut complete = true;
                for i in 0..count {
                    match buf.get(p) {
                        Some(b'$') => {
                            let Some((len, start)) = resp_number(buf, p + 1) else {
                                complete = false;
                                break;
                            };
                            if buf.len() < start + len + 2 {
                                complete = false;
                                break;
                            }
                            if let Some(item) = items.get_mut(i) {
                                *item = (start, start + len);
                            }
                            p = start + len + 2;
                        }
                        Some(b':') => match memmem::find(&buf[p..], b"\r\n") {
                            Some(eol) => p += eol + 2,
                            None => {
                                complete = false;
                                break;
                            }
                        },
                        Some(other) => bail!("unexpected RESP type byte {other:#x}"),
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
                if !complete {
                    return Ok(at);
                }
                let (s, e) = items[0];
                if count == 3 && &buf[s..e] == b"message" {
                    each(&buf[items[2].0..items[2].1]);
                }
                at = p;
            }
            Some(b'-') => {
                let end = memmem::find(&buf[at..], b"\r\n").map_or(buf.len(), |e| at + e);
                bail!("redis error: {}", String::from_utf8_lossy(&buf[at..end]));
            }
            Some(b'+') => match memmem::find(&buf[at..], b"\r\n") {
                Some(eol) => at += eol + 2,
                None => return Ok(at),
            },
            Some(other) => bail!("unexpected RESP type byte {other:#x}"),
        }
    }
}

/// The decimal number at `at` up to CRLF, and where the next item starts.
fn resp_number(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let eol = at + memmem::find(buf.get(at..)?, b"\r\n")?;
    let n = std::str::from_utf8(&buf[at..eol]).ok()?.parse().ok()?;
    Some((n, eol + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_messages_are_cut_at_their_length_and_partial_ones_wait() {
        let buf =
            b"MSG bench 1 5\r\nhello\r\nPING\r\nMSG bench 1 r 3\r\nabc\r\nMSG bench 1 9\r\nabc";
        let mut got = Vec::new();
        let (mut pings, mut error) = (0, None);
        let used = nats_walk(buf, &mut |p| got.push(p.to_vec()), &mut pings, &mut error);
        assert_eq!(got, vec![b"hello".to_vec(), b"abc".to_vec()]);
        assert_eq!(pings, 1);
        assert_eq!(&buf[used..], b"MSG bench 1 9\r\nabc");
    }

    #[test]
    fn every_message_is_64_bytes_and_carries_its_stamp() {
        for (n, sent) in [(0, 0), (123_456, 98_765_432_100)] {
            let payload = super::super::payload64(n, sent);
            assert_eq!(payload.len(), 64);
            let stamp = crate::wire::StampFinder::new().find(&payload).unwrap();
            assert_eq!((stamp.n, stamp.sent_us), (n, sent));
        }
    }

    #[test]
    fn redis_message_pushes_and_replies_are_told_apart() {
        let buf = b"*3\r\n$9\r\nsubscribe\r\n$5\r\nbench\r\n:1\r\n:100\r\n\
                    *3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$4\r\n{n:}\r\n*3\r\n$7\r\nmess";
        let mut got = Vec::new();
        let mut replies = 0;
        let used = redis_walk(buf, &mut |p| got.push(p.to_vec()), &mut replies).unwrap();
        assert_eq!(got, vec![b"{n:}".to_vec()]);
        assert_eq!(replies, 1);
        assert_eq!(&buf[used..], b"*3\r\n$7\r\nmess");
    }
}
