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
//! The chores: the purge of a dropped collection, the walk of a collection
//! whose schema or indexes change (`writer::migration`, which the writer
//! runs itself because it answers the request), and the removal of index
//! entries that are not the collection's (an index removed, or a change
//! adding one undone or interrupted by a crash), and the merging of a
//! series collection's small blocks from quiet periods.
//!
//! Each chunk is its own sled batch. A chore's work is idempotent and its
//! marker stays until it is finished, so a crash in the middle resumes it
//! at the next start (a migration is not resumed: its request is gone, so
//! the entries it added are removed instead, see `keys::stale_index`).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{keys, Batch, Store, StoreError};

/// Keys removed (or records walked) per chunk: about a millisecond of work.
pub const CHUNK: usize = 500;
/// Overrides [`CHUNK`]: tests and benchmarks use tiny chunks so that a job
/// on a small collection still takes many chunks.
pub const CHUNK_ENV: &str = "PULSEBASE_CHORE_CHUNK";
/// Time left to writes after a chunk, as a multiple of the chunk's own.
pub(crate) const YIELD_FACTOR: u32 = 9;
/// No write for this long: the writer is idle and chunks run back to back.
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chore {
    /// Remove a dropped collection's records, index entries and count (its
    /// `p` marker says it is still to do).
    Purge(u32),
    /// Walk a collection whose definition is changing (the writer holds the
    /// migration: `writer::migration`).
    Migrate(u32),
    /// Remove one field's index entries of a collection, then its `m`
    /// marker.
    DropIndex(u32, String),
    /// Merge a series collection's newest small blocks into one
    /// (`series::merge_tail`).
    MergeSeries(u32),
}

impl Chore {
    fn kind(&self) -> &'static str {
        match self {
            Chore::Purge(_) => "purge",
            Chore::Migrate(_) => "migrate",
            Chore::DropIndex(..) => "drop_index",
            Chore::MergeSeries(_) => "merge_series",
        }
    }
}

pub struct Chores {
    queue: VecDeque<Chore>,
    /// Keys or records per chunk.
    chunk: usize,
    /// No chunk before this while writes are coming.
    next_chunk: Instant,
    last_write: Instant,
}

impl Default for Chores {
    fn default() -> Chores {
        let now = Instant::now();
        Chores {
            queue: VecDeque::new(),
            chunk: CHUNK,
            next_chunk: now,
            last_write: now,
        }
    }
}

impl Chores {
    /// The purges and index removals a previous run left unfinished, in
    /// chunks of `chunk`.
    pub fn pending(store: &Store, chunk: usize) -> Chores {
        let markers = |tag: u8| {
            store
                .data()
                .scan_prefix([tag])
                .keys()
                .filter_map(|key| key.ok())
        };
        let purges = markers(keys::PURGE)
            .filter_map(|key| key.get(1..5)?.try_into().ok().map(u32::from_be_bytes))
            .map(Chore::Purge);
        let stale = markers(keys::STALE_INDEX)
            .filter_map(|key| keys::stale_index_field(&key))
            .map(|(collection, field)| Chore::DropIndex(collection, field));
        Chores {
            queue: purges.chain(stale).collect(),
            chunk: chunk.max(1),
            ..Chores::default()
        }
    }

    /// [`CHUNK`], or the `PULSEBASE_CHORE_CHUNK` override.
    pub fn chunk_from_env() -> usize {
        std::env::var(CHUNK_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CHUNK)
    }

    pub fn chunk(&self) -> usize {
        self.chunk
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

    /// Queues `chore` unless it is queued already.
    pub fn push_once(&mut self, chore: Chore) {
        if !self.queue.contains(&chore) {
            self.queue.push_back(chore);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The chore whose chunk comes next.
    pub fn front(&self) -> Option<Chore> {
        self.queue.front().cloned()
    }

    /// Does one chunk of `chore`, unless it is the writer's own
    /// ([`Chore::Migrate`]): true once it is finished.
    pub fn run(&self, store: &Store, chore: &Chore) -> Result<bool, StoreError> {
        match chore {
            Chore::Purge(collection) => purge_chunk(store, *collection, self.chunk),
            Chore::DropIndex(collection, field) => {
                drop_index_chunk(store, *collection, field, self.chunk)
            }
            Chore::Migrate(_) => Ok(true),
            Chore::MergeSeries(collection) => store.merge_tail(*collection).map(|_| true),
        }
    }

    /// Records a chunk of the front chore, which began at `started`, and
    /// paces the next one.
    pub fn finished(&mut self, started: Instant, result: Result<bool, StoreError>) {
        let Some(chore) = self.queue.front() else {
            return;
        };
        metrics::counter!(crate::metrics::CHORE_CHUNKS, "chore" => chore.kind()).increment(1);
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

/// Removes up to `chunk` keys of a dropped collection; true once nothing
/// is left and the marker is gone.
fn purge_chunk(store: &Store, collection: u32, chunk: usize) -> Result<bool, StoreError> {
    let data = store.data();
    // `m` markers too: the index entries they name go with the rest.
    for tag in [
        keys::RECORD,
        keys::INDEX,
        keys::STALE_INDEX,
        keys::BLOCK,
        keys::SUMMARY,
        keys::IDEMPOTENCY,
    ] {
        let prefix = keys::collection_prefix(tag, collection);
        let mut batch = Batch::default();
        let mut removed = 0;
        for key in data.scan_prefix(&prefix).keys().take(chunk) {
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

/// Removes up to `chunk` index entries of one field; true once none is left
/// and the marker is gone. The entries of a field are one key range, so no
/// record is read.
fn drop_index_chunk(
    store: &Store,
    collection: u32,
    field: &str,
    chunk: usize,
) -> Result<bool, StoreError> {
    let data = store.data();
    let mut batch = Batch::default();
    let mut removed = 0;
    for key in data
        .scan_prefix(keys::index_field_prefix(collection, field))
        .keys()
        .take(chunk)
    {
        batch.remove(key?);
        removed += 1;
    }
    if removed == 0 {
        batch.remove(keys::stale_index(collection, field));
    }
    store.apply(batch)?;
    Ok(removed == 0)
}

impl Store {
    /// Index entries of one field of a collection, whether or not the
    /// collection's current version indexes it (for checks after a crash).
    pub fn index_entry_count(&self, collection: u32, field: &str) -> Result<usize, StoreError> {
        let mut n = 0;
        for key in self
            .data()
            .scan_prefix(keys::index_field_prefix(collection, field))
            .keys()
        {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// The (collection, field) pairs whose index entries are marked for
    /// removal: a reindex under way or undone, or an index removed.
    pub fn stale_indexes(&self) -> Result<Vec<(u32, String)>, StoreError> {
        let mut out = Vec::new();
        for key in self.data().scan_prefix([keys::STALE_INDEX]).keys() {
            out.extend(keys::stale_index_field(&key?));
        }
        Ok(out)
    }
}
