//! The flusher thread: one fsync (`Store::flush`) for every write group
//! waiting, then the answers that waited for it (sync mode), and the
//! durable seq moves on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::writer::{Answer, ReleaseTap, WriteError};
use super::Store;

/// A write group handed over by the writer.
pub(super) struct FlushJob {
    /// The last seq the group applied.
    pub upto: u64,
    /// Answers that wait for the fsync (sync mode).
    pub answers: Vec<Answer>,
}

pub(super) fn run(
    store: Store,
    failed: Arc<AtomicBool>,
    jobs: std_mpsc::Receiver<FlushJob>,
    interval: Duration,
    durable: watch::Sender<u64>,
    on_durable: Option<ReleaseTap>,
) {
    let mut last_flush = Instant::now();
    while let Ok(first) = jobs.recv() {
        // Relaxed mode: let writes pile up for up to `interval` so one fsync
        // covers them all, but stop waiting when the writer shuts down. Sync
        // mode: fsync at once; whatever arrived during the previous fsync is
        // already queued and joins this one.
        let mut group = vec![first];
        let deadline = last_flush + interval;
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            match jobs.recv_timeout(wait) {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        group.extend(jobs.try_iter());
        let upto = group.iter().map(|job| job.upto).max().unwrap_or(0);
        last_flush = Instant::now();
        let result = store.flush();
        metrics::histogram!(crate::metrics::FLUSH_DURATION)
            .record(last_flush.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!(crate::metrics::FLUSH_ERRORS).increment(1);
            failed.store(true, Ordering::Relaxed);
            tracing::error!(error = %e, "fsync failed; writes in this group are reported as of unknown outcome");
        } else {
            let moved = durable.send_if_modified(|seq| {
                let moved = upto > *seq;
                *seq = (*seq).max(upto);
                moved
            });
            if let (true, Some(on_durable)) = (moved, &on_durable) {
                on_durable(upto);
            }
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
        }
    }
    if let Err(e) = store.flush() {
        tracing::error!(error = %e, "final fsync failed");
    }
}
