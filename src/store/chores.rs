//! Housekeeping too long to do in one go on the writer thread: the writer
//! does one bounded chunk between two write groups, and keeps going while
//! it has nothing else to do. A write therefore waits for at most one chunk,
//! however large the job (the removal of a dropped collection with a
//! million records used to hold every write until it was done).
//!
//! Each chunk is its own sled batch. A chore's work is idempotent and its
//! marker stays until it is finished, so a crash in the middle resumes it
//! at the next start.

use std::collections::VecDeque;

use super::{keys, Store, StoreError};

/// Keys removed per chunk: a few milliseconds of work.
pub const CHUNK: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chore {
    /// Remove a dropped collection's records, index entries and count (its
    /// `p` marker says it is still to do).
    Purge(u32),
}

#[derive(Default)]
pub struct Chores {
    queue: VecDeque<Chore>,
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
        Chores { queue }
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
    }
}

/// Removes up to [`CHUNK`] keys of a dropped collection; true once nothing
/// is left and the marker is gone.
fn purge_chunk(store: &Store, collection: u32) -> Result<bool, StoreError> {
    let data = store.data();
    for tag in [keys::RECORD, keys::INDEX] {
        let prefix = keys::collection_prefix(tag, collection);
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in data.scan_prefix(&prefix).keys().take(CHUNK) {
            batch.remove(key?);
            removed += 1;
        }
        if removed > 0 {
            data.apply_batch(batch)?;
            return Ok(false);
        }
    }
    let mut batch = sled::Batch::default();
    batch.remove(keys::count(collection));
    batch.remove(keys::purge(collection));
    data.apply_batch(batch)?;
    Ok(true)
}
