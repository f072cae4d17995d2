//! A backup of a running server that does not stop its writes.
//!
//! The `data` tree is copied in key order a chunk at a time, on the
//! caller's thread, while the writer goes on. To still hold the tree as it
//! was at one moment, the backup starts by installing [`Preimages`] under
//! the store's copy lock, which every write to `data` takes too
//! (`Store::apply`): from then on, a write first saves the old value of
//! each key it changes that the copy has not reached yet, and the copy
//! takes saved values over what it finds. Keys the copy has passed are in
//! the file already. So the file is the tree exactly as it was when the
//! lock was taken: between two writes, with every write acknowledged
//! before the request in it (writes are answered only once applied).
//!
//! Why this and not a fuzzy copy replayed from the change log up to a
//! final seq: the log does not hold everything a write changes (users'
//! password hashes, topics and their history, collection definitions and
//! counters are not in it), so a replay would need a second, blocking copy
//! of those at the end and a restore that rebuilds indexes and counts.
//! Saving old values keeps every key exact, keeps the file format and
//! restore as they were, and costs a write one extra read per key only
//! while a backup runs and only for keys not yet copied.
//!
//! Pacing is the housekeeping chores' (see `chores`): while writes come, a
//! chunk of d ms is followed by 9·d ms left to them; once no write has come
//! for 200 ms, chunks run back to back. A write waits for at most one
//! chunk's read of the tree (the lock is not held while the file is
//! written).

use std::io::{self, Write};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sled::IVec;

use super::format::FileWriter;
use super::preimages::{Limits, Preimages};
use super::{BackupError, Summary};
use crate::store::chores::{IDLE_AFTER, YIELD_FACTOR};
use crate::store::Store;

/// Entries of `data` read per chunk: well under a millisecond.
pub const CHUNK: usize = 1_000;
/// Saved old values kept in memory before they go to a scratch file.
pub const MEMORY: usize = 64 << 20;
/// Free space scratch files leave on the data dir's disk: sled refuses
/// every write after one failed flush until the process restarts, so a
/// backup must not be what fills the disk.
pub const DISK_RESERVE: u64 = 64 << 20;

/// The store's side of live backups: the old values of a running one, and
/// a lock that runs backups one after the other.
#[derive(Default)]
pub struct Copying {
    running: Mutex<Option<Preimages>>,
    one_at_a_time: Mutex<()>,
}

impl Copying {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Option<Preimages>> {
        // Every change under this lock is a single assignment or a map
        // insert; a panic cannot leave it half-made.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub chunk: usize,
    pub limits: Limits,
}

impl Options {
    /// The defaults, with scratch files in `scratch` (the data dir).
    pub fn new(scratch: &Path) -> Options {
        Options {
            chunk: CHUNK,
            limits: Limits {
                memory: MEMORY,
                scratch: scratch.to_owned(),
                reserve: DISK_RESERVE,
            },
        }
    }
}

/// How a live backup went, for the log.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub chunks: u64,
    /// The longest time writes could have waited for the copy.
    pub longest_hold: Duration,
    /// Old values saved by writes made during the backup.
    pub saved: u64,
}

/// Writes a backup of `store`, which a writer may be changing, to `out`.
/// `go_on` is asked after each chunk: a shutdown must not wait for a
/// backup that may take minutes.
pub fn write(
    store: &Store,
    out: impl Write,
    options: &Options,
    go_on: impl Fn() -> bool,
) -> Result<(Summary, Stats), BackupError> {
    write_with(store, out, options, |_| go_on())
}

/// [`write`], calling `after_chunk(chunks done)` after each chunk of
/// `data`, which stops the backup by answering false (tests hold the copy
/// there).
pub(crate) fn write_with(
    store: &Store,
    out: impl Write,
    options: &Options,
    mut after_chunk: impl FnMut(u64) -> bool,
) -> Result<(Summary, Stats), BackupError> {
    let copying = &store.copying;
    let _one = copying
        .one_at_a_time
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    // From here on the `data` tree is copied as it is now.
    *copying.lock() = Some(Preimages::new(options.limits.clone()));
    let _stop = Stop(copying);
    let mut file = FileWriter::new(out)?;
    let mut stats = Stats::default();
    let mut names = store.db.tree_names();
    names.sort();
    for name in names {
        file.tree(&name)?;
        if name == "data" {
            copy_data(
                store,
                &mut file,
                options.chunk,
                &mut stats,
                &mut after_chunk,
            )?;
            continue;
        }
        for entry in store.db.open_tree(&name)?.iter() {
            let (key, value) = entry?;
            file.entry(&key, &value)?;
        }
    }
    stats.saved = copying.lock().as_ref().map_or(0, |p| p.count);
    Ok((file.finish()?, stats))
}

/// Ends the saving of old values however the backup ends.
struct Stop<'a>(&'a Copying);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        *self.0.lock() = None;
    }
}

fn copy_data<W: Write>(
    store: &Store,
    file: &mut FileWriter<W>,
    chunk: usize,
    stats: &mut Stats,
    after_chunk: &mut impl FnMut(u64) -> bool,
) -> Result<(), BackupError> {
    let mut after: Option<IVec> = None;
    let mut pace = Pace {
        next: Instant::now(),
    };
    loop {
        pace.wait(&store.copying);
        let started = Instant::now();
        let (entries, done) = {
            let mut running = store.copying.lock();
            let preimages = running
                .as_mut()
                .ok_or_else(|| BackupError::Invalid("the backup was stopped".into()))?;
            if let Some(failure) = preimages.failure() {
                return Err(io::Error::other(failure.to_owned()).into());
            }
            let range = match &after {
                None => (Bound::Unbounded, Bound::Unbounded),
                Some(last) => (Bound::Excluded(last.clone()), Bound::Unbounded),
            };
            let live = store
                .data
                .range::<IVec, _>(range)
                .take(chunk)
                .collect::<Result<Vec<_>, _>>()?;
            let done = live.len() < chunk;
            let through = if done {
                None
            } else {
                live.last().map(|(key, _)| key.clone())
            };
            after.clone_from(&through);
            (preimages.take_chunk(live, through)?, done)
        };
        let held = started.elapsed();
        stats.longest_hold = stats.longest_hold.max(held);
        for (key, value) in &entries {
            file.entry(key, value)?;
        }
        stats.chunks += 1;
        if !after_chunk(stats.chunks) {
            return Err(BackupError::Target("the server is shutting down".into()));
        }
        pace.took(started.elapsed());
        if done {
            return Ok(());
        }
    }
}

/// The chores' pacing (see `chores`), driven by the writes the copy sees.
struct Pace {
    next: Instant,
}

impl Pace {
    /// Waits until writes have had their share since the last chunk, or
    /// none has come for a while.
    fn wait(&self, copying: &Copying) {
        loop {
            let Some(last_write) = copying.lock().as_ref().map(|p| p.last_write) else {
                return;
            };
            let now = Instant::now();
            let idle_at = last_write + IDLE_AFTER;
            if now >= self.next || now >= idle_at {
                return;
            }
            std::thread::sleep(self.next.min(idle_at) - now);
        }
    }

    fn took(&mut self, chunk: Duration) {
        self.next = Instant::now() + chunk * YIELD_FACTOR;
    }
}

/// Refuses to go on when less than `reserve` bytes are free on `dir`'s disk.
pub fn ensure_room(dir: &Path, reserve: u64) -> io::Result<()> {
    let free = fs2::available_space(dir)?;
    if free < reserve {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "only {} MiB free on the data disk; a backup leaves at least {} MiB free for the database",
                free >> 20,
                reserve >> 20
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
