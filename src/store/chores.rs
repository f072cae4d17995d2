//! Housekeeping too long to do in one go on the writer thread: the writer
//! does it in small chunks, at most one between two write groups. While
//! writes keep coming, chunks take at most a tenth of the writer's time
//! (after a chunk of d ms the next waits 9·d ms), so writes keep their
//! latency and the job takes longer; once no write has come for a while,
//! chunks run back to back. A write waits for at most one chunk, however
//! large the job (the removal of a dropped collection with a million
//! records used to hold every write until it was done; chunks of 2,000 keys
//! with no pacing still made writes during it take seconds in
//! `bench/RESULTS.md`, Drop).
//!
//! Each chunk is its own sled batch. A chore's work is idempotent and its
//! marker stays until it is finished, so a crash in the middle resumes it
//! at the next start.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{keys, Batch, Store, StoreError};

/// Keys removed per chunk: about a millisecond of work.
pub const CHUNK: usize = 500;
/// Time left to writes after a chunk, as a multiple of the chunk's own.
pub(crate) const YIELD_FACTOR: u32 = 9;
/// No write for this long: the writer is idle and chunks run back to back.
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    /// Remove a dropped collection's records, index entries and count (its
    /// `p` marker says it is still to do).
    Purge(u32),
}

pub struct Chores {
    queue: VecDeque<Chore>,
    /// No chunk before this while writes are coming.
    next_chunk: Instant,
    last_write: Instant,
}

impl Default for Chores {
    fn default() -> Chores {
        let now = Instant::now();
        Chores {
            queue: VecDeque::new(),
            next_chunk: now,
            last_write: now,
        }
    }
}

impl Chores {
    /// The purges a previous run left unfinished.
    pub fn pending(store: &Store) -> Chores {
        let queue = store
            .data()
            .scan_prefix([keys::PURGE])
            .keys()
            .filter_map(|key| key.ok())
            .filter_map(|key| key.get(1..5)?.try_into().ok().map(u32::from_be_bytes))
            .map(Chore::Purge)
            .collect();
        Chores {
            queue,
            ..Chores::default()
        }
    }

    /// A write group was just applied.
    pub fn wrote(&mut self) {
        self.last_write = Instant::now();
    }

    /// Whether a chunk may run now: always when idle, else once writes have
    /// had their share since the last one.
    pub fn due(&self) -> bool {
        let now = Instant::now();
        now >= self.next_chunk || now.duration_since(self.last_write) >= IDLE_AFTER
    }

    /// How long until [`Chores::due`] may turn true without a write.
    pub fn wait(&self) -> Duration {
        let now = Instant::now();
        let idle_at = self.last_write + IDLE_AFTER;
        self.next_chunk.min(idle_at).saturating_duration_since(now)
    }

    pub fn push(&mut self, chore: Chore) {
        self.queue.push_back(chore);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Does one chunk of the oldest chore.
    pub fn step(&mut self, store: &Store) {
        let Some(&chore) = self.queue.front() else {
            return;
        };
        let started = Instant::now();
        let result = match chore {
            Chore::Purge(collection) => purge_chunk(store, collection),
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                self.queue.pop_front();
            }
            Err(e) => {
                // Left for the next start rather than retried in a loop
                // against a failing disk.
                tracing::error!(error = %e, ?chore, "housekeeping failed; it resumes on the next start");
                self.queue.pop_front();
            }
        }
        self.next_chunk = Instant::now() + started.elapsed() * YIELD_FACTOR;
    }
}

/// Removes up to [`CHUNK`] keys of a dropped collection; true once nothing
/// is left and the marker is gone.
fn purge_chunk(store: &Store, collection: u32) -> Result<bool, StoreError> {
    let data = store.data();
    for tag in [keys::RECORD, keys::INDEX] {
        let prefix = keys::collection_prefix(tag, collection);
        let mut batch = Batch::default();
        let mut removed = 0;
        for key in data.scan_prefix(&prefix).keys().take(CHUNK) {
            batch.remove(key?);
            removed += 1;
        }
        if removed > 0 {
            store.apply(batch)?;
            return Ok(false);
        }
    }
    let mut batch = Batch::default();
    batch.remove(keys::count(collection));
    batch.remove(keys::purge(collection));
    store.apply(batch)?;
    Ok(true)
}
