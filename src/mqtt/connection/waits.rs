//! What a session waits on, each as small as it can be: an idle
//! connection's task holds every one of these futures at once (the
//! `select!` in `Session::serve`), so none keeps room it does not need.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use tokio::io::AsyncRead;
use tokio::time::{Instant, Sleep};

use super::{Done, Write, READ_CHUNK};
use crate::store::StoreError;

/// Reads what the socket has into `buf`, through a buffer on the stack:
/// while the socket has nothing, no room is kept for it, so an idle
/// connection costs no read buffer (tokio's `read_buf` needs the room
/// reserved for as long as it waits).
pub(super) async fn read_some(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut scratch = [0u8; READ_CHUNK];
        let mut read = tokio::io::ReadBuf::new(&mut scratch);
        std::task::ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

/// Sets the session's one timer to `deadline`, making it only when there
/// is one and moving it otherwise.
pub(super) fn set_timer(timer: &mut Option<Pin<Box<Sleep>>>, deadline: Option<Instant>) {
    match (deadline, timer.as_mut()) {
        (None, _) => *timer = None,
        (Some(at), Some(sleep)) => {
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
        }
        (Some(at), None) => *timer = Some(Box::pin(tokio::time::sleep_until(at))),
    }
}

/// Completes when the timer fires; never without one.
pub(super) fn tick(timer: &mut Option<Pin<Box<Sleep>>>) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| match timer {
        Some(sleep) => sleep.as_mut().poll(cx),
        None => Poll::Pending,
    })
}

/// `wait` if there is one; never otherwise.
pub(super) async fn maybe<F: Future>(wait: Option<F>) -> F::Output {
    match wait {
        Some(wait) => wait.await,
        None => std::future::pending().await,
    }
}

/// The next finished write; `None` at once when none is in flight.
pub(super) async fn next_done(
    pending: &mut Option<Box<FuturesOrdered<Write>>>,
) -> Option<Vec<Done>> {
    pending.as_mut()?.next().await
}

/// What woke a session's task, to be acted on once its `select!` is over.
pub(super) enum Woke {
    /// Handled already (a delivery, an acknowledgement).
    Nothing,
    /// The socket has bytes for `handle_all`.
    Read,
    /// The socket closed or failed.
    Lost,
    /// A replay page was read.
    Page(Result<Vec<String>, StoreError>),
    /// The hub let go of the connection or asks it to close.
    HubClosed,
    /// A custom topic was created while a wildcard filter is held.
    TopicsCreated,
    /// The session's timer fired.
    Timer,
}
