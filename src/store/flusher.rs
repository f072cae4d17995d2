//! The flusher thread: one fsync (`Store::flush`) for every write group
//! waiting, then the answers that waited for it (sync mode), the durable
//! seq and, in relaxed mode, the durable seq reservation move on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
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

pub(super) struct Flusher {
    pub store: Store,
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

impl Flusher {
    pub fn run(self, jobs: std_mpsc::Receiver<FlushJob>) {
        let mut last_flush = Instant::now();
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
            metrics::histogram!(crate::metrics::FLUSH_DURATION)
                .record(last_flush.elapsed().as_secs_f64());
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
