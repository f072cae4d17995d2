//! Reading series collections: blocks of readings (`b` keys) and the
//! summaries beside them (`s` keys), see `keys`. The writer makes them
//! (`writer::series`); everything here only reads.
//!
//! A summary is small, so queries scan summaries first and fetch only the
//! blocks whose time range they need; a seq (a reading's id) finds its
//! block with one reverse range lookup, since a collection's blocks never
//! overlap in seqs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use sled::IVec;

use super::{keys, Store, StoreError};
use crate::series::{self, Reading, Summary, SummaryStats};

/// A block with fewer readings than this is small: quiet periods make
/// them, and the writer queues a merge (`Chore::MergeSeries`). Not
/// higher: a device's batch of 1,000 readings alone in a write group is
/// no quiet period, and merging such blocks during a heavy ingest cost
/// CPU, rewrites and a few MiB of decoded readings at the peak (measured
/// with 1,024 here: 65-67 MiB peak RSS and 720,000-730,000 readings/s
/// with `cache_mb = 8` and 4 clients, against 63-64 MiB and
/// 742,000-756,500/s with 256).
pub const SMALL_BLOCK: u64 = 256;
/// A merge makes blocks of at most this many readings.
const MERGED_BLOCK: u64 = 8192;
/// Fewer small blocks than this at the tail are left for later, so a
/// reading is rewritten a few times at most, not once per new block.
const MERGE_AT_LEAST: usize = 8;

/// Each series collection's newest reading per source, built from the
/// summaries the first time it is asked for and then kept up to date by
/// the writer, so `latest` costs a map walk, not a scan of every summary.
/// Sources are kept in name order, the order `latest` answers in.
#[derive(Default)]
pub struct LatestIndex {
    by_collection: Mutex<HashMap<u32, BTreeMap<String, Arc<Newest>>>>,
}

impl LatestIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, BTreeMap<String, Arc<Newest>>>> {
        // Each update is one insert: a panic cannot leave a map half-done.
        self.by_collection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A source's newest reading, and its JSON once a reader has rendered it:
/// a reading never changes, so its JSON is rendered once, not on every
/// `latest` call, and a newer reading replaces both together.
pub struct Newest {
    reading: Reading,
    json: OnceLock<Box<str>>,
}

impl Newest {
    fn new(reading: Reading) -> Arc<Newest> {
        Arc::new(Newest {
            reading,
            json: OnceLock::new(),
        })
    }

    pub fn reading(&self) -> &Reading {
        &self.reading
    }

    /// The reading's JSON, rendered by `render` the first time it is asked
    /// for. Rendered outside the index's lock: the writer never waits on it.
    pub fn json(&self, render: impl FnOnce(&Reading) -> String) -> &str {
        self.json
            .get_or_init(|| render(&self.reading).into_boxed_str())
    }
}

/// Whether `candidate` is newer (by time, then seq) than `known`.
fn newer(candidate: &Reading, known: Option<&Reading>) -> bool {
    known.is_none_or(|k| (candidate.time, candidate.seq) > (k.time, k.seq))
}

/// A block's summary with what the scan needs to fetch it.
#[derive(Debug, Clone)]
pub struct BlockInfo {
    pub first_seq: u64,
    /// The encoded block's size in bytes.
    pub bytes: u64,
    pub summary: Summary,
}

/// A block's time range, read without decoding its summary.
#[derive(Debug, Clone)]
pub struct BlockSpan {
    pub first_seq: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// The stored `s` value: the block's length, then its summary.
    value: IVec,
}

impl BlockSpan {
    /// The summary's statistics, read in place.
    pub fn stats(&self) -> Result<SummaryStats<'_>, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("series summary: {what}"));
        let bytes = self.value.get(4..).ok_or_else(|| corrupt("short"))?;
        Summary::stats_of(bytes).map_err(|e| corrupt(&e.to_string()))
    }

    /// Whether `block`, read under this span's key, is still the block the
    /// summary was written with. A merge puts a block of more readings
    /// under the key of the first block it took in, and retention's cut
    /// leaves fewer: either way the length differs.
    pub fn describes(&self, block: &[u8]) -> bool {
        self.value
            .get(..4)
            .and_then(|len| len.try_into().ok())
            .map(u32::from_be_bytes)
            .is_some_and(|len| len as usize == block.len())
    }
}

/// The `s` value: the block's length, then its summary.
pub(super) fn summary_value(block_len: usize, summary: &Summary) -> Vec<u8> {
    let mut value = (block_len as u32).to_be_bytes().to_vec();
    value.extend_from_slice(&summary.to_bytes());
    value
}

fn decode_info(key: &[u8], value: &[u8]) -> Result<BlockInfo, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("series summary: {what}"));
    let first_seq = keys::block_seq(key).ok_or_else(|| corrupt("key"))?;
    let (len, rest) = value.split_at_checked(4).ok_or_else(|| corrupt("short"))?;
    let bytes = u32::from_be_bytes(len.try_into().map_err(|_| corrupt("length"))?);
    let summary = Summary::from_bytes(rest).map_err(|e| corrupt(&e.to_string()))?;
    Ok(BlockInfo {
        first_seq,
        bytes: u64::from(bytes),
        summary,
    })
}

fn corrupt_block(e: series::DecodeError) -> StoreError {
    StoreError::Corrupt(format!("series block: {e}"))
}

impl Store {
    /// Every block's summary of a collection, in seq order.
    pub fn series_blocks(
        &self,
        collection: u32,
    ) -> impl DoubleEndedIterator<Item = Result<BlockInfo, StoreError>> + use<> {
        self.data
            .scan_prefix(keys::collection_prefix(keys::SUMMARY, collection))
            .map(|entry| {
                let (key, value) = entry?;
                decode_info(&key, &value)
            })
    }

    /// The blocks holding readings with `from <= time < to`, in seq order,
    /// with their summaries still encoded: a query decodes only the
    /// summaries it uses.
    pub fn series_spans_between(
        &self,
        collection: u32,
        from: i64,
        to: i64,
    ) -> Result<Vec<BlockSpan>, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("series summary: {what}"));
        let mut out = Vec::new();
        for entry in self
            .data
            .scan_prefix(keys::collection_prefix(keys::SUMMARY, collection))
        {
            let (key, value) = entry?;
            let first_seq = keys::block_seq(&key).ok_or_else(|| corrupt("key"))?;
            let summary = value.get(4..).ok_or_else(|| corrupt("short"))?;
            let (min_time, max_time) =
                Summary::time_range_of(summary).map_err(|e| corrupt(&e.to_string()))?;
            if min_time < to && max_time >= from {
                out.push(BlockSpan {
                    first_seq,
                    min_time,
                    max_time,
                    value,
                });
            }
        }
        Ok(out)
    }

    /// A block's bytes, if it is still there (retention or a merge may
    /// have removed it since its summary was read).
    pub fn series_block(
        &self,
        collection: u32,
        first_seq: u64,
    ) -> Result<Option<IVec>, StoreError> {
        Ok(self.data.get(keys::block(collection, first_seq))?)
    }

    /// The block holding `seq` (or the one before, if `seq` is gone), as
    /// its first seq and bytes.
    pub fn series_block_holding(
        &self,
        collection: u32,
        seq: u64,
    ) -> Result<Option<(u64, IVec)>, StoreError> {
        let start = keys::block(collection, 0);
        let end = keys::block(collection, seq);
        let Some(entry) = self.data.range(start..=end).next_back() else {
            return Ok(None);
        };
        let (key, value) = entry?;
        let first = keys::block_seq(&key).ok_or_else(|| StoreError::Corrupt("block key".into()))?;
        Ok(Some((first, value)))
    }

    /// One reading by seq.
    pub fn reading(&self, collection: u32, seq: u64) -> Result<Option<Reading>, StoreError> {
        let Some((_, bytes)) = self.series_block_holding(collection, seq)? else {
            return Ok(None);
        };
        let reader = series::BlockReader::open(&bytes).map_err(corrupt_block)?;
        let seqs = reader.seqs().map_err(corrupt_block)?;
        let Some(index) = seqs.iter().position(|s| *s == seq) else {
            return Ok(None);
        };
        let readings = reader.readings().map_err(corrupt_block)?;
        Ok(readings.into_iter().nth(index))
    }

    /// The readings with `first <= seq <= through`, in seq order: what one
    /// change-log entry of kind `Append` covers. Blocks merged since hold
    /// more; blocks dropped since hold nothing.
    pub fn readings_between(
        &self,
        collection: u32,
        first: u64,
        through: u64,
    ) -> Result<Vec<Reading>, StoreError> {
        // One iterator, walking down from `through`: the writer merges the
        // newest blocks meanwhile, and a merged block takes the key of its
        // lowest seq. Finding the start block first and then scanning up
        // from it could start past a block merged in between and find
        // nothing (a live stream skipped a whole block so). Walking down,
        // a run merged behind the iterator is met again under its lowest
        // key: its readings may come twice, never not at all.
        let mut out = Vec::new();
        let range = keys::block(collection, 0)..=keys::block(collection, through);
        for entry in self.data.range(range).rev() {
            let (key, bytes) = entry?;
            let block_first =
                keys::block_seq(&key).ok_or_else(|| StoreError::Corrupt("block key".into()))?;
            let readings = series::decode(&bytes).map_err(corrupt_block)?;
            out.extend(
                readings
                    .into_iter()
                    .filter(|r| (first..=through).contains(&r.seq)),
            );
            if block_first <= first {
                break;
            }
        }
        out.sort_by_key(|r| r.seq);
        out.dedup_by_key(|r| r.seq);
        Ok(out)
    }

    /// Merges the collection's newest run of small blocks into one, in one
    /// batch; true if it merged. Blocks are merged only with their
    /// neighbours in seq order, so blocks never overlap in seqs and a seq
    /// still finds its block with one lookup.
    pub fn merge_tail(&self, collection: u32) -> Result<bool, StoreError> {
        let mut run: Vec<BlockInfo> = Vec::new();
        let mut readings = 0;
        let prefix = keys::collection_prefix(keys::SUMMARY, collection);
        for entry in self.data.scan_prefix(prefix).rev() {
            let (key, value) = entry?;
            let info = decode_info(&key, &value)?;
            let count = info.summary.count;
            if count >= SMALL_BLOCK || readings + count > MERGED_BLOCK {
                break;
            }
            readings += count;
            run.push(info);
        }
        if run.len() < MERGE_AT_LEAST {
            return Ok(false);
        }
        run.reverse();
        self.merge_blocks(collection, &run)
    }

    /// Merges neighbouring blocks, given in seq order, into one under the
    /// first one's key, in one batch; false if one is gone already.
    pub(crate) fn merge_blocks(
        &self,
        collection: u32,
        run: &[BlockInfo],
    ) -> Result<bool, StoreError> {
        let readings: u64 = run.iter().map(|info| info.summary.count).sum();
        let mut merged = Vec::with_capacity(readings as usize);
        let mut batch = super::Batch::default();
        for info in run {
            let Some(bytes) = self.series_block(collection, info.first_seq)? else {
                return Ok(false);
            };
            merged.extend(series::decode(&bytes).map_err(corrupt_block)?);
            batch.remove(keys::block(collection, info.first_seq));
            batch.remove(keys::summary(collection, info.first_seq));
        }
        let (block, summary) = series::encode(&merged)
            .map_err(|e| StoreError::Corrupt(format!("cannot encode merged block: {e}")))?;
        let first = summary.min_seq;
        batch.insert(
            keys::summary(collection, first),
            summary_value(block.len(), &summary),
        );
        batch.insert(keys::block(collection, first), block);
        self.apply(batch)?;
        Ok(true)
    }

    /// The newest reading of each source of a series collection, in
    /// source name order. Shared with the index, not copied: the lock is
    /// held for a walk of the map, however large the readings.
    pub fn latest_readings(&self, collection: u32) -> Result<Vec<Arc<Newest>>, StoreError> {
        let mut index = self.latest.lock();
        if let Some(newest) = index.get(&collection) {
            return Ok(newest.values().cloned().collect());
        }
        // Built under the lock: an append noted meanwhile waits, then
        // lands on the built map (noting a reading twice changes nothing).
        // Walking down from the newest block: a merge puts the newest
        // small blocks under the lowest key among them, which a walk up
        // may have passed already when it finds the others gone; walking
        // down, that key is still ahead.
        let mut newest: BTreeMap<String, Reading> = BTreeMap::new();
        for info in self.series_blocks(collection).rev() {
            for source in info?.summary.series {
                let last = source.last;
                let reading = Reading {
                    seq: last.seq,
                    time: last.time,
                    created: last.created,
                    owner: last.owner,
                    series: source.name,
                    fields: last.fields,
                };
                if newer(&reading, newest.get(&reading.series)) {
                    newest.insert(reading.series.clone(), reading);
                }
            }
        }
        let newest: BTreeMap<String, Arc<Newest>> = newest
            .into_iter()
            .map(|(source, reading)| (source, Newest::new(reading)))
            .collect();
        let readings = newest.values().cloned().collect();
        index.insert(collection, newest);
        Ok(readings)
    }

    /// The writer appended these readings (applied already).
    pub(crate) fn note_appended(&self, collection: u32, readings: &[Reading]) {
        let mut index = self.latest.lock();
        let Some(newest) = index.get_mut(&collection) else {
            return;
        };
        for reading in readings {
            if newer(reading, newest.get(&reading.series).map(|n| n.reading())) {
                newest.insert(reading.series.clone(), Newest::new(reading.clone()));
            }
        }
    }

    /// Readings were dropped: the index is built again when next asked for.
    pub(crate) fn forget_latest(&self, collection: u32) {
        self.latest.lock().remove(&collection);
    }

    /// Bytes of a collection's blocks and their number.
    pub fn series_size(&self, collection: u32) -> Result<(u64, u64), StoreError> {
        let mut bytes = 0;
        let mut blocks = 0;
        for info in self.series_blocks(collection) {
            bytes += info?.bytes;
            blocks += 1;
        }
        Ok((bytes, blocks))
    }

    /// Whether retention has something to drop: a block wholly before
    /// `before_ms`, or blocks over `max_bytes` in all.
    pub fn series_due(
        &self,
        collection: u32,
        before_ms: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut total = 0;
        for info in self.series_blocks(collection) {
            let info = info?;
            if before_ms.is_some_and(|before| info.summary.max_time < before) {
                return Ok(true);
            }
            total += info.bytes;
        }
        Ok(max_bytes.is_some_and(|max| total > max))
    }

    /// `Idempotency-Key` entries of every collection stored before `before_ms`.
    pub fn idempotency_keys_before(&self, before_ms: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut old = Vec::new();
        for entry in self.data.scan_prefix([keys::IDEMPOTENCY]) {
            let (key, value) = entry?;
            let answer: IdempotentAnswer = super::codec::decode(&value)?;
            if answer.created_ms < before_ms {
                old.push(key.to_vec());
            }
        }
        Ok(old)
    }

    /// The stored answer of an ingest with this `Idempotency-Key`, if any.
    pub fn idempotent_answer(
        &self,
        collection: u32,
        caller: &str,
        key: &str,
    ) -> Result<Option<IdempotentAnswer>, StoreError> {
        match self.data.get(keys::idempotency(collection, caller, key))? {
            None => Ok(None),
            Some(value) => Ok(Some(super::codec::decode(&value)?)),
        }
    }
}

/// What an ingest with an `Idempotency-Key` answered: its seqs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdempotentAnswer {
    pub first_seq: u64,
    pub last_seq: u64,
    pub created_ms: i64,
}
