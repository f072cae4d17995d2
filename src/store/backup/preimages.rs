//! What a running live backup needs from the writes made while it copies:
//! the value each key had when the backup began, saved just before the
//! first write that changes it, for the keys the copy has not reached yet
//! (keys it has passed are in the file already; later writes to them do
//! not matter).
//!
//! Values are kept in memory up to a bound, then appended to a scratch
//! file in the data dir (unlinked at once); only the keys, and where each
//! value is, stay in memory. Saving never fails a write: a failure (a full
//! disk, a read error) is kept here and fails the backup instead.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::time::Instant;

use sled::IVec;

/// How far the copy has gone: every key up to here is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Copied {
    Nothing,
    UpTo(IVec),
    All,
}

impl Copied {
    fn covers(&self, key: &[u8]) -> bool {
        match self {
            Copied::Nothing => false,
            Copied::UpTo(last) => key <= last.as_ref(),
            Copied::All => true,
        }
    }
}

/// A key's value when the backup began.
#[derive(Debug)]
enum Saved {
    /// The key did not exist: the copy must not include it.
    Absent,
    Kept(IVec),
    Spilled {
        at: u64,
        len: usize,
    },
}

/// Limits of one live backup.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of saved values kept in memory before they go to the scratch
    /// file.
    pub memory: usize,
    /// Where the scratch file goes (the data dir).
    pub scratch: PathBuf,
    /// Free space the scratch file leaves on its disk.
    pub reserve: u64,
}

pub struct Preimages {
    copied: Copied,
    saved: BTreeMap<IVec, Saved>,
    in_memory: usize,
    limits: Limits,
    spill: Option<File>,
    spilled: u64,
    /// Spilled bytes since free space was last looked at.
    unchecked: u64,
    failed: Option<String>,
    /// When a write last landed: the copy paces itself by it.
    pub(super) last_write: Instant,
    /// Values saved in all, for the log.
    pub(super) count: u64,
}

/// Free space is looked at again after this many spilled bytes.
const CHECK_EVERY: u64 = 4 << 20;

impl Preimages {
    pub(super) fn new(limits: Limits) -> Preimages {
        Preimages {
            copied: Copied::Nothing,
            saved: BTreeMap::new(),
            in_memory: 0,
            limits,
            spill: None,
            spilled: 0,
            unchecked: 0,
            failed: None,
            last_write: Instant::now(),
            count: 0,
        }
    }

    /// Called under the store's copy lock just before `keys` are written.
    pub(crate) fn save(&mut self, data: &sled::Tree, keys: &[IVec]) {
        self.last_write = Instant::now();
        if self.failed.is_some() {
            return;
        }
        for key in keys {
            if self.copied.covers(key) || self.saved.contains_key(key) {
                continue;
            }
            let saved = match data.get(key) {
                Ok(None) => Saved::Absent,
                Ok(Some(value)) => match self.keep(value) {
                    Ok(saved) => saved,
                    Err(e) => {
                        self.failed = Some(e);
                        return;
                    }
                },
                Err(e) => {
                    self.failed = Some(format!("reading a value to keep: {e}"));
                    return;
                }
            };
            self.saved.insert(key.clone(), saved);
            self.count += 1;
        }
    }

    fn keep(&mut self, value: IVec) -> Result<Saved, String> {
        if self.in_memory + value.len() <= self.limits.memory {
            self.in_memory += value.len();
            return Ok(Saved::Kept(value));
        }
        self.spill(&value)
            .map_err(|e| format!("the backup's scratch file: {e}"))
    }

    fn spill(&mut self, value: &[u8]) -> std::io::Result<Saved> {
        if self.unchecked >= CHECK_EVERY || self.spill.is_none() {
            super::live::ensure_room(&self.limits.scratch, self.limits.reserve)?;
            self.unchecked = 0;
        }
        let file = match &self.spill {
            Some(file) => file,
            None => {
                let path = self
                    .limits
                    .scratch
                    .join(format!(".backup-{}.preimages", crate::ids::generate()));
                let file = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                // Unlinked at once: a crash leaves nothing behind.
                let _ = std::fs::remove_file(&path);
                self.spill.insert(file)
            }
        };
        let at = self.spilled;
        file.write_all_at(value, at)?;
        self.spilled += value.len() as u64;
        self.unchecked += value.len() as u64;
        Ok(Saved::Spilled {
            at,
            len: value.len(),
        })
    }

    /// The failure that ends the backup, if saving failed.
    pub(super) fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Merges a chunk read from the live tree (in key order, every key
    /// after the copy's position, up to `through` or to the end when
    /// `None`) with the saved values in that range, marks the range copied
    /// and forgets those values. Returns the entries as they were when the
    /// backup began.
    pub(super) fn take_chunk(
        &mut self,
        live: Vec<(IVec, IVec)>,
        through: Option<IVec>,
    ) -> std::io::Result<Vec<(IVec, IVec)>> {
        let mut taken = std::mem::take(&mut self.saved);
        self.saved = match &through {
            Some(last) => {
                let mut rest = taken.split_off(last);
                if let Some(at_last) = rest.remove(last) {
                    taken.insert(last.clone(), at_last);
                }
                rest
            }
            None => BTreeMap::new(),
        };
        self.copied = match through {
            Some(last) => Copied::UpTo(last),
            None => Copied::All,
        };
        let mut out = Vec::with_capacity(live.len() + taken.len());
        let mut saved = taken.into_iter().peekable();
        for (key, value) in live {
            while let Some((earlier, _)) = saved.peek() {
                if earlier >= &key {
                    break;
                }
                if let Some((earlier, old)) = saved.next() {
                    self.push_old(&mut out, earlier, old)?;
                }
            }
            match saved.peek() {
                Some((same, _)) if same == &key => {
                    if let Some((key, old)) = saved.next() {
                        self.push_old(&mut out, key, old)?;
                    }
                }
                _ => out.push((key, value)),
            }
        }
        for (key, old) in saved {
            self.push_old(&mut out, key, old)?;
        }
        Ok(out)
    }

    fn push_old(
        &mut self,
        out: &mut Vec<(IVec, IVec)>,
        key: IVec,
        old: Saved,
    ) -> std::io::Result<()> {
        match old {
            Saved::Absent => {}
            Saved::Kept(value) => {
                self.in_memory -= value.len();
                out.push((key, value));
            }
            Saved::Spilled { at, len } => {
                let file = self.spill.as_ref().ok_or_else(|| {
                    std::io::Error::other("a spilled value without a scratch file")
                })?;
                let mut value = vec![0; len];
                file.read_exact_at(&mut value, at)?;
                out.push((key, IVec::from(value)));
            }
        }
        Ok(())
    }
}
