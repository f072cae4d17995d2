//! Writing to a client that may have stopped reading. Every transport
//! (WebSocket, SSE, MQTT) gives a write the same time before it takes the
//! client for gone: a peer that stops reading must not hold its
//! connection, and its place in the hub, forever.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt as _};

/// A write to a client that takes longer means it stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `bytes` and flushes (a WebSocket sends a message on flush)
/// within [`WRITE_TIMEOUT`].
pub async fn write_in_time(
    out: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    let written = std::pin::pin!(async {
        out.write_all(bytes).await?;
        out.flush().await
    });
    finish_in_time(written).await
}

/// Finishes a write to a client within [`WRITE_TIMEOUT`]. Almost every
/// write fits the socket buffer and finishes at the first poll; only one
/// that has to wait pays for a timer (an SSE stream writes a batch this
/// way tens of times a second). Takes the write pinned where its caller
/// keeps it: moved in, it would be kept twice in the caller's state, and
/// that state is part of every connection's task.
pub async fn finish_in_time<F: std::future::Future<Output = std::io::Result<()>>>(
    mut written: Pin<&mut F>,
) -> std::io::Result<()> {
    if let Poll::Ready(result) =
        std::future::poll_fn(|cx| Poll::Ready(written.as_mut().poll(cx))).await
    {
        return result;
    }
    tokio::time::timeout(WRITE_TIMEOUT, written)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read in time",
            ))
        })
}

/// Writes what is left of `buf` (from `*written` on) to `out`, from a
/// poll function: `written` keeps the place across `Pending`s.
pub fn poll_write_rest(
    out: &mut (impl AsyncWrite + Unpin),
    cx: &mut Context<'_>,
    buf: &[u8],
    written: &mut usize,
) -> Poll<io::Result<()>> {
    while *written < buf.len() {
        let n = ready!(Pin::new(&mut *out).poll_write(cx, &buf[*written..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *written += n;
    }
    Poll::Ready(Ok(()))
}
