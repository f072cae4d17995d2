//! The size of sled's log segments, chosen when a database is created.
//!
//! sled writes a page (a tree node with its keys and values) inline in its
//! log when it is under a quarter of a segment and as a file of its own
//! (`blobs/`) otherwise. Inline pages are copied again whenever segment
//! cleaning relocates them; a blob is written once and only its pointer
//! moves. Series leaves hold several blocks of kilobytes each, and with
//! sled's default 512 KiB segments they stayed inline: measured on the
//! series writer's pattern (1000-reading blocks, a flush and fdatasync per
//! block), 64 KiB segments wrote about 45 bytes per reading where 512 KiB
//! wrote 80 to 115, blobs and their fsyncs included.
//!
//! sled refuses to open a database with another segment size than the one
//! it was made with, so an existing database keeps the size in its `conf`.

use std::path::Path;

/// For databases created from now on.
pub const NEW_SEGMENT_BYTES: usize = 64 * 1024;
/// sled's default, which databases made before had.
const SLED_DEFAULT: usize = 512 * 1024;

/// The segment size to open the database at `dir` with.
pub fn segment_size(dir: &Path) -> usize {
    match std::fs::read(dir.join("conf")) {
        Ok(conf) => recorded(&conf).unwrap_or(SLED_DEFAULT),
        Err(_) => NEW_SEGMENT_BYTES,
    }
}

/// The `segment_size: N` line of sled's `conf` (text lines, then a CRC).
fn recorded(conf: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(conf)
        .lines()
        .find_map(|line| line.strip_prefix("segment_size:"))
        .and_then(|n| n.trim().parse().ok())
        .filter(|n: &usize| n.is_power_of_two())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_small_segments_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("db");
        assert_eq!(segment_size(&db_dir), NEW_SEGMENT_BYTES);
        // Made with sled's default, as every database before this change.
        drop(sled::Config::new().path(&db_dir).open().unwrap());
        assert_eq!(segment_size(&db_dir), SLED_DEFAULT);
        let db = sled::Config::new()
            .path(&db_dir)
            .segment_size(segment_size(&db_dir))
            .open();
        assert!(db.is_ok(), "reopens with the size it was made with");
    }
}
