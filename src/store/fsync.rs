//! Real fsyncs of sled's own files.
//!
//! sled 0.34.7's `Db::flush()` writes its log with
//! `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` (pagecache/iobuf.rs)
//! and never calls fsync on that path: the data reaches the drive, but
//! neither the drive's write cache nor the file's metadata (its size) is
//! flushed, so a power cut can lose writes that were already answered.
//! `Store::flush` therefore calls [`StorageFiles::sync`] after `db.flush()`.
//!
//! What sled writes, and when (read from its source):
//! - `db`: the log and its pages, on every flush. It only grows or is
//!   truncated (the truncation does its own `sync_all`).
//! - `blobs/<lsn>`: a value too large for a log segment (over ~128 KiB with
//!   the default 512 KiB segments), written with `create_new` and
//!   `write_all`, never fsync'd, its directory entry neither. The log entry
//!   that points to it is part of the flush, so the blob must be synced
//!   with it.
//! - `snap.<lsn>`: only when the database is opened (`PageCache::start`);
//!   sled `sync_all`s it but does not fsync the directory after renaming it
//!   into place.
//! - `conf`: written on the first open, never fsync'd.
//!
//! The handle on `db` is opened once and kept: since Linux 4.13 a writeback
//! error is reported to every descriptor that was open when it happened, so
//! a descriptor opened after the error would be told all is well. After one
//! failed sync every later one fails too: the kernel may have dropped the
//! dirty pages it could not write, and a later fsync that "succeeds" would
//! not bring them back (the PostgreSQL "fsyncgate" lesson). sled, likewise,
//! refuses writes after an I/O error until the process restarts.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

pub struct StorageFiles {
    db: Arc<File>,
    blobs_dir: PathBuf,
    blobs_dir_handle: Arc<File>,
    /// Blob files already synced, with what is known of them.
    synced_blobs: Mutex<HashMap<OsString, Blob>>,
    failed: AtomicBool,
    helpers: SyncHelpers,
}

/// A blob file as the last listing saw it.
///
/// sled writes a blob whole, once, and never changes it. It may still be
/// being written when a flush lists the directory (for a write later than
/// that flush): sled names the blob by its log reservation and writes the
/// file before the reservation completes, and `db.flush()` waits for every
/// reservation made before it started. So a blob seen in one listing is
/// complete by the next one (the next flush started after it was
/// reserved): it is checked for growth then, once, and never again. A
/// flush therefore stats only new and just-seen blobs, not every blob the
/// database has (that was a fifth of the server's CPU at 100 readings a
/// request).
#[derive(Clone, Copy)]
struct Blob {
    len: u64,
    /// Seen whole: no later listing needs to look at it.
    settled: bool,
}

impl StorageFiles {
    /// Opens sled's files in `dir` (sled's directory, already opened by
    /// sled) and makes what sled wrote while opening durable: the `conf`
    /// file, the snapshot's rename, any blob left from before, and the
    /// directory entries of `dir` itself and of everything in it.
    pub fn open(dir: &Path) -> io::Result<StorageFiles> {
        let db = Arc::new(File::open(dir.join("db"))?);
        let blobs_dir = dir.join("blobs");
        let files = StorageFiles {
            db,
            blobs_dir_handle: Arc::new(File::open(&blobs_dir)?),
            blobs_dir,
            synced_blobs: Mutex::new(HashMap::new()),
            failed: AtomicBool::new(false),
            helpers: SyncHelpers::start(SYNC_HELPERS)?,
        };
        match File::open(dir.join("conf")) {
            Ok(conf) => conf.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        files.sync()?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A data dir created just now must not vanish with its database.
            sync_dir(parent)?;
        }
        Ok(files)
    }

    /// fdatasyncs every blob written since the last call, the blobs
    /// directory if it gained entries and the `db` file, all at once (no
    /// order among them matters: `db.flush()` has already written the log
    /// that points to the blobs, and the caller answers only once all are
    /// synced). Call after `db.flush()`, which is what makes the log and
    /// its blobs complete.
    pub fn sync(&self) -> io::Result<()> {
        if self.failed.load(Ordering::SeqCst) {
            return Err(io::Error::other(
                "an earlier fsync failed; storage stays unusable until restart",
            ));
        }
        let result = self.sync_blobs_and(Some(&self.db)).map(drop);
        if result.is_err() {
            self.failed.store(true, Ordering::SeqCst);
        }
        result
    }

    #[cfg(test)]
    fn sync_blobs(&self) -> io::Result<usize> {
        self.sync_blobs_and(None)
    }

    /// Holds every fsync back (past sled's log write) while it is kept.
    #[cfg(test)]
    pub(super) fn stall_syncs(&self) -> impl Sized + '_ {
        self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Syncs the blobs written since the last call, and `also` with them;
    /// returns how many blob files it synced.
    fn sync_blobs_and(&self, also: Option<&Arc<File>>) -> io::Result<usize> {
        // Held through the fsyncs: a concurrent flush must not skip a blob
        // this one has listed but not yet synced.
        let mut synced = self.synced_blobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut present = HashMap::with_capacity(synced.len());
        let mut new_entries = false;
        let mut unsynced = Vec::new();
        for entry in std::fs::read_dir(&self.blobs_dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let known = synced.remove(&name);
            if let Some(blob) = known.filter(|blob| blob.settled) {
                present.insert(name, blob);
                continue;
            }
            // One `fstatat` through the directory; only a blob that needs a
            // sync is opened.
            let len = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // Removed by sled meanwhile: nothing left to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if known.map(|blob| blob.len) != Some(len) {
                match File::open(entry.path()) {
                    // Synced below at whatever length it has grown to.
                    Ok(file) => unsynced.push(Arc::new(file)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_entries |= known.is_none();
            }
            let settled = known.is_some();
            present.insert(name, Blob { len, settled });
        }
        let count = unsynced.len();
        let mut syncs: Vec<(Arc<File>, Sync)> = unsynced
            .into_iter()
            .chain(also.cloned())
            .map(|file| (file, Sync::Data))
            .collect();
        if new_entries {
            syncs.push((self.blobs_dir_handle.clone(), Sync::All));
        }
        self.helpers.sync_together(syncs)?;
        // Forget removed blobs, so the map stays as small as the directory.
        *synced = present;
        Ok(count)
    }
}

/// Threads kept beside the flusher to sync files alongside it.
const SYNC_HELPERS: usize = 3;

#[derive(Clone, Copy)]
enum Sync {
    /// `fdatasync`: a file's data and the size that reaches it.
    Data,
    /// `fsync`: a directory's entries.
    All,
}

impl Sync {
    fn run(self, file: &File) -> io::Result<()> {
        match self {
            Sync::Data => file.sync_data(),
            Sync::All => file.sync_all(),
        }
    }
}

type SyncJob = (Arc<File>, Sync, mpsc::Sender<io::Result<()>>);

/// Threads that sync files at the same time as the caller: the file
/// system commits its journal once for syncs that wait together, where
/// one after the other each waited for a commit of its own. They live as
/// long as the store: a thread per file per flush meant about 70 new
/// threads a second at full ingest, each leaving its allocator heap
/// behind. They stop when the store is dropped (the channel closes).
struct SyncHelpers {
    jobs: Mutex<mpsc::Sender<SyncJob>>,
}

impl SyncHelpers {
    fn start(threads: usize) -> io::Result<SyncHelpers> {
        let (jobs, queue) = mpsc::channel::<SyncJob>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("pulsebase-fsync-{n}"))
                .spawn(move || {
                    crate::priority::favour_current_thread();
                    loop {
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((file, sync, done)) = next else {
                            return;
                        };
                        let _ = done.send(sync.run(&file));
                    }
                })?;
        }
        Ok(SyncHelpers {
            jobs: Mutex::new(jobs),
        })
    }

    /// Runs every sync, the first on this thread and the rest on the
    /// helpers, and waits for all of them; the first error wins.
    fn sync_together(&self, mut syncs: Vec<(Arc<File>, Sync)>) -> io::Result<()> {
        let Some((first, first_sync)) = syncs.pop() else {
            return Ok(());
        };
        let (done, results) = mpsc::channel();
        let mut handed = 0;
        {
            let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            for (file, sync) in syncs {
                if let Err(mpsc::SendError((file, sync, _))) = jobs.send((file, sync, done.clone()))
                {
                    // No helper left (one panicked): sync it here.
                    sync.run(&file)?;
                    continue;
                }
                handed += 1;
            }
        }
        // Only the helpers' copies are left: were one to die holding a
        // job, its copy drops and `recv` fails instead of waiting forever.
        drop(done);
        let mut result = first_sync.run(&first);
        for _ in 0..handed {
            let synced = results
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("an fsync helper stopped")));
            if result.is_ok() {
                result = synced;
            }
        }
        result
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_blob_is_synced_again_if_it_grew_by_the_next_listing_and_forgotten_once_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let files = StorageFiles::open(dir.path()).unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 0);

        // Listed while sled was still writing it.
        let path = dir.path().join("blobs").join("42");
        let mut blob = File::create(&path).unwrap();
        blob.write_all(b"crc").unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 1);
        blob.write_all(b"the rest").unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 1, "it grew");
        assert_eq!(files.sync_blobs().unwrap(), 0, "nothing new");

        // Listed whole on its first listing, and seen the same on the next.
        let whole = dir.path().join("blobs").join("43");
        std::fs::write(&whole, b"all of it").unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 1);
        assert_eq!(files.sync_blobs().unwrap(), 0);

        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&whole).unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 0);
        assert!(files.synced_blobs.lock().unwrap().is_empty());
    }

    #[test]
    fn a_settled_blob_is_not_looked_at_again() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"log").unwrap();
        std::fs::create_dir(dir.path().join("blobs")).unwrap();
        let files = StorageFiles::open(dir.path()).unwrap();
        let path = dir.path().join("blobs").join("7");
        std::fs::write(&path, b"whole").unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 1);
        assert_eq!(files.sync_blobs().unwrap(), 0);
        // sled never changes a blob once a flush has waited for it; were it
        // to, the growth would go unseen: that is the listing's saving.
        std::fs::write(&path, b"whole and longer").unwrap();
        assert_eq!(files.sync_blobs().unwrap(), 0);
        assert!(files.synced_blobs.lock().unwrap()[std::ffi::OsStr::new("7")].settled);
    }
}
