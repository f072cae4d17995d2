//! Backups: every tree of the database in one file, and restoring that file
//! into an empty data dir.
//!
//! A backup holds the `data` tree (records, indexes, counts, collections,
//! users, the change log) exactly as it was at one moment between two
//! writes: every write acknowledged before the backup began is in it, and
//! no write is in it by half. The `meta` and `auth` trees (settings,
//! sessions, API keys) change one key at a time outside the writer; each
//! key is copied whole.
//!
//! - Offline (no server): [`write_snapshot`] copies every tree in one go.
//! - Live (`GET /api/backup`): [`live::write`] copies `data` a chunk at a
//!   time while writes go on, and keeps it a copy of one moment with the
//!   old values writes save for it ([`preimages`]).
//!
//! The file format is in [`format`].

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use super::{Store, StoreError};

mod format;
pub mod live;
pub mod preimages;

use format::{read_backup, FileWriter};
/// The one file a restore target may already hold: an operator's config.
const ALLOWED_IN_TARGET: &str = "pulsebase.toml";
/// Entries per sled batch while restoring.
const RESTORE_BATCH: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("not a pulsebase backup, or damaged: {0}")]
    Invalid(String),
    #[error("{0}")]
    Target(String),
}

/// What a backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    /// Entries per tree, in file order.
    pub trees: Vec<(String, u64)>,
}

/// Writes every tree of `store` to `out` in one go. Only for a store no
/// one writes to (offline); a running server uses [`live::write`].
pub fn write_snapshot(store: &Store, out: impl Write) -> Result<Summary, BackupError> {
    let mut file = FileWriter::new(out)?;
    let mut names = store.db.tree_names();
    names.sort();
    for name in names {
        file.tree(&name)?;
        for entry in store.db.open_tree(&name)?.iter() {
            let (key, value) = entry?;
            file.entry(&key, &value)?;
        }
    }
    Ok(file.finish()?)
}

/// A backup of a data dir no server is using. sled locks its files, so a
/// running server's dir is refused (back that up over HTTP instead).
pub fn backup_offline(data: &Path, file: &Path) -> Result<Summary, BackupError> {
    let db_path = data.join("db");
    if !db_path.exists() {
        return Err(BackupError::Target(format!(
            "{} holds no pulsebase database",
            data.display()
        )));
    }
    let store = Store::open(&db_path).map_err(|e| {
        if crate::store::is_lock_held(&e) {
            BackupError::Target(format!(
                "{} is in use by a running server: back it up with --url",
                data.display()
            ))
        } else {
            BackupError::Store(e)
        }
    })?;
    write_atomically(file, |out| write_snapshot(&store, out))
}

/// Writes `file` through a temporary file beside it, renamed into place
/// only once complete: an interrupted backup never leaves a file that
/// looks whole.
pub fn write_atomically<T>(
    file: &Path,
    write: impl FnOnce(&mut File) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    let partial = partial_path(file);
    let result = (|| {
        // Readable too: a download is read back and verified before it is
        // renamed into place.
        let mut out = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        let value = write(&mut out)?;
        out.sync_all()?;
        Ok(value)
    })();
    match result {
        Ok(value) => {
            fs::rename(&partial, file)?;
            Ok(value)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

pub fn partial_path(file: &Path) -> std::path::PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

/// Reads a whole backup and checks its structure and checksum.
pub fn verify(input: impl Read) -> Result<Summary, BackupError> {
    read_backup(input, |_, _, _| Ok(()))
}

/// Restores `file` into `data`, which must be missing or empty (but for a
/// `pulsebase.toml`). The file is verified whole first; then the database
/// is written, flushed and opened again as the server would.
pub fn restore(file: &Path, data: &Path) -> Result<Summary, BackupError> {
    check_target(data)?;
    let summary = verify(BufReader::new(File::open(file)?))?;
    let db_path = data.join("db");
    let result = (|| {
        // One open for the whole restore: sled lets go of its lock some
        // time after a drop, so a second open right away can be refused.
        let store = Store::open(&db_path)?;
        let mut current: Option<(String, sled::Tree, sled::Batch, usize)> = None;
        read_backup(BufReader::new(File::open(file)?), |tree, key, value| {
            if current.as_ref().map(|(name, ..)| name.as_str()) != Some(tree) {
                if let Some((_, open, batch, _)) = current.take() {
                    open.apply_batch(batch)?;
                }
                current = Some((
                    tree.to_owned(),
                    store.db.open_tree(tree)?,
                    sled::Batch::default(),
                    0,
                ));
            }
            if let Some((_, open, batch, staged)) = current.as_mut() {
                batch.insert(key, value);
                *staged += 1;
                if *staged >= RESTORE_BATCH {
                    open.apply_batch(std::mem::take(batch))?;
                    *staged = 0;
                }
            }
            Ok(())
        })?;
        if let Some((_, open, batch, _)) = current.take() {
            open.apply_batch(batch)?;
        }
        // The restored log goes on from the backup's seq, which the server
        // it came from has already handed out again: clients holding those
        // seqs must resume from scratch, not from here.
        store.new_epoch()?;
        store.flush()?;
        // Loading what the server loads at start proves it decodes.
        store.load_catalog()?;
        store.load_topics()?;
        Ok(())
    })();
    if let Err(e) = result {
        // Leave the target as it was found: a half-restored dir must not be
        // mistaken for a good one.
        let _ = fs::remove_dir_all(&db_path);
        return Err(e);
    }
    Ok(summary)
}

fn check_target(data: &Path) -> Result<(), BackupError> {
    match fs::read_dir(data) {
        Ok(entries) => {
            for entry in entries {
                let name = entry?.file_name();
                if name != ALLOWED_IN_TARGET {
                    return Err(BackupError::Target(format!(
                        "{} is not empty ({} is there): restore into a new or empty data dir",
                        data.display(),
                        name.to_string_lossy()
                    )));
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(data)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_store(dir: &Path) -> Store {
        let store = Store::open(&dir.join("db")).expect("open");
        store.db.insert(b"k1", b"v1").expect("insert");
        store.meta.insert(b"secret", b"s").expect("insert");
        store.auth.insert(b"key", vec![7u8; 5000]).expect("insert");
        store
    }

    fn backup_bytes(store: &Store) -> (Vec<u8>, Summary) {
        let mut bytes = Vec::new();
        let summary = write_snapshot(store, &mut bytes).expect("snapshot");
        (bytes, summary)
    }

    #[test]
    fn a_backup_restores_every_tree_and_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, summary) = backup_bytes(&sample_store(&dir.path().join("a")));
        assert!(summary.entries >= 3);
        let file = dir.path().join("b.pbbackup");
        fs::write(&file, &bytes).expect("write");
        let restored = restore(&file, &dir.path().join("b")).expect("restore");
        assert_eq!(restored, summary);
        let store = Store::open(&dir.path().join("b/db")).expect("reopen");
        assert_eq!(
            store.auth.get(b"key").expect("get").as_deref(),
            Some(&[7u8; 5000][..])
        );
        assert_eq!(
            store.meta.get(b"secret").expect("get").as_deref(),
            Some(&b"s"[..])
        );
        assert_eq!(
            store.db.get(b"k1").expect("get").as_deref(),
            Some(&b"v1"[..])
        );
    }

    #[test]
    fn damaged_or_truncated_files_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, _) = backup_bytes(&sample_store(&dir.path().join("a")));
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0x40;
        for (name, damaged) in [
            ("flipped", flipped),
            ("truncated", bytes[..bytes.len() - 10].to_vec()),
            ("cut-in-an-entry", bytes[..bytes.len() / 3].to_vec()),
            ("empty", Vec::new()),
            (
                "not-a-backup",
                b"hello world, this is not a backup file".to_vec(),
            ),
        ] {
            let file = dir.path().join(name);
            fs::write(&file, &damaged).expect("write");
            let target = dir.path().join(format!("{name}-target"));
            let error = restore(&file, &target).expect_err(name);
            assert!(matches!(error, BackupError::Invalid(_)), "{name}: {error}");
            assert!(!target.join("db").exists(), "{name}: nothing restored");
        }
    }

    #[test]
    fn restore_refuses_a_data_dir_in_use_or_not_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (bytes, _) = backup_bytes(&sample_store(&dir.path().join("a")));
        let file = dir.path().join("x.pbbackup");
        fs::write(&file, &bytes).expect("write");
        let error = restore(&file, &dir.path().join("a")).expect_err("not empty");
        assert!(error.to_string().contains("not empty"), "{error}");
        // A pulsebase.toml alone is fine: the operator's config stays.
        let target = dir.path().join("c");
        fs::create_dir_all(&target).expect("mkdir");
        fs::write(target.join("pulsebase.toml"), "durability = \"sync\"\n").expect("write");
        restore(&file, &target).expect("restore beside a config file");
    }

    #[test]
    fn an_offline_backup_of_a_locked_data_dir_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _running = sample_store(dir.path());
        let error = backup_offline(dir.path(), &dir.path().join("out.pbbackup"))
            .expect_err("the dir is locked");
        assert!(error.to_string().contains("--url"), "{error}");
        assert!(!dir.path().join("out.pbbackup").exists());
        assert!(!partial_path(&dir.path().join("out.pbbackup")).exists());
    }
}
