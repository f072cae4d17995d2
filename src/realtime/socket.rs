//! The byte stream under a WebSocket connection: it gathers the frames of
//! one batch and hands them to the kernel in one write.
//!
//! tungstenite keeps its own write buffer, but never gives its memory
//! back: sized for big batches, every idle connection would keep it (at
//! 1000 subscribers, a 16 KiB buffer cost 7-14 KiB each); sized small
//! (4 KiB), a batch of deliveries needed one `sendto` per ~16 frames, and
//! the kernel's send path is where a busy fan-out spends its time. So
//! tungstenite writes each frame through at once, into this stream, which
//! holds them until the connection flushes at the end of its batch (or
//! [`WRITE_AT`] bytes have gathered), writes them together, and frees the
//! buffer once it is written: an idle connection holds no write buffer.
//!
//! Deliveries do not go through tungstenite at all: a server's text frame
//! is a 2-10 byte header before the payload (RFC 6455 §5.2, unmasked), and
//! writing it here by hand costs a copy of the payload, where tungstenite's
//! message-to-frame path cost about as much again as the rest of a
//! delivery on the connection's side. Its own frames (pongs, closes) and
//! these are both handed over whole, so they never interleave inside a
//! frame.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::peer::poll_write_rest;

/// Gathered bytes past which a write goes to the socket before the batch
/// ends: large enough for a batch of small deliveries in one write, small
/// enough to bound what a connection stuck on a full socket holds beside
/// its outbox (the outbox's byte budget does not see it).
pub const WRITE_AT: usize = 64 * 1024;

/// What a batch's buffer starts at when its size is not foretold.
const FIRST_BUFFER: usize = 16 * 1024;

/// The longest header of a server's frame (RFC 6455 §5.2).
pub const MAX_HEADER: usize = 10;

pub struct Coalescing<T> {
    inner: T,
    gathered: Vec<u8>,
    /// How much of `gathered` the socket has taken.
    written: usize,
}

impl<T> Coalescing<T> {
    pub fn new(inner: T) -> Coalescing<T> {
        Coalescing {
            inner,
            gathered: Vec::new(),
            written: 0,
        }
    }

    /// Bytes gathered and not yet taken by the socket.
    pub fn unwritten(&self) -> usize {
        self.gathered.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> Coalescing<T> {
    /// Ready once another frame may be gathered: past [`WRITE_AT`], what
    /// is gathered goes to the socket first.
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.unwritten() >= WRITE_AT {
            ready!(self.poll_write_gathered(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Sizes an empty buffer for a batch of about `bytes` (up to what
    /// one write takes), so gathering it copies each frame once: grown by
    /// doubling from [`FIRST_BUFFER`], a 50 KiB batch was copied again at
    /// 16 and 32 KiB, 1.8 % of a busy connection thread's time.
    pub fn expect(&mut self, bytes: usize) {
        if self.gathered.capacity() == 0 {
            self.gathered.reserve(bytes.min(WRITE_AT + MAX_HEADER));
        }
    }

    /// Gathers one final, unmasked text frame carrying `payload` (call
    /// [`Coalescing::poll_room`] first to keep the bound).
    pub fn gather_text(&mut self, payload: &[u8]) {
        const FIN_TEXT: u8 = 0x81;
        let len = payload.len();
        if self.gathered.capacity() == 0 {
            // Most batches fit; a long one doubles it a few times rather
            // than growing from a frame's size.
            self.gathered.reserve(FIRST_BUFFER.max(len + MAX_HEADER));
        }
        match len {
            0..=125 => self.gathered.extend_from_slice(&[FIN_TEXT, len as u8]),
            126..=0xFFFF => {
                self.gathered.extend_from_slice(&[FIN_TEXT, 126]);
                self.gathered.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                self.gathered.extend_from_slice(&[FIN_TEXT, 127]);
                self.gathered.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.gathered.extend_from_slice(payload);
    }

    /// Writes out everything gathered, then frees the buffer.
    fn poll_write_gathered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(poll_write_rest(
            &mut self.inner,
            cx,
            &self.gathered,
            &mut self.written
        ))?;
        self.gathered = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalescing<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalescing<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx))?;
        this.gathered.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_gathered(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// Records each write the socket is asked for, taking at most `take`
    /// bytes of each.
    struct Recording {
        writes: Vec<usize>,
        bytes: Vec<u8>,
        take: usize,
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.take);
            self.writes.push(n);
            self.bytes.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn recording(take: usize) -> Coalescing<Recording> {
        Coalescing::new(Recording {
            writes: Vec::new(),
            bytes: Vec::new(),
            take,
        })
    }

    #[tokio::test]
    async fn a_batch_of_frames_is_one_write_and_leaves_no_buffer() {
        let mut stream = recording(usize::MAX);
        for i in 0..64u8 {
            stream.write_all(&[i; 150]).await.expect("gathered");
        }
        assert!(stream.inner.writes.is_empty(), "written before the flush");
        stream.flush().await.expect("flushed");
        assert_eq!(stream.inner.writes, [64 * 150]);
        assert_eq!(stream.inner.bytes.len(), 64 * 150);
        assert!(stream
            .inner
            .bytes
            .chunks(150)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 150]));
        assert_eq!(
            stream.gathered.capacity(),
            0,
            "an idle connection keeps its buffer"
        );
    }

    #[test]
    fn a_text_frame_is_what_tungstenite_would_write() {
        use tungstenite::protocol::frame::Frame;
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut ours = recording(usize::MAX);
            ours.gather_text(&payload);
            let mut theirs = Vec::new();
            Frame::message(
                payload,
                tungstenite::protocol::frame::coding::OpCode::Data(
                    tungstenite::protocol::frame::coding::Data::Text,
                ),
                true,
            )
            .format(&mut theirs)
            .expect("formatted");
            assert_eq!(ours.gathered, theirs, "a {len}-byte payload");
        }
    }

    #[test]
    fn a_foretold_batch_is_gathered_into_one_allocation() {
        let payload = [b'x'; 100];
        let frames = 500;
        let mut stream = recording(usize::MAX);
        stream.expect(frames * (payload.len() + MAX_HEADER));
        let (start, capacity) = (stream.gathered.as_ptr(), stream.gathered.capacity());
        for _ in 0..frames {
            stream.gather_text(&payload);
        }
        assert_eq!(stream.unwritten(), frames * (payload.len() + 2));
        assert_eq!(
            (stream.gathered.as_ptr(), stream.gathered.capacity()),
            (start, capacity),
            "the buffer was grown (and copied) while gathering"
        );
        let mut huge = recording(usize::MAX);
        huge.expect(usize::MAX);
        assert_eq!(huge.gathered.capacity(), WRITE_AT + MAX_HEADER);
    }

    #[tokio::test]
    async fn a_long_batch_goes_out_in_bounded_writes_in_order() {
        let mut stream = recording(5_000);
        let frame = [7u8; 1000];
        for _ in 0..100 {
            stream.write_all(&frame).await.expect("gathered");
            assert!(stream.unwritten() < WRITE_AT + frame.len());
        }
        stream.flush().await.expect("flushed");
        assert_eq!(stream.inner.bytes.len(), 100_000);
        assert!(stream.inner.writes.iter().all(|&n| n <= 5_000));
        assert_eq!(stream.unwritten(), 0);
    }
}
