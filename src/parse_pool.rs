//! A few threads, one per core, that parse and check request bodies too
//! large to handle on an async worker (batches of readings or records).
//!
//! tokio's blocking pool would also keep the async workers free, but it
//! starts a thread per concurrent job: eight clients posting batches kept
//! ten or more threads parsing at once, each with its own allocator heap
//! holding freed pages, for no gain on a machine with two cores. Here a
//! batch waits in the queue (as the bytes it arrived in) until a parser is
//! free, so the readings being built at any moment are bounded by the
//! number of cores, and so is the memory they take.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

/// Bodies larger than this are parsed on a parser thread, so a large
/// batch does not hold an async worker (a millisecond or more).
pub const INLINE_BYTES: usize = 16 * 1024;

type Job = Box<dyn FnOnce() + Send>;

pub struct ParsePool {
    jobs: mpsc::Sender<Job>,
}

/// The job panicked, or no parser thread is left to run it.
#[derive(Debug, thiserror::Error)]
#[error("the parser thread failed: {0}")]
pub struct ParseFailed(String);

impl ParsePool {
    /// One thread per core the process may use (at least one).
    pub fn new() -> std::io::Result<ParsePool> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParsePool::with_threads(threads)
    }

    pub fn with_threads(threads: usize) -> std::io::Result<ParsePool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("pulsebase-parse-{i}"))
                .spawn(move || loop {
                    // The lock is held only to take the next job, never
                    // while running it.
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match next {
                        Ok(job) => job(),
                        // Every sender is gone: the server is shutting down.
                        Err(_) => return,
                    }
                })?;
        }
        Ok(ParsePool { jobs })
    }

    /// Runs `work` on a parser thread and waits for its result without
    /// blocking the async worker. A panic in `work` becomes an error for
    /// this request only; the thread goes on with the next job.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ParseFailed> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(work));
            // The request may have gone away meanwhile; nobody to tell.
            let _ = done.send(outcome);
        });
        self.jobs
            .send(job)
            .map_err(|_| ParseFailed("no parser thread is running".into()))?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(ParseFailed(panic_message(&panic))),
            Err(_) => Err(ParseFailed("the job was dropped".into())),
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_a_panicking_one() {
        let pool = ParsePool::with_threads(1).unwrap();
        assert_eq!(pool.run(|| 2 + 2).await.unwrap(), 4);
        let failed = pool.run(|| -> u32 { panic!("bad batch") }).await;
        assert!(failed.unwrap_err().to_string().contains("bad batch"));
        // The one thread is still there for the next job.
        assert_eq!(pool.run(|| "next").await.unwrap(), "next");
    }

    #[tokio::test]
    async fn never_runs_more_jobs_at_once_than_it_has_threads() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pool = Arc::new(ParsePool::with_threads(2).unwrap());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                    .unwrap()
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
