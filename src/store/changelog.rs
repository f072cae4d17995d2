//! The change log: every change under `c` + seq, indexed by collection
//! under `x` + collection id + seq, with its epoch and its trimmed point.
//! Realtime delivery (through sled's `watch_prefix` on `c`) and replay read
//! it; the writer appends to it (`append`, in the write's own batch), and
//! the retention task trims its bottom. No other code touches these keys.

use super::change::Change;
use super::{keys, Batch, Store, StoreError};

const EPOCH_KEY: &str = "epoch";

/// Adds a change to a write's batch under its seq, with its entry in its
/// collection's index; the seq is the key, not part of the value.
pub(super) fn append(batch: &mut Batch, seq: u64, collection_id: u32, encoded: &[u8]) {
    batch.insert(&keys::change(seq)[..], encoded);
    batch.insert(&keys::change_by_collection(collection_id, seq)[..], &[]);
}

impl Store {
    /// Loads the epoch (a new data dir gets one) and brings a log written
    /// by an older build up to date. Runs at open, before the writer.
    pub(super) fn open_changelog(&self) -> Result<(), StoreError> {
        match self.meta.get(EPOCH_KEY)? {
            Some(epoch) => *self.epoch_mut() = String::from_utf8_lossy(&epoch).into_owned(),
            None => self.new_epoch()?,
        }
        self.upgrade_changelog()
    }

    /// Rewrites change-log entries of version 1 (which named collections
    /// only by name) with their collection's id. They are the oldest
    /// entries, so this stops at the first current one; it runs before the
    /// writer starts.
    fn upgrade_changelog(&self) -> Result<(), StoreError> {
        let mut upgraded = 0_u64;
        for entry in self.data.scan_prefix([keys::CHANGE]) {
            let (key, value) = entry?;
            if !Change::is_v1(&value) {
                break;
            }
            let mut change = Change::decode(&value)?;
            let now_named = self.catalog.get(&change.collection).map(|c| {
                let created_ms = crate::clock::parse_ms(&c.created).unwrap_or(i64::MAX);
                (c.id, created_ms)
            });
            change.upgrade(now_named);
            self.data.insert(key, change.encode())?;
            upgraded += 1;
        }
        if upgraded > 0 {
            self.flush()?;
            tracing::info!(upgraded, "change log entries now name collections by id");
        }
        self.index_changelog()
    }

    /// Gives every change-log entry its key in its collection's index, once
    /// for a data dir written before the index existed.
    fn index_changelog(&self) -> Result<(), StoreError> {
        if self.data.contains_key(keys::CHANGELOG_INDEXED)? {
            return Ok(());
        }
        let mut batch = Batch::default();
        let mut indexed = 0_u64;
        for change in self.changes_after(0) {
            let change = change?;
            batch.insert(
                &keys::change_by_collection(change.collection_id, change.seq)[..],
                &[],
            );
            indexed += 1;
            if indexed % 10_000 == 0 {
                self.apply(std::mem::take(&mut batch))?;
            }
        }
        batch.insert(keys::CHANGELOG_INDEXED, &[]);
        self.apply(batch)?;
        self.flush()?;
        if indexed > 0 {
            tracing::info!(indexed, "change log indexed by collection");
        }
        Ok(())
    }

    /// Seqs of a collection's changes with `after < seq <= upto`, in order,
    /// at most `limit`; first, the entry of a block of readings that
    /// starts at or before `after` and ends past it.
    pub fn collection_changes(
        &self,
        collection: u32,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let start = keys::change_by_collection(collection, after.saturating_add(1));
        let end = keys::change_by_collection(collection, upto);
        let seq_of = |key: sled::IVec| {
            keys::change_by_collection_seq(&key)
                .ok_or_else(|| StoreError::Corrupt("change index key".into()))
        };
        let mut seqs = Vec::with_capacity(limit.min(1024));
        // A resume from inside a block of readings starts with that block.
        let before = keys::change_by_collection(collection, 0)..start;
        if let Some(key) = self.data.range(before).keys().next_back() {
            let seq = seq_of(key?)?;
            if self.change_at(seq)?.is_some_and(|c| c.through > after) {
                seqs.push(seq);
            }
        }
        for key in self.data.range(start..=end).keys() {
            if seqs.len() >= limit {
                break;
            }
            seqs.push(seq_of(key?)?);
        }
        Ok(seqs)
    }

    /// The change-log entry at `seq`, if it is still kept.
    pub fn change_at(&self, seq: u64) -> Result<Option<Change>, StoreError> {
        match self.data.get(keys::change(seq))? {
            None => Ok(None),
            Some(value) => Ok(Some(Change::decode(&value)?.at(seq))),
        }
    }

    /// When the newest change at or before `seq` was made: about when a
    /// subscriber that had seen up to `seq` was last up to date (no later).
    /// `None` when the log no longer reaches back that far.
    pub fn change_time_through(&self, seq: u64) -> Result<Option<i64>, StoreError> {
        let range = keys::change(0)..=keys::change(seq);
        let Some(entry) = self.data.range(range).next_back() else {
            return Ok(None);
        };
        let (_, value) = entry?;
        Ok(Some(Change::decode(&value)?.ts_ms))
    }

    /// The change log's epoch (see `welcome` in docs/realtime.md).
    pub fn epoch(&self) -> String {
        self.epoch.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn epoch_mut(&self) -> std::sync::RwLockWriteGuard<'_, String> {
        self.epoch.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new history: seqs handed out before it mean nothing now.
    pub(crate) fn new_epoch(&self) -> Result<(), StoreError> {
        let epoch: String = (0..16)
            .map(|_| char::from(b"0123456789abcdef"[rand::random::<usize>() % 16]))
            .collect();
        self.meta.insert(EPOCH_KEY, epoch.as_bytes())?;
        *self.epoch_mut() = epoch;
        Ok(())
    }

    /// The newest change-log seq (0 when the log is empty): the end of the
    /// newest entry's range, which is more than its key's seq for a block
    /// of readings.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        let Some(newest) = self.data.scan_prefix([keys::CHANGE]).next_back() else {
            return Ok(0);
        };
        let (key, value) = newest?;
        let seq = keys::change_seq(&key).unwrap_or(0);
        // An unreadable entry still holds its own seq.
        Ok(Change::decode(&value).map_or(seq, |change| change.at(seq).through))
    }

    /// The oldest retained change-log seq (0 when the log is empty).
    pub fn first_seq(&self) -> Result<u64, StoreError> {
        Ok(self
            .data
            .scan_prefix([keys::CHANGE])
            .next()
            .transpose()?
            .and_then(|(key, _)| keys::change_seq(&key))
            .unwrap_or(0))
    }

    /// Change-log entries with `seq > after`, in seq order.
    pub fn changes_after(
        &self,
        after: u64,
    ) -> impl Iterator<Item = Result<Change, StoreError>> + use<> {
        let start = keys::change(after.saturating_add(1));
        self.data
            .range(start.to_vec()..keys::prefix_end(&[keys::CHANGE]))
            .map(|entry| decode_change(entry?))
    }

    /// Every change-log insert, as sled applies it (see `realtime::watcher`).
    pub fn watch_changes(&self) -> sled::Subscriber {
        self.data.watch_prefix([keys::CHANGE])
    }
}

fn decode_change((key, value): (sled::IVec, sled::IVec)) -> Result<Change, StoreError> {
    let seq = keys::change_seq(&key).ok_or_else(|| StoreError::Corrupt("change key".into()))?;
    Ok(Change::decode(&value)?.at(seq))
}

/// Change-log entries younger than this are kept whatever their number.
pub const CHANGELOG_MIN_AGE_MS: i64 = 24 * 3600 * 1000;
/// Entries removed per batch when trimming.
const TRIM_CHUNK: usize = 10_000;

impl Store {
    /// Trims the oldest change-log entries, keeping the newest `keep_last`
    /// and every entry younger than `min_age_ms` (whichever keeps more).
    /// Only the bottom of the log is touched and the newest entry always
    /// stays, so the writer, which appends at the top, is never disturbed.
    pub fn trim_changelog(&self, keep_last: u64, min_age_ms: i64) -> Result<u64, StoreError> {
        let last = self.last_seq()?;
        let Some(below) = last.checked_sub(keep_last.max(1)) else {
            return Ok(0);
        };
        let cutoff_ms = crate::clock::now_ms() - min_age_ms;
        let mut removed = 0;
        loop {
            let mut batch = Batch::default();
            let mut in_batch = 0;
            let mut done = true;
            for entry in self
                .data
                .range(keys::change(0).to_vec()..keys::change(below + 1).to_vec())
                .take(TRIM_CHUNK)
            {
                let (key, value) = entry?;
                let change = Change::decode(&value)?;
                if change.ts_ms >= cutoff_ms {
                    break;
                }
                if let Some(seq) = keys::change_seq(&key) {
                    // Resume needs to know what is gone; the marker commits
                    // with the removals.
                    batch.insert(keys::CHANGELOG_TRIMMED, &seq.to_be_bytes());
                    batch.remove(&keys::change_by_collection(change.collection_id, seq)[..]);
                }
                batch.remove(key);
                in_batch += 1;
            }
            if in_batch == TRIM_CHUNK {
                done = false;
            }
            if in_batch > 0 {
                self.apply(batch)?;
                removed += in_batch as u64;
            }
            if done {
                return Ok(removed);
            }
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::change;
    use crate::store::codec;
    use crate::store::tests::{store_with, store_with_records};

    #[tokio::test]
    async fn version_1_change_entries_are_given_their_collections_id() {
        #[derive(serde::Serialize)]
        struct V1<'a> {
            kind: change::ChangeKind,
            collection: &'a str,
            record_id: &'a str,
            after: Option<Vec<u8>>,
            before: Option<Vec<u8>>,
            ts_ms: i64,
            actor: Option<String>,
        }
        let (dir, store, writer) = store_with(serde_json::json!({"name": "c"}), []).await;
        writer.shutdown().await;
        let collection = store.catalog().get("c").unwrap();
        let created_ms = crate::clock::parse_ms(&collection.created).unwrap();
        // Before the current `c` existed (a dropped namesake's), after it,
        // and a user change.
        for (seq, name, ts_ms) in [
            (1, "c", created_ms - 1),
            (2, "c", created_ms + 1),
            (3, "_users", 0),
        ] {
            let v1 = V1 {
                kind: change::ChangeKind::Create,
                collection: name,
                record_id: "r",
                after: Some(b"{}".to_vec()),
                before: None,
                ts_ms,
                actor: None,
            };
            store
                .data
                .insert(keys::change(seq), codec::encode(&v1))
                .unwrap();
        }
        store.flush().unwrap();
        drop(store);
        let store = Store::open(&dir.path().join("db")).unwrap();
        let ids: Vec<u32> = store
            .changes_after(0)
            .map(|c| c.unwrap().collection_id)
            .collect();
        assert_eq!(ids, [change::GONE_ID, collection.id, change::USERS_ID]);
        let raw = store.data.get(keys::change(1)).unwrap().unwrap();
        assert!(
            !change::Change::is_v1(&raw),
            "rewritten in the current version"
        );
    }

    #[tokio::test]
    async fn trimming_keeps_the_newest_entries_and_young_ones() {
        let (_dir, store, writer) = store_with_records(30).await;
        assert_eq!(
            (store.first_seq().unwrap(), store.last_seq().unwrap()),
            (1, 30)
        );
        // Everything is young: nothing goes.
        assert_eq!(store.trim_changelog(10, CHANGELOG_MIN_AGE_MS).unwrap(), 0);
        // Old enough: all but the newest 10 go.
        assert_eq!(store.trim_changelog(10, -1000).unwrap(), 20);
        assert_eq!(
            (store.first_seq().unwrap(), store.last_seq().unwrap()),
            (21, 30)
        );
        assert_eq!(store.changes_after(0).count(), 10);
        // The newest entry always stays, so the next seq survives a restart.
        store.trim_changelog(0, -1000).unwrap();
        assert_eq!(store.last_seq().unwrap(), 30);
        writer.shutdown().await;
    }
}
