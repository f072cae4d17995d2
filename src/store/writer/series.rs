//! Appending readings to series collections. The appends of a write group
//! to one collection take consecutive seqs when the stage is committed and
//! become a few blocks of up to [`BLOCK_READINGS`] readings: each an
//! immutable value with its summary beside it and one change-log entry
//! covering its seq range. So a group of readings costs sled a handful of
//! keys per two thousand readings.

use std::sync::Arc;

use super::{Answers, Committed, Entry, Reply, Staged, WriteError, WriterState};
use crate::clock;
use crate::model::Collection;
use crate::series::{self, Reading};
use crate::store::change::{Change, ChangeKind};
use crate::store::chores::Chore;
use crate::store::series::{summary_value, BlockInfo, IdempotentAnswer, SMALL_BLOCK};
use crate::store::{changelog, codec, keys, Batch};

/// Readings staged before the stage is committed (plus one request's
/// worth): the most one write group holds for one collection.
pub(super) const MAX_BLOCK_READINGS: usize = 32_768;

/// A write group's readings for one collection are split evenly into blocks
/// of at most this many. sled keeps recently written tree leaves in memory
/// and counts a leaf written as a blob by its pointer, not its size, so its
/// `cache_capacity` does not bound them; a leaf holds up to 16 blocks, and
/// smaller blocks make smaller resident leaves. Measured with `cache_mb = 8`
/// and 8 clients posting 1000 readings each: peak RSS 84-90 MiB with
/// blocks of a whole group (up to 8000 readings), 65-69 MiB with 2048.
/// Readings/s were within the runs' noise of each other (625-738k with
/// blocks of 2048, 686-805k before); 4096 gave 82 MiB.
pub(super) const BLOCK_READINGS: usize = 2048;

/// Readings for one series collection, checked by the caller against the
/// collection's schema and create rule.
pub struct Append {
    pub collection: Arc<Collection>,
    pub readings: Vec<Reading>,
    pub actor: Option<String>,
    /// The caller and its `Idempotency-Key`: a second append with the same
    /// pair is answered with the first one's seqs and writes nothing.
    pub idempotency: Option<(String, String)>,
}

/// What sealing the stage's appends gave: an answer per request, and the
/// readings by collection, for the latest index once the batch is applied.
#[derive(Default)]
pub(super) struct Sealed {
    pub(super) answers: Vec<(Reply, Result<Committed, WriteError>)>,
    pub(super) readings: Vec<(u32, Vec<Reading>)>,
}

/// One collection's appends in the current stage.
pub(super) struct SeriesStage {
    collection: Arc<Collection>,
    readings: Vec<Reading>,
    actor: Option<String>,
    mixed_actors: bool,
    /// Each request: its reply, its number of readings, its idempotency key.
    requests: Vec<(Reply, usize, Option<Vec<u8>>)>,
}

impl WriterState {
    /// Checks an append and adds it to the stage; answered at once only when
    /// it fails or repeats an earlier request.
    pub(super) fn stage_append(
        &mut self,
        staged: &mut Staged,
        answers: &mut Answers,
        append: Append,
        reply: Reply,
    ) {
        if append.readings.is_empty() {
            return answers.send(reply, Ok(Committed::default()));
        }
        // Readings have no index entries: one checked against the previous
        // version of the schema is written like any other.
        let current = match self.current_collection(&append.collection, true) {
            Ok(current) => current,
            Err(e) => return answers.send(reply, Err(e)),
        };
        let key = append
            .idempotency
            .as_ref()
            .map(|(caller, key)| keys::idempotency(current.id, caller, key));
        if let Some(key) = &key {
            // The first of two identical requests in one group is written
            // first, so the second finds its answer.
            if staged.idempotency.contains(key) {
                self.commit_staged(staged, answers);
            }
            match self.store.data().get(key) {
                Ok(Some(value)) => {
                    let result = codec::decode::<IdempotentAnswer>(&value)
                        .map(|answer| Committed {
                            seqs: Some((answer.first_seq, answer.last_seq)),
                            collection: Some(current),
                            repeated: true,
                        })
                        .map_err(WriteError::from);
                    return answers.send(reply, result);
                }
                Ok(None) => {}
                Err(e) => return answers.send(reply, Err(WriteError::Storage(e.to_string()))),
            }
            staged.idempotency.insert(key.clone());
        }
        let count = append.readings.len();
        staged.readings += count;
        let stage = match staged
            .series
            .iter_mut()
            .position(|s| s.collection.id == current.id)
        {
            Some(i) => &mut staged.series[i],
            None => {
                staged.series.push(SeriesStage {
                    collection: current,
                    readings: Vec::new(),
                    actor: append.actor.clone(),
                    mixed_actors: false,
                    requests: Vec::new(),
                });
                let last = staged.series.len() - 1;
                &mut staged.series[last]
            }
        };
        stage.mixed_actors |= stage.actor != append.actor;
        // The group's first request lends its Vec: no copy of its readings.
        if stage.readings.is_empty() {
            stage.readings = append.readings;
        } else {
            stage.readings.extend(append.readings);
        }
        stage.requests.push((reply, count, key));
    }

    /// Numbers the staged readings, encodes a block per collection and adds
    /// it, its summary, its change-log entry and its keys to the stage's
    /// batch. Returns the answers to send once the batch is applied.
    pub(super) fn seal_series(&mut self, staged: &mut Staged) -> Sealed {
        let mut out = Sealed::default();
        let now = clock::now_ms();
        for stage in std::mem::take(&mut staged.series) {
            let mut readings = stage.readings;
            // Numbered in one short hold of the counter, encoded after it:
            // unstored messages do not wait for the encoding.
            let first = self.seqs.take(readings.len() as u64);
            for (seq, reading) in (first..).zip(readings.iter_mut()) {
                reading.seq = seq;
            }
            let through = first + readings.len() as u64 - 1;
            let blocks = match encode_blocks(&readings) {
                Ok(blocks) => blocks,
                Err(e) => {
                    self.give_back(&[(first, through)]);
                    for (reply, _, _) in stage.requests {
                        out.answers.push((
                            reply,
                            Err(WriteError::Storage(format!("cannot encode readings: {e}"))),
                        ));
                    }
                    continue;
                }
            };
            staged.taken.push((first, through));
            let collection = &stage.collection;
            if (readings.len() as u64) < SMALL_BLOCK {
                self.chores.push_once(Chore::MergeSeries(collection.id));
            }
            let batch = &mut staged.batch;
            for encoded in blocks {
                let block_first = encoded.first_seq;
                batch.insert(
                    keys::summary(collection.id, block_first),
                    summary_value(encoded.block.len(), &encoded.summary),
                );
                batch.insert(keys::block(collection.id, block_first), encoded.block);
                let actor = if stage.mixed_actors {
                    None
                } else {
                    stage.actor.clone()
                };
                let change = Change::append(
                    collection.id,
                    collection.def.name.clone(),
                    (block_first, encoded.last_seq),
                    now,
                    actor,
                );
                changelog::append(batch, block_first, collection.id, &change.encode());
            }
            let count = staged
                .counts
                .entry(collection.id)
                .or_insert_with(|| self.counts.get(&collection.id).copied().unwrap_or(0));
            *count += readings.len() as u64;
            let mut next = first;
            for (reply, n, key) in stage.requests {
                let seqs = (next, next + n as u64 - 1);
                next += n as u64;
                if let Some(key) = key {
                    let answer = IdempotentAnswer {
                        first_seq: seqs.0,
                        last_seq: seqs.1,
                        created_ms: now,
                    };
                    batch.insert(key, codec::encode(&answer));
                }
                let committed = Committed {
                    seqs: Some(seqs),
                    collection: Some(collection.clone()),
                    repeated: false,
                };
                out.answers.push((reply, Ok(committed)));
            }
            out.readings.push((collection.id, readings));
        }
        out
    }
}

/// One block of a write group's readings, encoded.
struct EncodedBlock {
    first_seq: u64,
    last_seq: u64,
    block: Vec<u8>,
    summary: series::Summary,
}

/// The blocks of one write group's readings (numbered already), each as
/// full as the others.
fn encode_blocks(readings: &[Reading]) -> Result<Vec<EncodedBlock>, series::EncodeError> {
    if readings.is_empty() {
        return Err(series::EncodeError::Empty);
    }
    let blocks = readings.len().div_ceil(BLOCK_READINGS);
    let per_block = readings.len().div_ceil(blocks);
    readings
        .chunks(per_block)
        .map(|chunk| {
            let (block, summary) = series::encode(chunk)?;
            Ok(EncodedBlock {
                first_seq: chunk.first().map_or(0, |r| r.seq),
                last_seq: chunk.last().map_or(0, |r| r.seq),
                block,
                summary,
            })
        })
        .collect()
}

/// What to drop of a series collection: readings older than `before_ms`
/// (`exact`: also those inside blocks that straddle it, rewriting them;
/// otherwise only whole blocks), then the oldest blocks past `max_bytes`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Truncation {
    pub before_ms: Option<i64>,
    pub exact: bool,
    pub max_bytes: Option<u64>,
}

impl WriterState {
    pub(super) fn forget_idempotency_keys(
        &mut self,
        old: Vec<Vec<u8>>,
    ) -> Result<Committed, WriteError> {
        let mut batch = Batch::default();
        for key in old
            .into_iter()
            .filter(|k| k.first() == Some(&keys::IDEMPOTENCY))
        {
            batch.remove(key);
        }
        self.store.apply(batch)?;
        Ok(Committed::default())
    }

    /// Drops old blocks in one batch with one `Truncate` change-log entry
    /// (subscribers get one `expired` notice). Nothing dropped: no entry.
    pub(super) fn truncate_series(
        &mut self,
        prepared_for: &Collection,
        truncation: Truncation,
        actor: Option<String>,
    ) -> Result<Committed, WriteError> {
        let current = self.current_collection(prepared_for, true)?;
        let mut blocks: Vec<BlockInfo> = self
            .store
            .series_blocks(current.id)
            .collect::<Result<_, _>>()?;
        let mut batch = Batch::default();
        let mut removed_readings = 0u64;
        // The newest time dropped, for the notice.
        let mut dropped_until = i64::MIN;
        let drop = |batch: &mut Batch, info: &BlockInfo| {
            batch.remove(keys::block(current.id, info.first_seq));
            batch.remove(keys::summary(current.id, info.first_seq));
            info.summary.count
        };
        if let Some(before) = truncation.before_ms {
            let mut kept = Vec::with_capacity(blocks.len());
            for info in blocks {
                if info.summary.max_time < before {
                    removed_readings += drop(&mut batch, &info);
                    dropped_until = dropped_until.max(before);
                } else if truncation.exact && info.summary.min_time < before {
                    let bytes = self
                        .store
                        .series_block(current.id, info.first_seq)?
                        .ok_or_else(|| WriteError::Storage("a block vanished".into()))?;
                    let readings = series::decode(&bytes)
                        .map_err(|e| WriteError::Storage(format!("series block: {e}")))?;
                    let left: Vec<Reading> =
                        readings.into_iter().filter(|r| r.time >= before).collect();
                    removed_readings += drop(&mut batch, &info) - left.len() as u64;
                    dropped_until = dropped_until.max(before);
                    let (block, summary) = series::encode(&left)
                        .map_err(|e| WriteError::Storage(format!("cannot encode readings: {e}")))?;
                    // Fewer readings of the same range: still no overlap.
                    let first = summary.min_seq;
                    batch.insert(
                        keys::summary(current.id, first),
                        summary_value(block.len(), &summary),
                    );
                    batch.insert(keys::block(current.id, first), block);
                    kept.push(BlockInfo {
                        first_seq: first,
                        bytes: 0,
                        summary,
                    });
                } else {
                    kept.push(info);
                }
            }
            blocks = kept;
        }
        if let Some(max_bytes) = truncation.max_bytes {
            let mut total: u64 = blocks.iter().map(|b| b.bytes).sum();
            for info in &blocks {
                if total <= max_bytes {
                    break;
                }
                total -= info.bytes;
                removed_readings += drop(&mut batch, info);
                dropped_until = dropped_until.max(info.summary.max_time + 1);
            }
        }
        if batch.is_empty() {
            return Ok(Committed::default());
        }
        let first_seq = self.next_seq;
        let count = self.counts.get(&current.id).copied().unwrap_or(0);
        let count = count.saturating_sub(removed_readings);
        batch.insert(keys::count(current.id), &count.to_be_bytes());
        let before = clock::format_ms(dropped_until);
        self.change(
            &mut batch,
            Entry {
                kind: ChangeKind::Truncate,
                collection: (current.id, &current.def.name),
                record_id: &before,
                before: None,
                after: None,
                actor: &actor,
            },
        );
        self.commit(batch, first_seq)?;
        self.store.forget_latest(current.id);
        self.counts.insert(current.id, count);
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: Some(current),
            repeated: false,
        })
    }
}
