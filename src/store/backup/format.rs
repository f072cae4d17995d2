//! The backup file format, version 1 (integers little-endian):
//!
//! ```text
//! "PULSEBASE-BACKUP" u32 version
//! then, per tree:  0x01 u16 name-len name
//!                  0x02 u32 key-len key u32 value-len value   (per entry)
//! 0xFF u64 entry-count [32 bytes SHA-256 of every byte before them]
//! ```
//!
//! Trees come in name order, entries in key order. The checksum is checked
//! before a restore writes anything, so a truncated or damaged file is
//! refused whole. A live backup writes the same format as an offline one:
//! it differs in how the entries are read, not in what the file holds.

use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest, Sha256};

use super::{BackupError, Summary};

const MAGIC: &[u8; 16] = b"PULSEBASE-BACKUP";
const VERSION: u32 = 1;
const TREE: u8 = 0x01;
const ENTRY: u8 = 0x02;
const END: u8 = 0xFF;

/// Writes a backup file: the header, then trees and their entries, then
/// the count and checksum.
pub(super) struct FileWriter<W: Write> {
    out: Hashing<BufWriter<W>>,
    summary: Summary,
}

impl<W: Write> FileWriter<W> {
    pub fn new(out: W) -> io::Result<FileWriter<W>> {
        let mut out = Hashing::new(BufWriter::with_capacity(1 << 20, out));
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        Ok(FileWriter {
            out,
            summary: Summary::default(),
        })
    }

    /// Starts the next tree; its entries follow.
    pub fn tree(&mut self, name: &[u8]) -> Result<(), BackupError> {
        let name_len = u16::try_from(name.len())
            .map_err(|_| BackupError::Invalid("tree name too long".into()))?;
        self.out.write_all(&[TREE])?;
        self.out.write_all(&name_len.to_le_bytes())?;
        self.out.write_all(name)?;
        self.summary
            .trees
            .push((String::from_utf8_lossy(name).into_owned(), 0));
        Ok(())
    }

    pub fn entry(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.out.write_all(&[ENTRY])?;
        write_bytes(&mut self.out, key)?;
        write_bytes(&mut self.out, value)?;
        self.summary.entries += 1;
        if let Some((_, count)) = self.summary.trees.last_mut() {
            *count += 1;
        }
        Ok(())
    }

    /// Writes the count and the checksum, and flushes.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.out.write_all(&[END])?;
        self.out.write_all(&self.summary.entries.to_le_bytes())?;
        let (mut inner, digest) = self.out.finish();
        inner.write_all(&digest)?;
        inner.flush()?;
        Ok(self.summary)
    }
}

/// Walks a backup, calling `each(tree, key, value)` per entry, and checks
/// the count and checksum at the end. Entries are handed out before the
/// checksum is known: callers that must not act on a bad file verify first.
pub(super) fn read_backup(
    input: impl Read,
    mut each: impl FnMut(&str, &[u8], &[u8]) -> Result<(), BackupError>,
) -> Result<Summary, BackupError> {
    let mut input = Hashing::new(input);
    let mut magic = [0; 16];
    read_exact(&mut input, &mut magic, "the header")?;
    if &magic != MAGIC {
        return Err(BackupError::Invalid(
            "it does not start with PULSEBASE-BACKUP".into(),
        ));
    }
    let version = u32::from_le_bytes(read_array(&mut input, "the version")?);
    if version != VERSION {
        return Err(BackupError::Invalid(format!(
            "format version {version}; this pulsebase reads version {VERSION}"
        )));
    }
    let mut summary = Summary::default();
    let mut tree: Option<String> = None;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let [tag] = read_array(&mut input, "the next entry")?;
        match tag {
            TREE => {
                let len = u16::from_le_bytes(read_array(&mut input, "a tree name")?);
                let mut name = vec![0; usize::from(len)];
                read_exact(&mut input, &mut name, "a tree name")?;
                let name = String::from_utf8(name)
                    .map_err(|_| BackupError::Invalid("a tree name is not UTF-8".into()))?;
                summary.trees.push((name.clone(), 0));
                tree = Some(name);
            }
            ENTRY => {
                let Some(tree) = tree.as_deref() else {
                    return Err(BackupError::Invalid("an entry before any tree".into()));
                };
                read_bytes(&mut input, &mut key)?;
                read_bytes(&mut input, &mut value)?;
                each(tree, &key, &value)?;
                summary.entries += 1;
                if let Some((_, count)) = summary.trees.last_mut() {
                    *count += 1;
                }
            }
            END => break,
            other => {
                return Err(BackupError::Invalid(format!(
                    "unknown record tag {other:#x}"
                )));
            }
        }
    }
    let count = u64::from_le_bytes(read_array(&mut input, "the entry count")?);
    let (mut rest, digest) = input.finish();
    let mut stored = [0; 32];
    read_exact(&mut rest, &mut stored, "the checksum")?;
    if count != summary.entries || stored[..] != digest[..] {
        return Err(BackupError::Invalid("the checksum does not match".into()));
    }
    if rest.read(&mut [0; 1])? != 0 {
        return Err(BackupError::Invalid("bytes after the checksum".into()));
    }
    Ok(summary)
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "value over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

fn read_bytes(input: &mut impl Read, into: &mut Vec<u8>) -> Result<(), BackupError> {
    let len = u32::from_le_bytes(read_array(input, "a length")?) as usize;
    into.clear();
    // Read in steps rather than trusting the length for one allocation: a
    // damaged length must not ask for gigabytes.
    let got = input.take(len as u64).read_to_end(into)?;
    if got != len {
        return Err(BackupError::Invalid(
            "the file ends early (truncated?)".into(),
        ));
    }
    Ok(())
}

fn read_array<const N: usize>(input: &mut impl Read, what: &str) -> Result<[u8; N], BackupError> {
    let mut buf = [0; N];
    read_exact(input, &mut buf, what)?;
    Ok(buf)
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            BackupError::Invalid(format!("the file ends early, in {what} (truncated?)"))
        } else {
            BackupError::Io(e)
        }
    })
}

/// A reader or writer that hashes every byte passing through it.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    fn finish(self) -> (T, [u8; 32]) {
        (self.inner, self.hash.finalize().into())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}
