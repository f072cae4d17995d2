//! The SSE client of the fan-out benchmark, on a raw socket.
//!
//! A thousand subscribers share one reading thread with the rest of the
//! generator; going through hyper cost each of them a connection task and a
//! channel hop per body frame, so this reads the socket itself and undoes
//! the chunked transfer encoding in place, as the WebSocket client in
//! `wire.rs` walks its frames.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::{Buf as _, BytesMut};
use memchr::memmem;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Room for one socket read: large enough that a burst of events to a
/// subscriber is taken in one read, and since the decoder leaves at most a
/// partial size line behind, a reserve below this reclaims the space
/// instead of allocating.
const RAW_CAPACITY: usize = 16 * 1024;
/// Below this much free room a read could bring in too little to be worth
/// the wake-up.
const READ_ROOM: usize = 4096;
/// A response head is a status line and a few headers; more means the peer
/// is not the server we think it is.
const MAX_HEAD: usize = 16 * 1024;
/// A size line is hex digits and perhaps an extension; this bounds what a
/// broken peer can make us buffer while looking for its end.
const MAX_SIZE_LINE: usize = 4096;
/// An error answer is read only to be quoted, so its length and the wait
/// for it are capped (a keep-alive peer might never close).
const MAX_ERROR_BODY: usize = 64 * 1024;
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// An SSE stream (`text/event-stream`), decoded from the socket's bytes so
/// that `buf` holds only body bytes for [`Sse::drain`] to split.
pub struct Sse {
    stream: TcpStream,
    /// Socket bytes not yet decoded (a cut size line, a chunk's CRLF).
    raw: BytesMut,
    buf: BytesMut,
    framing: Framing,
}

/// How the response body is delimited.
enum Framing {
    Chunked(Chunked),
    Length(u64),
    UntilClose,
}

impl Framing {
    fn decode(&mut self, raw: &mut BytesMut, out: &mut BytesMut) -> anyhow::Result<Progress> {
        match self {
            Framing::Chunked(chunked) => chunked.decode(raw, out),
            Framing::Length(left) => {
                let take = raw.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                out.extend_from_slice(&raw[..take]);
                // Bytes past the declared length are not ours to deliver.
                raw.clear();
                *left -= take as u64;
                Ok(if *left == 0 {
                    Progress::End
                } else {
                    Progress::More
                })
            }
            Framing::UntilClose => {
                if !raw.is_empty() {
                    out.extend_from_slice(raw);
                    raw.clear();
                }
                Ok(Progress::More)
            }
        }
    }
}

impl Sse {
    /// GET `path_and_query` with the given Authorization header value.
    pub async fn open(
        addr: SocketAddr,
        path_and_query: &str,
        auth: Option<&str>,
    ) -> anyhow::Result<Sse> {
        let mut stream = crate::wire::connect(addr).await?;
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n\
             Accept: text/event-stream\r\n{auth}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;

        let mut raw = BytesMut::with_capacity(RAW_CAPACITY);
        let head_end = loop {
            if let Some(end) = memmem::find(&raw, b"\r\n\r\n") {
                break end + 4;
            }
            if raw.len() > MAX_HEAD {
                bail!("GET {path_and_query}: the answer has no end of headers");
            }
            if stream.read_buf(&mut raw).await? == 0 {
                bail!("GET {path_and_query}: the server closed the connection before answering");
            }
        };
        let head = parse_head(&raw[..head_end])
            .with_context(|| format!("GET {path_and_query}: bad response head"))?;
        // Whatever followed the head in the same read is the body's start.
        raw.advance(head_end);
        let framing = if head.chunked {
            Framing::Chunked(Chunked::default())
        } else if let Some(length) = head.content_length {
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        let mut sse = Sse {
            stream,
            raw,
            buf: BytesMut::with_capacity(4096),
            framing,
        };
        if !(200..300).contains(&head.status) {
            // The body is only quoted, so a read error or a slow peer just
            // shortens the quote.
            let _ = tokio::time::timeout(ERROR_BODY_WAIT, async {
                while sse.buf.len() < MAX_ERROR_BODY && matches!(sse.fill().await, Ok(true)) {}
            })
            .await;
            let body = &sse.buf[..sse.buf.len().min(MAX_ERROR_BODY)];
            bail!(
                "GET {path_and_query} -> {}: {}",
                head.status_text,
                String::from_utf8_lossy(body)
            );
        }
        Ok(sse)
    }

    /// Reads until at least one more body byte is in the buffer; false at
    /// the end of the stream (the last chunk, or the server closed).
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        let before = self.buf.len();
        loop {
            let progress = self.framing.decode(&mut self.raw, &mut self.buf)?;
            // Data that came with the end is handed out first; the next call
            // reports the end, as a reader would see it from any client.
            if self.buf.len() > before {
                return Ok(true);
            }
            if progress == Progress::End {
                return Ok(false);
            }
            // A close-delimited body needs no decoding, so it skips the copy.
            let into = match self.framing {
                Framing::UntilClose => &mut self.buf,
                _ => &mut self.raw,
            };
            if into.capacity() - into.len() < READ_ROOM {
                into.reserve(READ_ROOM);
            }
            if self.stream.read_buf(into).await? == 0 {
                return Ok(false);
            }
        }
    }

    /// Calls `each` with every complete event block and drops them.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) {
        let mut at = 0;
        while let Some(end) = memmem::find(&self.buf[at..], b"\n\n") {
            each(&self.buf[at..at + end]);
            at += end + 2;
        }
        self.buf.advance(at);
    }

    /// Waits for the next event block (setup only).
    pub async fn next_event(&mut self) -> anyhow::Result<Vec<u8>> {
        loop {
            if let Some(end) = memmem::find(&self.buf, b"\n\n") {
                let event = self.buf[..end].to_vec();
                self.buf.advance(end + 2);
                return Ok(event);
            }
            if !self.fill().await? {
                bail!("the event stream ended during setup");
            }
        }
    }
}

/// What `open` needs from a response head.
struct Head {
    status: u16,
    /// The code and the server's reason phrase, for an error message.
    status_text: String,
    chunked: bool,
    content_length: Option<u64>,
}

fn parse_head(head: &[u8]) -> anyhow::Result<Head> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.split_once(' '))
        .map(|(_, r)| r.trim())
        .with_context(|| format!("not an HTTP/1 status line: {status_line:?}"))?;
    let status = rest
        .get(..3)
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let mut chunked = false;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked delimits the body only as the last coding applied;
            // any other last coding leaves the body to end at close.
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .with_context(|| format!("bad Content-Length {value:?}"))?;
            content_length = Some(length);
        }
    }
    Ok(Head {
        status,
        status_text: rest.to_owned(),
        chunked,
        content_length,
    })
}

/// Whether a decoder has seen its body's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything decodable was decoded; the rest needs more input.
    More,
    End,
}

/// An incremental decoder of `Transfer-Encoding: chunked`; a read may end
/// anywhere, inside a size line or between a chunk's data and its CRLF.
#[derive(Debug, Default)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(usize),
    DataEnd,
    Done,
}

impl Chunked {
    /// Moves the data bytes of every whole or partial chunk in `raw` to
    /// `out`, leaving in `raw` only what cannot be decoded yet (and, after
    /// the last chunk, the trailers, which nobody here needs).
    pub fn decode(&mut self, raw: &mut BytesMut, out: &mut BytesMut) -> anyhow::Result<Progress> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Progress::End),
                ChunkState::Data(left) => {
                    if raw.is_empty() {
                        return Ok(Progress::More);
                    }
                    let take = left.min(raw.len());
                    out.extend_from_slice(&raw[..take]);
                    raw.advance(take);
                    self.state = if take == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - take)
                    };
                }
                ChunkState::DataEnd => {
                    if raw.starts_with(b"\r\n") {
                        raw.advance(2);
                    } else if raw.starts_with(b"\n") {
                        raw.advance(1);
                    } else if raw.is_empty() || &raw[..] == b"\r" {
                        return Ok(Progress::More);
                    } else {
                        bail!("chunk data is not followed by CRLF");
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Size => {
                    let Some(newline) = memchr::memchr(b'\n', raw) else {
                        if raw.len() > MAX_SIZE_LINE {
                            bail!("chunk size line longer than {MAX_SIZE_LINE} bytes");
                        }
                        return Ok(Progress::More);
                    };
                    let size = chunk_size(&raw[..newline])?;
                    raw.advance(newline + 1);
                    self.state = match size {
                        0 => ChunkState::Done,
                        size => ChunkState::Data(size),
                    };
                }
            }
        }
    }
}

/// The size in a chunk's size line (without its `\n`).
fn chunk_size(line: &[u8]) -> anyhow::Result<usize> {
    let malformed = || {
        anyhow::anyhow!(
            "malformed chunk size line {:?}",
            String::from_utf8_lossy(line)
        )
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = match memchr::memchr(b';', line) {
        Some(semicolon) => &line[..semicolon],
        None => line,
    };
    // Whitespace before an extension is allowed to some senders.
    let digits = digits.trim_ascii();
    if digits.is_empty() {
        return Err(malformed());
    }
    digits.iter().try_fold(0usize, |size, &b| {
        let digit = (b as char).to_digit(16).ok_or_else(malformed)?;
        size.checked_mul(16)
            .and_then(|s| s.checked_add(digit as usize))
            .ok_or_else(malformed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Three chunks (upper and lower case hex, extensions, a CRLF and
    /// digits inside the data) and the last chunk with a trailer.
    const STREAM: &[u8] = b"1A;name=value\r\nabcdefghij\r\n0123456789\n\nxy\r\n\
        b\r\nhello world\r\n\
        5 ; a; b=\"c;d\"\r\n\n\nok\n\r\n\
        0\r\nX-Trailer: 1\r\n\r\n";
    const BODY: &[u8] = b"abcdefghij\r\n0123456789\n\nxyhello world\n\nok\n";

    fn decode_in_pieces(cuts: &[usize]) -> (BytesMut, Vec<Progress>) {
        let mut chunked = Chunked::default();
        let (mut raw, mut out) = (BytesMut::new(), BytesMut::new());
        let mut progress = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([&STREAM.len()]) {
            raw.extend_from_slice(&STREAM[from..to]);
            progress.push(chunked.decode(&mut raw, &mut out).unwrap());
            from = to;
        }
        (out, progress)
    }

    fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(bytes)
    }

    #[test]
    fn chunked_decoder_keeps_its_place_across_every_cut() {
        assert_eq!(BODY.len(), 0x1a + 0xb + 5);
        let last_chunk_end = memmem::find(STREAM, b"0\r\nX").unwrap() + 3;
        for cut in 0..=STREAM.len() {
            let (out, progress) = decode_in_pieces(&[cut]);
            assert_eq!(text(&out), text(BODY), "cut at {cut}");
            let first = if cut >= last_chunk_end {
                Progress::End
            } else {
                Progress::More
            };
            assert_eq!(progress, [first, Progress::End], "cut at {cut}");
        }
        let every_byte: Vec<usize> = (1..STREAM.len()).collect();
        let (out, progress) = decode_in_pieces(&every_byte);
        assert_eq!(text(&out), text(BODY));
        assert_eq!(
            progress.iter().position(|p| *p == Progress::End),
            Some(last_chunk_end - 1)
        );
    }

    #[test]
    fn chunked_decoder_rejects_a_malformed_size_line() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"1 2\r\nab\r\n",
            b"-1\r\n",
            b"0x10\r\n",
            b"11111111111111111111\r\n",
        ] {
            let mut raw = BytesMut::from(bad);
            let result = Chunked::default().decode(&mut raw, &mut BytesMut::new());
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut raw = BytesMut::from(&b"3\r\nabcX\r\n"[..]);
        assert!(Chunked::default()
            .decode(&mut raw, &mut BytesMut::new())
            .is_err());
    }

    /// Answers one request on `listener` with `pieces`, each written on its
    /// own after a pause, then holds the socket open until the client goes
    /// (so only the body's own end can end the stream); returns the request.
    async fn serve(listener: TcpListener, pieces: Vec<&'static [u8]>) -> Vec<u8> {
        let (mut socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut request = Vec::new();
        while memmem::find(&request, b"\r\n\r\n").is_none() {
            assert!(socket.read_buf(&mut request).await.unwrap() > 0);
        }
        for piece in pieces {
            // The client may rightly be gone once it has seen the end.
            if socket.write_all(piece).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest).await;
        request
    }

    #[tokio::test]
    async fn sse_reads_a_chunked_stream_from_a_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(
            listener,
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                  TRANSFER-encoding: chunked\r\n\r\n1",
                b"7\r\nevent: hello\ndata:",
                b" {}\n\n\r",
                b"\n",
                b"19;x=y\r\ndata: {\"n\":1,\"sent\":10}\n\n\r\n2",
                b"A\r\ndata: {\"n\":2,",
                b"\"sent\":20,\"pad\":\"xxxxxxxx\"}\n\n\r\n0\r\n",
                b"\r\n",
            ],
        ));
        let client = async {
            let mut sse = Sse::open(addr, "/api/realtime/sse?topic=t", Some("Bearer k")).await?;
            let hello = sse.next_event().await?;
            let mut events = Vec::new();
            while sse.fill().await? {
                sse.drain(|e| events.push(e.to_vec()));
            }
            anyhow::Ok((hello, events, sse.fill().await?))
        };
        let (hello, events, again) = tokio::time::timeout(Duration::from_secs(10), client)
            .await
            .expect("the stream did not end on its last chunk")
            .unwrap();
        assert_eq!(hello, b"event: hello\ndata: {}");
        assert_eq!(
            events,
            [
                &b"data: {\"n\":1,\"sent\":10}"[..],
                b"data: {\"n\":2,\"sent\":20,\"pad\":\"xxxxxxxx\"}"
            ]
        );
        assert!(!again, "the end stays the end");
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(request.starts_with("GET /api/realtime/sse?topic=t HTTP/1.1\r\n"));
        assert!(request.contains(&format!("\r\nHost: {addr}\r\n")));
        assert!(request.contains("\r\nAccept: text/event-stream\r\n"));
        assert!(request.contains("\r\nAuthorization: Bearer k\r\n"));
    }

    #[tokio::test]
    async fn sse_reads_a_body_that_ends_at_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while memmem::find(&request, b"\r\n\r\n").is_none() {
                assert!(socket.read_buf(&mut request).await.unwrap() > 0);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\n\r\nid:1\ndata:a\n\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            socket.write_all(b"data:b\n\n").await.unwrap();
        });
        let mut sse = Sse::open(addr, "/api/realtime", None).await.unwrap();
        assert_eq!(sse.next_event().await.unwrap(), b"id:1\ndata:a");
        let mut events = Vec::new();
        while sse.fill().await.unwrap() {
            sse.drain(|e| events.push(e.to_vec()));
        }
        assert_eq!(events, [b"data:b"]);
    }

    #[tokio::test]
    async fn sse_quotes_a_refusal_with_its_body() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            vec![
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\nno ",
                b"such token",
            ],
        ));
        let error = Sse::open(addr, "/api/realtime/sse?topic=t", None)
            .await
            .err()
            .expect("a 403 is an error");
        assert_eq!(
            error.to_string(),
            "GET /api/realtime/sse?topic=t -> 403 Forbidden: no such token"
        );
    }
}
