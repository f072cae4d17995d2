//! How often a busy connection writes.
//!
//! A socket write costs about the same whatever it carries (one `sendto`:
//! ~9 µs of CPU on a small gateway core for a few KiB, most of it the
//! kernel's TCP path), so under sustained fan-out the cost of delivery is
//! the number of writes, not of events. Left alone, a connection writes
//! whatever has gathered each time its task runs; with a thousand busy
//! connections that is a write per connection per round of the delivery
//! threads, the rounds get as short as the CPU allows, and the CPU is then
//! all taken: request handling and the clients' own reading wait behind
//! the delivery threads, queues build, and the slowest deliveries wait
//! several rounds (at 1000 subscribers × 1000 writes/s on two cores, p99
//! 35-50 ms with the machine at 195 %; see bench/RESULTS.md).
//!
//! So a connection that is busy (its last batch had [`BUSY_BATCH`] frames
//! or more) waits before its next write until a gap has passed since its
//! last one, and the gap grows with the number of busy connections: each
//! delivery thread then makes at most one write per [`SPACING`] on
//! average, whatever the number of connections. Events keep arriving in
//! the outbox meanwhile (bounded in bytes as ever), and go out together.
//! A connection that is not busy writes at once, so light loads keep their
//! latency; a gap under [`MIN_GAP`] (the timer's resolution) is not kept,
//! nor one after a batch that filled over half the outbox's bound (the
//! next gap could take it past the bound, and a slow-consumer close). A
//! connection that gathered nothing while it waited is no longer busy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::outbox::WRITE_BATCH;

/// A batch at least this big means the connection is busy.
pub const BUSY_BATCH: usize = 8;
/// Per delivery thread, the average time between two writes of busy
/// connections: at ~9 µs a write, a quarter of the thread, leaving the
/// rest of the core to the write path and to what the clients run. With
/// 1000 busy connections on two threads that is a write every 20 ms per
/// connection (~20 events each at 1000 events/s).
const SPACING: Duration = Duration::from_micros(40);
/// Shorter gaps are not kept: tokio's timer counts whole milliseconds.
const MIN_GAP: Duration = Duration::from_millis(1);
/// The longest a busy connection waits, however many there are.
const MAX_GAP: Duration = Duration::from_millis(50);

/// One delivery thread per core.
pub fn delivery_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The busy connections, shared by all of them.
#[derive(Debug)]
pub struct Pacing {
    busy: AtomicUsize,
    threads: usize,
}

impl Pacing {
    pub fn new(threads: usize) -> Arc<Pacing> {
        Arc::new(Pacing {
            busy: AtomicUsize::new(0),
            threads: threads.max(1),
        })
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// The gap between two writes of one busy connection now.
    fn gap(&self) -> Option<Duration> {
        let busy = u32::try_from(self.busy()).unwrap_or(u32::MAX);
        let threads = u32::try_from(self.threads).unwrap_or(u32::MAX);
        let gap = (SPACING.saturating_mul(busy) / threads).min(MAX_GAP);
        (gap >= MIN_GAP).then_some(gap)
    }
}

/// One connection's place in the busy count, and the gap it keeps.
/// Dropping it takes the connection off the count. A transport with a
/// timer of its own (MQTT) keeps the wait itself; the others use [`Pace`].
///
/// A connection that went quiet is seen to when its wait ends; one that
/// had no wait (the gap under [`MIN_GAP`]) stays counted until its next
/// write. Those are fewer than a [`MIN_GAP`]'s worth of connections, so
/// they lengthen the others' gap by a millisecond at most.
pub struct Busy {
    pacing: Arc<Pacing>,
    busy: bool,
}

impl Busy {
    pub fn new(pacing: &Arc<Pacing>) -> Busy {
        Busy {
            pacing: pacing.clone(),
            busy: false,
        }
    }

    /// A batch of `frames` was just written: decides whether the
    /// connection is busy and, if so, how long it waits before its next
    /// write (`None`: it writes on at once). `crowded`: the batch had
    /// filled over half the connection's outbox bound, so it writes again
    /// at once (waiting as long again could pass the bound, and the hub
    /// closes a connection that does as a slow consumer).
    pub fn wrote(&mut self, frames: usize, crowded: bool) -> Option<Duration> {
        let busy = frames >= BUSY_BATCH;
        self.set(busy);
        // A batch cut at the most one write takes left more behind, and
        // would leave as much behind after every gap.
        let full = frames >= WRITE_BATCH;
        self.pacing.gap().filter(|_| busy && !crowded && !full)
    }

    /// Nothing gathered while the connection waited: it is no longer busy.
    /// Otherwise a connection whose events stopped would count as busy
    /// until its next write, and lengthen the gap of those still busy.
    pub fn went_quiet(&mut self) {
        self.set(false);
    }

    fn set(&mut self, busy: bool) {
        if busy == self.busy {
            return;
        }
        self.busy = busy;
        if busy {
            self.pacing.busy.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pacing.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if self.busy {
            self.pacing.busy.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One connection's pace, with the timer it waits on.
pub struct Pace {
    busy: Busy,
    /// Set while the connection waits before its next write. Boxed and made
    /// on first use: most connections are never busy, and a timer is about
    /// a hundred bytes.
    wait: Option<std::pin::Pin<Box<Sleep>>>,
    waiting: bool,
}

impl Pace {
    pub fn new(pacing: &Arc<Pacing>) -> Pace {
        Pace {
            busy: Busy::new(pacing),
            wait: None,
            waiting: false,
        }
    }

    /// True while the next write has to wait ([`Pace::ready`]).
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// A batch of `frames` was just written (see [`Busy::wrote`]).
    pub fn wrote(&mut self, frames: usize, crowded: bool) {
        let Some(gap) = self.busy.wrote(frames, crowded) else {
            return;
        };
        let due = Instant::now() + gap;
        match &mut self.wait {
            Some(wait) => wait.as_mut().reset(due),
            None => self.wait = Some(Box::pin(tokio::time::sleep_until(due))),
        }
        self.waiting = true;
    }

    /// Waits until the connection may write again. Cancel-safe.
    pub async fn ready(&mut self) {
        if let Some(wait) = &mut self.wait {
            wait.as_mut().await;
        }
        self.waiting = false;
    }

    /// See [`Busy::went_quiet`].
    pub fn went_quiet(&mut self) {
        self.busy.went_quiet();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_grows_with_the_busy_connections_per_thread() {
        let pacing = Pacing::new(2);
        let set = |n| pacing.busy.store(n, Ordering::Relaxed);
        set(10);
        assert_eq!(pacing.gap(), None, "200 µs is under the timer's resolution");
        set(1000);
        assert_eq!(pacing.gap(), Some(Duration::from_millis(20)));
        set(100_000);
        assert_eq!(pacing.gap(), Some(MAX_GAP));
        let one_thread = Pacing::new(1);
        one_thread.busy.store(1000, Ordering::Relaxed);
        assert_eq!(one_thread.gap(), Some(Duration::from_millis(40)));
    }

    #[tokio::test]
    async fn a_busy_connection_waits_and_a_quiet_one_does_not() {
        let pacing = Pacing::new(1);
        let others: Vec<Pace> = (0..99)
            .map(|_| {
                let mut pace = Pace::new(&pacing);
                pace.wrote(BUSY_BATCH, false);
                pace
            })
            .collect();
        assert_eq!(pacing.busy(), 99);

        let mut pace = Pace::new(&pacing);
        pace.wrote(1, false);
        assert!(!pace.waiting(), "a small batch writes on at once");
        pace.wrote(BUSY_BATCH, false);
        assert!(pace.waiting());
        let started = Instant::now();
        pace.ready().await;
        assert!(started.elapsed() >= Duration::from_millis(4), "100 × 40 µs");
        assert!(!pace.waiting());
        pace.wrote(BUSY_BATCH, true);
        assert!(!pace.waiting(), "a crowded outbox is emptied again at once");
        pace.wrote(WRITE_BATCH, false);
        assert!(!pace.waiting(), "so is one that filled a whole write");
        assert_eq!(pacing.busy(), 100, "and the connection is still busy");

        let mut others = others;
        let mut quiet = others.split_off(49);
        for pace in &mut quiet {
            pace.went_quiet();
            pace.went_quiet();
        }
        assert_eq!(pacing.busy(), 50, "quiet connections leave the count, once");
        drop(quiet);
        assert_eq!(pacing.busy(), 50, "and do not leave it again when dropped");
        drop(others);
        assert_eq!(pacing.busy(), 1, "dropped connections leave the count");
        pace.wrote(BUSY_BATCH, false);
        assert!(!pace.waiting(), "alone, the gap is under a millisecond");
        drop(pace);
        assert_eq!(pacing.busy(), 0);
    }
}
