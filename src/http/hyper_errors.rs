//! hyper answers a request it cannot parse by itself, before the router
//! sees it: 400 for a malformed request line or header (raw non-ASCII bytes
//! in the path, say), 414 for a URI over 64 KiB, 431 for a head larger than
//! its buffer. Those answers have an empty body, and hyper offers no hook to
//! change them. [`JsonErrors`] wraps each accepted connection and rewrites
//! exactly those answers into the contract's error shape on their way out.
//!
//! They are recognisable: hyper writes such a head as the last thing before
//! it closes the connection, always with `content-length: 0` and no content
//! type, which no answer of ours has (our errors always carry a body).

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::serve::Listener;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::peer::poll_write_rest;

/// hyper's automatic heads are about 110 bytes; this is where one is
/// looked for at the end of a write.
const HEAD_WINDOW: usize = 256;

/// A listener whose connections rewrite hyper's automatic error answers.
pub struct JsonErrorListener<L>(pub L);

impl<L: Listener> Listener for JsonErrorListener<L> {
    type Io = JsonErrors<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (JsonErrors::new(io), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

pub struct JsonErrors<T> {
    inner: T,
    /// A rewritten answer not yet fully written, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrors<T> {
    pub fn new(inner: T) -> JsonErrors<T> {
        JsonErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// The connection itself, for one hyper will not serve (nothing of
    /// hyper's is then written to rewrite).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(poll_write_rest(
            &mut self.inner,
            cx,
            &self.pending,
            &mut self.written
        ))?;
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.drain(cx))?;
        match automatic_error_at(buf) {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            // What comes before the head first; the head at the next call.
            Some(at) if at > 0 => Pin::new(&mut this.inner).poll_write(cx, &buf[..at]),
            Some(_) => {
                this.pending = rewrite(buf);
                // Taken whole: the rest goes out now or at the next flush
                // or shutdown, which hyper calls before closing.
                if let Poll::Ready(Err(e)) = this.drain(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(buf.len()))
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored on purpose: hyper then writes each answer from one
    // buffer, so a head is always seen whole in one write.
}

/// Where hyper's automatic error head starts in `buf`, if `buf` ends with
/// one.
fn automatic_error_at(buf: &[u8]) -> Option<usize> {
    if !buf.ends_with(b"\r\n\r\n") {
        return None;
    }
    let from = buf.len().saturating_sub(HEAD_WINDOW);
    let at = from + find_last(&buf[from..], b"HTTP/1.1 ")?;
    let head = &buf[at..];
    let automatic = matches!(head.get(9..13), Some(b"400 " | b"414 " | b"431 "))
        && find_last(head, b"\r\ncontent-length: 0\r\n").is_some()
        && find_last(head, b"\r\ncontent-type:").is_none();
    automatic.then_some(at)
}

fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// The same head with a JSON body in the error shape.
fn rewrite(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.trim_end().split("\r\n");
    let status_line = lines.next().unwrap_or("HTTP/1.1 400 Bad Request");
    let message = match status_line.get(9..12) {
        Some("414") => "the request URI is too long (at most 65534 bytes)",
        Some("431") => "the request head (request line and headers) is too large",
        _ => "malformed HTTP request: a bad request line or header (a path must be ASCII, other bytes percent-encoded)",
    };
    let body = json!({"error": {"code": "bad_request", "message": message}}).to_string();
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for line in lines.filter(|l| !l.starts_with("content-length:")) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYPER_414: &[u8] =
        b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 09:39:36 GMT\r\n\r\n";

    #[test]
    fn only_hypers_empty_error_heads_are_rewritten() {
        assert_eq!(automatic_error_at(HYPER_414), Some(0));
        let before = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let mut after_a_response = before.to_vec();
        after_a_response.extend_from_slice(HYPER_414);
        assert_eq!(automatic_error_at(&after_a_response), Some(before.len()));
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error_at(ours), None);
        assert_eq!(
            automatic_error_at(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(automatic_error_at(b"\x81\x02{}"), None);
    }

    #[test]
    fn the_rewrite_keeps_the_status_and_headers_and_adds_the_shape() {
        let text = String::from_utf8(rewrite(HYPER_414)).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(head.contains("\r\ndate: Thu"), "{head}");
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(body["error"]["code"], "bad_request");
    }
}
