//! The flusher thread: one fsync (`Store::flush`) for every write group
//! waiting, then the answers that waited for it (sync mode), the durable
//! seq and, in relaxed mode, the durable seq reservation move on.
//!
//! The writer hands groups over through a [`FlushQueue`], which knows
//! whether an fsync is under way: in sync mode the writer holds its next
//! group back until it is done (see `writer`'s module docs for why).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::seqs::Gate;
use super::writer::{Answer, ReleaseTap, WriteError};
use super::Store;
use crate::series::Reading;

/// A write group handed over by the writer.
pub(super) struct FlushJob {
    /// The last seq the group applied.
    pub upto: u64,
    /// Answers that wait for the fsync (sync mode).
    pub answers: Vec<Answer>,
    /// Freed here, after the answers (see `Answers::spent`).
    pub spent: Vec<Vec<Reading>>,
    /// The seq reservation mark written before the group was handed over.
    pub mark: u64,
    /// Events wait for this fsync (relaxed mode, see `seqs`): do not wait
    /// for `flush_ms`.
    pub urgent: bool,
}

/// The writer's end of the flusher's queue.
pub(super) struct FlushQueue {
    jobs: std_mpsc::Sender<FlushJob>,
    in_flight: Arc<InFlight>,
}

impl FlushQueue {
    /// The queue, the flusher's end of it, and the count the flusher keeps
    /// (give it to [`Flusher::in_flight`]).
    pub fn new() -> (FlushQueue, std_mpsc::Receiver<FlushJob>, Arc<InFlight>) {
        let (jobs, received) = std_mpsc::channel();
        let in_flight = Arc::new(InFlight::default());
        let queue = FlushQueue {
            jobs,
            in_flight: in_flight.clone(),
        };
        (queue, received, in_flight)
    }

    pub fn send(&self, job: FlushJob) -> Result<(), std_mpsc::SendError<FlushJob>> {
        self.in_flight.change(|count| count.groups += 1);
        self.jobs.send(job).inspect_err(|_| {
            self.in_flight
                .change(|count| count.groups = count.groups.saturating_sub(1));
        })
    }

    /// Returns once no group handed over waits for its fsync (at once if
    /// the flusher has stopped), unless applying a request takes the
    /// writer (`apply_per_request`, as last measured) over a quarter of
    /// the last fsync's time: then the writer's work overlapping the disk's
    /// is worth more than the sled batches a held group saves (requests of
    /// a thousand readings each ingested 12-20 % less when held).
    pub fn wait_idle(&self, apply_per_request: Duration) {
        let count = self.in_flight.lock();
        if apply_per_request.saturating_mul(HOLD_RATIO) >= count.last_fsync {
            return;
        }
        let _idle = self
            .in_flight
            .idle
            .wait_while(count, |count| count.groups > 0 && !count.stopped)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// See [`FlushQueue::wait_idle`].
const HOLD_RATIO: u32 = 4;

/// Groups handed to the flusher whose fsync has not ended yet.
#[derive(Default)]
pub(super) struct InFlight {
    count: Mutex<Count>,
    idle: Condvar,
}

#[derive(Default)]
struct Count {
    groups: usize,
    stopped: bool,
    /// How long the last fsync took.
    last_fsync: Duration,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, Count> {
        self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn change(&self, change: impl FnOnce(&mut Count)) {
        let mut count = self.lock();
        change(&mut count);
        if count.groups == 0 || count.stopped {
            self.idle.notify_all();
        }
    }
}

/// Tells a waiting writer the flusher is gone, however its thread ends.
struct Stopped(Arc<InFlight>);

impl Drop for Stopped {
    fn drop(&mut self) {
        self.0.change(|count| count.stopped = true);
    }
}

pub(super) struct Flusher {
    pub store: Store,
    /// Counted down as each fsync ends (see [`FlushQueue`]).
    pub in_flight: Arc<InFlight>,
    pub failed: Arc<AtomicBool>,
    /// Relaxed mode's `flush_ms`; zero in sync mode.
    pub interval: Duration,
    pub durable: watch::Sender<u64>,
    /// Sync mode: hears each new durable seq.
    pub on_durable: Option<ReleaseTap>,
    /// Sync mode: the durable seq reservation mark, raised after each
    /// fsync (relaxed mode's gate raises it itself).
    pub durable_mark: Option<Arc<AtomicU64>>,
    /// Relaxed mode: the gate the stored marks open, and who hears it.
    pub relaxed: Option<(Gate, Option<ReleaseTap>)>,
}

/// sled writes its log on threads of its own pool, named `sled-io-N`,
/// and every fsync here waits for one of them. With a normal time slice a
/// woken one waited behind whatever ran (delivery, a load generator): at
/// 1000 subscribers and 1000 writes a second the short slice took the
/// write p50 from 0.88-1.07 ms to 0.74-0.88 ms (bench/RESULTS.md). The
/// pool starts with sled's first log write, so they are looked for after
/// each fsync until found (a bounded number of times: without /proc they
/// never will be); the extra threads sled starts for a while when its
/// queue is long are not covered.
const SLED_IO_THREADS: &str = "sled-io-";
const SLED_IO_LOOKS: u32 = 100;

impl Flusher {
    pub fn run(self, jobs: std_mpsc::Receiver<FlushJob>) {
        let mut last_flush = Instant::now();
        let mut sled_io_looks_left = SLED_IO_LOOKS;
        let _stopped = Stopped(self.in_flight.clone());
        while let Ok(first) = jobs.recv() {
            // Relaxed mode: let writes pile up for up to `interval` so one
            // fsync covers them all, but stop waiting when the writer shuts
            // down or events wait. Sync mode: fsync at once; whatever
            // arrived during the previous fsync is already queued and joins
            // this one.
            let mut urgent = first.urgent;
            let mut group = vec![first];
            let deadline = last_flush + self.interval;
            while !urgent {
                let wait = deadline.saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    break;
                }
                match jobs.recv_timeout(wait) {
                    Ok(job) => {
                        urgent = job.urgent;
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            group.extend(jobs.try_iter());
            let upto = group.iter().map(|job| job.upto).max().unwrap_or(0);
            let mark = group.iter().map(|job| job.mark).max().unwrap_or(0);
            last_flush = Instant::now();
            let result = self.store.flush();
            let took = last_flush.elapsed();
            let groups = group.len();
            self.in_flight.change(|count| {
                count.groups = count.groups.saturating_sub(groups);
                count.last_fsync = took;
            });
            metrics::histogram!(crate::metrics::FLUSH_DURATION).record(took.as_secs_f64());
            if sled_io_looks_left > 0 {
                let found = crate::priority::favour_threads_named(SLED_IO_THREADS);
                sled_io_looks_left = if found > 0 { 0 } else { sled_io_looks_left - 1 };
            }
            match &result {
                Err(e) => {
                    metrics::counter!(crate::metrics::FLUSH_ERRORS).increment(1);
                    self.failed.store(true, Ordering::Relaxed);
                    tracing::error!(error = %e, "fsync failed; writes in this group are reported as of unknown outcome");
                }
                Ok(()) => self.stored(upto, mark),
            }
            for job in group {
                for (reply, answer) in job.answers {
                    let answer = if result.is_ok() {
                        answer
                    } else {
                        Err(WriteError::NotDurable)
                    };
                    let _ = reply.send(answer);
                }
                drop(job.spent);
            }
        }
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final fsync failed");
        }
    }

    /// After a good fsync: seqs up to `upto` and the reservation `mark` are
    /// on disk.
    fn stored(&self, upto: u64, mark: u64) {
        let moved = self.durable.send_if_modified(|seq| {
            let moved = upto > *seq;
            *seq = (*seq).max(upto);
            moved
        });
        if let (true, Some(on_durable)) = (moved, &self.on_durable) {
            on_durable(upto);
        }
        if let Some(durable_mark) = &self.durable_mark {
            durable_mark.fetch_max(mark, Ordering::SeqCst);
        }
        if let Some((gate, released)) = &self.relaxed {
            if let (Some(open), Some(released)) = (gate.marked(mark), released) {
                released(open);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Durability;
    use crate::model::User;
    use crate::store::writer::{Mutation, Writer};
    use crate::store::Store;

    fn user(n: usize) -> Mutation {
        Mutation::CreateUser(User {
            id: format!("u{n}"),
            email: format!("u{n}@example.com"),
            ..User::plain()
        })
    }

    /// Starts a writer, has one write's fsync stall, sends `more` writes
    /// meanwhile and gives them time to be applied. Returns the seq
    /// committed before they were sent and the one after that time (the
    /// stall still holding), then lets the fsync go and waits for all.
    async fn writes_during_a_stalled_fsync(durability: Durability, more: usize) -> (u64, u64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("store");
        let writer = Writer::start(store.clone(), durability, 0, None).expect("writer");
        // A first fsync that takes 100 ms: the writer holds a group back
        // only when its requests take under a quarter of the last fsync to
        // apply, and a user takes far less than 25 ms.
        let stall = store.files.stall_syncs();
        let slow = tokio::spawn({
            let writer = writer.clone();
            async move { writer.submit(user(0)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stall);
        slow.await.expect("task").expect("first write");
        let stall = store.files.stall_syncs();
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.submit(user(1)).await }
        });
        let mut committed = writer.committed_seq();
        let before = *committed.borrow();
        // Until the first stalled write is applied (its fsync then waits).
        let applied = committed.wait_for(|seq| *seq > before);
        let seen = *tokio::time::timeout(Duration::from_secs(10), applied)
            .await
            .expect("the write after the first one was never applied")
            .expect("writer");
        let during: Vec<_> = (2..2 + more)
            .map(|n| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.submit(user(n)).await })
            })
            .collect();
        // Long enough for all to be applied, had they not been held.
        let all = committed.wait_for(|seq| *seq >= seen + more as u64);
        let _ = tokio::time::timeout(Duration::from_secs(2), all).await;
        let held = *writer.committed_seq().borrow();
        drop(stall);
        first.await.expect("task").expect("the first stalled write");
        for write in during {
            write
                .await
                .expect("task")
                .expect("a write sent during the fsync");
        }
        writer.shutdown().await;
        (seen, held)
    }

    /// The writer holds back only requests that are quick to apply next
    /// to an fsync; slower ones are applied while it runs.
    #[test]
    fn only_requests_quick_to_apply_wait_for_the_fsync() {
        use super::FlushQueue;
        use std::sync::Arc;
        let (queue, _jobs, in_flight) = FlushQueue::new();
        let queue = Arc::new(queue);
        in_flight.change(|count| {
            count.groups = 1;
            count.last_fsync = Duration::from_millis(4);
        });
        let wait = |apply: Duration| {
            let queue = queue.clone();
            std::thread::spawn(move || queue.wait_idle(apply))
        };
        let slow = wait(Duration::from_millis(1));
        let quick = wait(Duration::from_micros(10));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !slow.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "a slow request waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!quick.is_finished(), "a quick request did not wait");
        in_flight.change(|count| count.groups = 0);
        quick.join().expect("released when the fsync ends");
    }

    /// In sync mode a write waits for the fsync after it anyway: the ones
    /// that arrive while an fsync runs are held back and applied together
    /// once it ends (one sled batch, whose log writes are what costs).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_writes_that_arrive_during_an_fsync_wait_for_it_to_end() {
        let (applied, held) = writes_during_a_stalled_fsync(Durability::Sync, 20).await;
        assert_eq!(held, applied, "writes applied while an fsync ran");
    }

    /// In relaxed mode a caller hears back once the write is applied: a
    /// slow fsync must not hold it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relaxed_writes_are_applied_while_an_fsync_runs() {
        let (applied, held) = writes_during_a_stalled_fsync(Durability::Relaxed, 20).await;
        assert_eq!(held, applied + 20, "writes held back by an fsync");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use crate::config::Durability;
    use crate::store::writer::{Mutation, Writer};
    use crate::store::Store;

    /// sled's log-writing threads get the short slice once a write has
    /// been flushed (kernels without per-thread slices show none).
    #[tokio::test]
    async fn sleds_log_threads_get_the_short_slice_after_a_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("store");
        let writer = Writer::start(store, Durability::Sync, 0, None).expect("writer");
        let user = crate::store::tests::plain_user();
        writer
            .submit(Mutation::CreateUser(user))
            .await
            .expect("written and flushed");
        // sled names its threads by spawn order: the first seven are the
        // pool's permanent ones. Later ones come and go while its queue is
        // long (other tests in this process) and may have started after
        // the flusher looked.
        let permanent = |name: &str| {
            name.trim_start_matches(super::SLED_IO_THREADS)
                .parse::<u32>()
                .is_ok_and(|n| n < 7)
        };
        let slices: Vec<_> = crate::priority::slices_of_threads_named(super::SLED_IO_THREADS)
            .into_iter()
            .filter(|(name, _)| permanent(name))
            .collect();
        writer.shutdown().await;
        assert_eq!(slices.len(), 7, "sled's permanent I/O threads: {slices:?}");
        if !crate::priority::short_slices_allowed() {
            eprintln!("sched_setattr refused here: nothing to check");
            return;
        }
        for (name, slice) in slices {
            if let Some(slice) = slice {
                assert_eq!(slice, crate::priority::SHORT_SLICE_NS, "{name}");
            }
        }
    }
}
