//! A connection's outbox: the frames the hub handed to it that its task has
//! not written yet, bounded in bytes rather than in messages.
//!
//! A bound in messages is wrong both ways: 1,024 small chat messages are a
//! few hundred KiB and a normal burst, while 1,024 large events can be tens
//! of MiB. So each outbox counts the encoded length of what it holds against
//! `outbox_bytes`, and all outboxes together count against one global budget
//! (`outbox_budget_mb`), which the hub keeps by closing the connections that
//! hold the most (see `hub`). Frames are shared between outboxes, so that sum
//! over-estimates the memory really held: a frame queued for 1,000
//! connections counts 1,000 times but exists once.
//!
//! An idle outbox allocates nothing: a `VecDeque` allocates on its first
//! push, and a queue that drained after a burst gives its buffer back when
//! its task next waits. The
//! receiving task waits through a stored `Waker`, so `recv` keeps no state
//! between polls and is cancel-safe in `select!`.
//!
//! Either side letting go empties the queue and returns its bytes at once:
//! the hub's budget must not count connections that are gone or being
//! closed, or one eviction would be followed by needless others.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use super::{Close, Frame};

/// A queue whose buffer grew past this many slots frees it once its task
/// waits on it empty, so a connection idle after a burst costs what an
/// idle one always did.
const KEEP_SLOTS: usize = 64;

/// The most frames a connection takes from its outbox for one socket
/// write (WebSocket, SSE, MQTT alike): a write costs about the same
/// whatever it carries, and this keeps one within a few hundred KiB.
pub const WRITE_BATCH: usize = 256;

/// The bytes queued in all outboxes together, and the bounds of one
/// outbox in force (kept here, once, for the connection tasks: see
/// [`Receiver::take_into`]).
#[derive(Debug)]
pub struct Budget {
    queued: AtomicUsize,
    bound_bytes: AtomicUsize,
    /// Zero: no bound in frames.
    bound_frames: AtomicUsize,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            queued: AtomicUsize::new(0),
            bound_bytes: AtomicUsize::new(usize::MAX),
            bound_frames: AtomicUsize::new(0),
        }
    }
}

impl Budget {
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records the bounds one outbox has now (the hub, as settings change).
    pub fn keep_bounds(&self, limits: &Limits) {
        let frames = limits.frames.unwrap_or(0);
        if self.bound_bytes.load(Ordering::Relaxed) != limits.bytes {
            self.bound_bytes.store(limits.bytes, Ordering::Relaxed);
        }
        if self.bound_frames.load(Ordering::Relaxed) != frames {
            self.bound_frames.store(frames, Ordering::Relaxed);
        }
    }

    fn add(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::Relaxed);
    }

    fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// The bounds in force, from the settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one outbox may hold (`outbox_bytes`).
    pub bytes: usize,
    /// Frames one outbox may hold (`outbox`), when set.
    pub frames: Option<usize>,
    /// Bytes all outboxes may hold together (`outbox_budget_mb`).
    pub budget: usize,
}

impl Limits {
    pub fn of(tunables: &crate::config::Tunables) -> Limits {
        Limits {
            bytes: tunables.outbox_bytes,
            frames: tunables.outbox,
            budget: tunables.outbox_budget_mb.saturating_mul(1 << 20),
        }
    }
}

/// What became of a frame offered to an outbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    Queued,
    /// The connection's task is gone: nobody to deliver to, nothing kept.
    Closed,
    /// Taking it would pass the outbox's bound: the connection is slow.
    Full,
}

struct Queue {
    frames: VecDeque<Arc<Frame>>,
    bytes: usize,
    waker: Option<Waker>,
    /// The hub let go (the connection left it or was closed).
    hub_gone: bool,
    /// Why the hub wants the connection closed, once it does. Boxed: an
    /// idle connection keeps a pointer, not a whole `Close`.
    close: Option<Box<Close>>,
    /// The task waiting for `close` (beside the one waiting for frames).
    close_waker: Option<Waker>,
    /// The connection's task let go.
    task_gone: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    budget: Arc<Budget>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding it; a poisoned queue is still whole.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops what is queued and returns its bytes to the budget.
    fn discard(&self, queue: &mut Queue) {
        self.budget.release(queue.bytes);
        queue.bytes = 0;
        queue.frames = VecDeque::new();
    }
}

/// The hub's end.
pub struct Sender {
    shared: Arc<Shared>,
}

/// The connection task's end.
pub struct Receiver {
    shared: Arc<Shared>,
}

/// An empty outbox counting against `budget`.
pub fn channel(budget: &Arc<Budget>) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            frames: VecDeque::new(),
            bytes: 0,
            waker: None,
            hub_gone: false,
            close: None,
            close_waker: None,
            task_gone: false,
        }),
        budget: budget.clone(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl Sender {
    /// Queues `frame` unless that would pass `limits`. A frame larger than
    /// the bound still goes into an empty outbox: the bound is on what
    /// waits, and such a frame would otherwise close every connection it
    /// is sent to.
    pub fn offer(&self, frame: Arc<Frame>, limits: &Limits) -> Offer {
        let len = frame.text.len();
        let waker = {
            let mut queue = self.shared.lock();
            if queue.task_gone {
                return Offer::Closed;
            }
            let over_bytes = !queue.frames.is_empty() && queue.bytes + len > limits.bytes;
            let over_frames = limits.frames.is_some_and(|max| queue.frames.len() >= max);
            if over_bytes || over_frames {
                return Offer::Full;
            }
            queue.frames.push_back(frame);
            queue.bytes += len;
            self.shared.budget.add(len);
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Offer::Queued
    }

    /// Asks the connection to close with `close` (a later reason replaces
    /// one not yet seen). The outbox carries it so that a connection needs
    /// no channel of its own for it: a tokio `watch` cost about 450 bytes a
    /// connection.
    pub fn close(&self, close: Close) {
        let waker = {
            let mut queue = self.shared.lock();
            queue.close = Some(Box::new(close));
            queue.close_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Bytes and frames waiting.
    pub fn queued(&self) -> (usize, usize) {
        let queue = self.shared.lock();
        (queue.bytes, queue.frames.len())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let waker = {
            let mut queue = self.shared.lock();
            queue.hub_gone = true;
            self.shared.discard(&mut queue);
            [queue.waker.take(), queue.close_waker.take()]
        };
        for waker in waker.into_iter().flatten() {
            waker.wake();
        }
    }
}

impl Receiver {
    /// The next frame; `None` once the hub has let go of the connection
    /// (what was still queued then is dropped: the hub closes a connection
    /// with a reason, and resuming brings back what it missed).
    /// Cancel-safe: a frame is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<Arc<Frame>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Arc<Frame>>> {
        let mut queue = self.shared.lock();
        if let Some(frame) = self.pop(&mut queue) {
            drop(queue);
            // The first frame of a batch is its oldest: one sample per
            // batch, the wait of the frame that waited longest.
            crate::metrics::delivery_lag(frame.made.elapsed());
            return Poll::Ready(Some(frame));
        }
        if queue.hub_gone {
            return Poll::Ready(None);
        }
        // Freed here, when the connection goes idle, rather than whenever a
        // busy one empties its queue: there the hub would grow it again
        // from nothing for the next batch.
        if queue.frames.capacity() > KEEP_SLOTS {
            queue.frames = VecDeque::new();
        }
        wake_later(&mut queue.waker, cx);
        Poll::Pending
    }

    /// Moves waiting frames into `into` until it holds `max`, under one
    /// lock. True when what was waiting (counting what `into` already
    /// holds) had passed half the outbox's bound: a task that let it
    /// gather that much must not wait as long again (see `pacing`), or
    /// the hub would close it as a slow consumer.
    pub fn take_into(&mut self, into: &mut Vec<Arc<Frame>>, max: usize) -> bool {
        let mut queue = self.shared.lock();
        let held_bytes = queue.bytes + into.iter().map(|f| f.text.len()).sum::<usize>();
        let held_frames = queue.frames.len() + into.len();
        let budget = &self.shared.budget;
        let bound_frames = budget.bound_frames.load(Ordering::Relaxed);
        let crowded = held_bytes > budget.bound_bytes.load(Ordering::Relaxed) / 2
            || (bound_frames > 0 && held_frames > bound_frames / 2);
        let n = max.saturating_sub(into.len()).min(queue.frames.len());
        into.reserve(n);
        let mut len = 0;
        for frame in queue.frames.drain(..n) {
            len += frame.text.len();
            into.push(frame);
        }
        queue.bytes -= len;
        self.shared.budget.release(len);
        crowded
    }

    pub fn is_empty(&self) -> bool {
        self.shared.lock().frames.is_empty()
    }

    /// The end that hears the hub's close request, to wait on beside
    /// [`Receiver::recv`].
    pub fn close_signal(&self) -> CloseSignal {
        CloseSignal {
            shared: self.shared.clone(),
        }
    }

    fn pop(&self, queue: &mut Queue) -> Option<Arc<Frame>> {
        let frame = queue.frames.pop_front()?;
        let len = frame.text.len();
        queue.bytes -= len;
        self.shared.budget.release(len);
        Some(frame)
    }
}

/// Where a connection hears that the hub wants it closed.
pub struct CloseSignal {
    shared: Arc<Shared>,
}

impl CloseSignal {
    /// Waits until the hub asks for a close (`Some`, its reason) or lets
    /// go of the connection without one (`None`). Cancel-safe.
    pub async fn closed(&self) -> Option<Close> {
        poll_fn(|cx| {
            let mut queue = self.shared.lock();
            if let Some(close) = &queue.close {
                return Poll::Ready(Some((**close).clone()));
            }
            if queue.hub_gone {
                return Poll::Ready(None);
            }
            wake_later(&mut queue.close_waker, cx);
            Poll::Pending
        })
        .await
    }

    /// The close asked for so far, if any.
    pub fn requested(&self) -> Option<Close> {
        self.shared.lock().close.as_deref().cloned()
    }
}

/// Keeps `cx`'s waker in `slot` (cloned only when it is another one).
fn wake_later(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.task_gone = true;
        queue.waker = None;
        self.shared.discard(&mut queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::FrameKind;

    fn frame(len: usize) -> Arc<Frame> {
        Arc::new(Frame::new(1, FrameKind::Message, "x".repeat(len)))
    }

    fn limits(bytes: usize, frames: Option<usize>) -> Limits {
        Limits {
            bytes,
            frames,
            budget: usize::MAX,
        }
    }

    #[test]
    fn bounds_bytes_and_optionally_frames() {
        let budget = Arc::new(Budget::default());
        let (tx, mut rx) = channel(&budget);
        let small = limits(250, None);
        for _ in 0..2 {
            assert_eq!(tx.offer(frame(100), &small), Offer::Queued);
        }
        assert_eq!(tx.offer(frame(100), &small), Offer::Full);
        assert_eq!(tx.queued(), (200, 2));
        assert_eq!(budget.queued(), 200);
        let mut taken = Vec::new();
        rx.take_into(&mut taken, 1);
        assert_eq!(taken.len(), 1);
        assert_eq!(budget.queued(), 100);
        assert_eq!(tx.offer(frame(100), &small), Offer::Queued);
        let counted = limits(usize::MAX, Some(2));
        assert_eq!(tx.offer(frame(1), &counted), Offer::Full);
    }

    #[test]
    fn a_frame_larger_than_the_bound_goes_into_an_empty_outbox() {
        let budget = Arc::new(Budget::default());
        let (tx, _rx) = channel(&budget);
        let small = limits(10, None);
        assert_eq!(tx.offer(frame(100), &small), Offer::Queued);
        assert_eq!(tx.offer(frame(1), &small), Offer::Full);
    }

    #[test]
    fn either_side_letting_go_returns_the_bytes() {
        let budget = Arc::new(Budget::default());
        let (tx, rx) = channel(&budget);
        let any = limits(usize::MAX, None);
        tx.offer(frame(100), &any);
        drop(rx);
        assert_eq!(budget.queued(), 0);
        assert_eq!(tx.offer(frame(100), &any), Offer::Closed);
        assert_eq!(budget.queued(), 0);

        let (tx, mut rx) = channel(&budget);
        tx.offer(frame(100), &any);
        drop(tx);
        assert_eq!(budget.queued(), 0);
        let mut taken = Vec::new();
        rx.take_into(&mut taken, 1);
        assert!(taken.is_empty());
    }

    #[tokio::test]
    async fn recv_wakes_on_a_frame_and_ends_when_the_hub_lets_go() {
        let budget = Arc::new(Budget::default());
        let (tx, mut rx) = channel(&budget);
        let waiting = tokio::spawn(async move {
            let first = rx.recv().await.map(|f| f.text.len());
            let second = rx.recv().await.map(|f| f.text.len());
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.offer(frame(7), &limits(usize::MAX, None));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(tx);
        assert_eq!(waiting.await.unwrap(), (Some(7), None));
    }

    #[tokio::test]
    async fn the_close_signal_carries_the_hubs_reason_or_its_going() {
        let budget = Arc::new(Budget::default());
        let (tx, rx) = channel(&budget);
        let signal = rx.close_signal();
        assert!(signal.requested().is_none());
        let waiting = tokio::spawn(async move { signal.closed().await.map(|c| c.code) });
        tokio::task::yield_now().await;
        tx.close(Close::slow_consumer());
        drop(tx);
        assert_eq!(waiting.await.unwrap(), Some(4008));
        assert_eq!(rx.close_signal().requested().map(|c| c.code), Some(4008));

        let (tx, rx) = channel(&budget);
        let signal = rx.close_signal();
        let waiting = tokio::spawn(async move { signal.closed().await.map(|c| c.code) });
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(
            waiting.await.unwrap(),
            None,
            "the hub let go without a reason"
        );
    }

    #[test]
    fn take_into_moves_up_to_max_and_returns_their_bytes() {
        let budget = Arc::new(Budget::default());
        let (tx, mut rx) = channel(&budget);
        let any = limits(usize::MAX, None);
        for len in 1..=5 {
            tx.offer(frame(len), &any);
        }
        let mut taken = Vec::new();
        rx.take_into(&mut taken, 1);
        rx.take_into(&mut taken, 3);
        let lens: Vec<usize> = taken.iter().map(|f| f.text.len()).collect();
        assert_eq!(lens, [1, 2, 3]);
        assert_eq!(tx.queued(), (9, 2));
        assert_eq!(budget.queued(), 9);
        rx.take_into(&mut taken, 100);
        assert_eq!(taken.len(), 5);
        assert_eq!((tx.queued(), budget.queued()), ((0, 0), 0));
    }

    #[test]
    fn take_into_tells_when_the_queue_had_passed_half_its_bound() {
        let budget = Arc::new(Budget::default());
        let (tx, mut rx) = channel(&budget);
        let mut taken = Vec::new();
        assert!(
            !rx.take_into(&mut taken, usize::MAX),
            "empty, nothing offered"
        );
        let bytes = limits(100, None);
        budget.keep_bounds(&bytes);
        for _ in 0..5 {
            tx.offer(frame(10), &bytes);
        }
        assert!(!rx.take_into(&mut taken, usize::MAX), "50 bytes of 100");
        taken.clear();
        for _ in 0..6 {
            tx.offer(frame(10), &bytes);
        }
        let first = rx.take_into(&mut taken, 1);
        assert!(first, "60 bytes of 100, though only one frame was taken");
        rx.take_into(&mut taken, usize::MAX);
        let frames = limits(usize::MAX, Some(4));
        budget.keep_bounds(&frames);
        taken.clear();
        tx.offer(frame(1), &frames);
        tx.offer(frame(1), &frames);
        assert!(!rx.take_into(&mut taken, usize::MAX), "2 frames of 4");
        tx.offer(frame(1), &frames);
        assert!(
            rx.take_into(&mut taken, usize::MAX),
            "3 frames of 4, counting those in hand"
        );
    }

    #[tokio::test]
    async fn a_queue_drained_after_a_burst_is_freed_once_its_task_waits() {
        let budget = Arc::new(Budget::default());
        let (tx, mut rx) = channel(&budget);
        let any = limits(usize::MAX, None);
        for _ in 0..1000 {
            tx.offer(frame(1), &any);
        }
        let mut taken = Vec::new();
        rx.take_into(&mut taken, usize::MAX);
        assert!(
            rx.shared.lock().frames.capacity() >= 1000,
            "a busy queue keeps its buffer between batches"
        );
        let waiting = std::future::poll_fn(|cx| Poll::Ready(rx.poll_recv(cx).is_pending()));
        assert!(waiting.await);
        assert_eq!(rx.shared.lock().frames.capacity(), 0);
    }

    #[test]
    fn an_idle_outbox_is_small() {
        // The channel it replaced cost a few hundred bytes per connection
        // before its first message, and so did the close channel whose
        // slot and waker it now holds.
        assert!(
            std::mem::size_of::<Shared>() <= 104,
            "{}",
            std::mem::size_of::<Shared>()
        );
    }
}
