//! Record writes: creates (staged across requests into one batch),
//! replaces and deletes, all or nothing per request, with their index
//! entries, counts and change-log entries.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{Answers, Committed, Entry, Mutation, Reply, WriteError, WriterState};
use crate::access::Allowed;
use crate::clock;
use crate::model::{Collection, Record};
use crate::store::change::{Change, ChangeKind};
use crate::store::codec::{self, StoredRecord};
use crate::store::{changelog, keys, Batch};

pub enum RecordOp {
    Create(NewRecord),
    /// `record.rev()` must be `expected_rev + 1`.
    Replace {
        record: Record,
        expected_rev: u64,
        permit: Allowed,
    },
    Delete {
        id: String,
        expected_rev: Option<u64>,
        expired: bool,
        permit: Allowed,
    },
}

/// A record to create, encoded by the caller (off the writer thread): its
/// stored value, index entries and change-log entry are ready to insert,
/// and the writer only checks the id and assigns the seq.
pub struct NewRecord {
    id: String,
    collection_id: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    index_keys: Vec<Vec<u8>>,
    change: Vec<u8>,
    /// Whether the id is the client's: it is always looked up; a server id
    /// only when a client may have taken it (see [`ClientIds`]).
    client_chose_id: bool,
}

impl NewRecord {
    /// Encodes a record the access layer allowed (`_permit`) to be created.
    pub fn prepare(
        collection: &Collection,
        record: &Record,
        actor: Option<&str>,
        client_chose_id: bool,
        _permit: Allowed,
    ) -> NewRecord {
        let json = record.to_bytes();
        let value = codec::encode(&StoredRecord {
            rev: record.rev(),
            json: json.clone(),
        });
        let change = Change {
            seq: 0,
            kind: ChangeKind::Create,
            collection_id: collection.id,
            collection: collection.def.name.clone(),
            record_id: record.id().to_owned(),
            after: Some(json),
            before: None,
            ts_ms: clock::now_ms(),
            actor: actor.map(str::to_owned),
            through: 0,
        }
        .encode();
        NewRecord {
            id: record.id().to_owned(),
            collection_id: collection.id,
            key: keys::record(collection.id, record.id()),
            value,
            index_keys: index_entries(collection, record),
            change,
            client_chose_id,
        }
    }

    /// The record, decoded back: only a migration needs it on the writer.
    fn record(&self) -> Result<Record, WriteError> {
        let stored: StoredRecord = codec::decode(&self.value)?;
        Record::from_bytes(&stored.json).ok_or_else(|| WriteError::Storage("corrupt record".into()))
    }

    /// During a migration: checked against the new schema, and the index
    /// entries of its new fields.
    fn pending_entries(&self, writer: &WriterState) -> Result<Vec<Vec<u8>>, WriteError> {
        if !writer.migrating(self.collection_id) {
            return Ok(Vec::new());
        }
        writer.pending_entries(self.collection_id, &self.record()?)
    }

    fn insert_into(self, batch: &mut Batch, seq: u64) {
        for entry in self.index_keys {
            batch.insert(entry, &[]);
        }
        batch.insert(self.key, self.value);
        changelog::append(batch, seq, self.collection_id, &self.change);
    }
}

/// Consecutive create-only writes of one group share one sled batch: fewer,
/// larger batches cost the writer much less than one per request.
pub(super) struct Staged {
    pub(super) batch: Batch,
    /// The seqs this stage numbered, `(first, last)` per request or block:
    /// given back if the batch cannot be applied.
    pub(super) taken: Vec<(u64, u64)>,
    pub(super) replies: Vec<(Reply, Committed)>,
    /// Record keys created by this stage, for duplicate ids across requests.
    pub(super) keys: HashSet<Vec<u8>>,
    /// Record counts after this stage, per collection.
    pub(super) counts: HashMap<u32, u64>,
    pub(super) ops: usize,
    /// Appends to series collections, one entry per collection
    /// (`writer::series`), numbered when the stage is committed.
    pub(super) series: Vec<super::series::SeriesStage>,
    pub(super) readings: usize,
    pub(super) idempotency: HashSet<Vec<u8>>,
}

impl Staged {
    pub(super) fn new() -> Staged {
        Staged {
            batch: Batch::default(),
            taken: Vec::new(),
            replies: Vec::new(),
            keys: HashSet::new(),
            counts: HashMap::new(),
            ops: 0,
            series: Vec::new(),
            readings: 0,
            idempotency: HashSet::new(),
        }
    }
}

impl WriterState {
    /// Checks a create-only write and adds it to the group's shared batch.
    /// Nothing is staged unless every record of the write is.
    pub(super) fn stage_creates(
        &mut self,
        staged: &mut Staged,
        mutation: Mutation,
    ) -> Result<Committed, WriteError> {
        let Mutation::Records {
            collection: prepared_for,
            ops,
            ..
        } = mutation
        else {
            return Err(WriteError::Storage("not a create".into()));
        };
        let current = self.current_collection(&prepared_for, false)?;
        let data = self.store.data();
        let mut fresh = HashSet::with_capacity(ops.len());
        let mut pending = Vec::new();
        for op in &ops {
            if let RecordOp::Create(new) = op {
                pending.extend(new.pending_entries(self)?);
                if staged.keys.contains(&new.key)
                    || !fresh.insert(new.key.clone())
                    || (self
                        .client_ids
                        .must_look_up(current.id, &new.id, new.client_chose_id)
                        && data.contains_key(&new.key)?)
                {
                    return Err(WriteError::Conflict(new.id.clone()));
                }
            }
        }
        let first_seq = self.next_seq;
        for entry in pending {
            staged.batch.insert(entry, &[]);
        }
        for op in ops {
            if let RecordOp::Create(new) = op {
                self.client_ids
                    .storing(current.id, &new.id, new.client_chose_id);
                new.insert_into(&mut staged.batch, self.next_seq);
                self.next_seq += 1;
                staged.ops += 1;
            }
        }
        staged.keys.extend(fresh);
        let count = staged
            .counts
            .entry(current.id)
            .or_insert_with(|| self.counts.get(&current.id).copied().unwrap_or(0));
        *count += self.next_seq - first_seq;
        let seqs = self.seqs_since(first_seq);
        staged.taken.extend(seqs);
        Ok(Committed {
            repeated: false,
            seqs,
            collection: Some(current),
        })
    }

    /// Applies the staged batch; its writers hear back after the fsync
    /// (sync) or now (relaxed), or get the storage error.
    pub(super) fn commit_staged(&mut self, staged: &mut Staged, answers: &mut Answers) {
        let appended = self.seal_series(staged);
        let done = std::mem::replace(staged, Staged::new());
        if done.replies.is_empty() && appended.answers.is_empty() {
            return;
        }
        let mut replies = done.replies;
        let mut failed = Vec::new();
        for (reply, result) in appended.answers {
            match result {
                Ok(committed) => replies.push((reply, committed)),
                Err(e) => failed.push((reply, e)),
            }
        }
        for (reply, e) in failed {
            answers.send(reply, Err(e));
        }
        let mut batch = done.batch;
        for (collection, count) in &done.counts {
            batch.insert(keys::count(*collection), &count.to_be_bytes());
        }
        match self.store.apply(batch) {
            Ok(()) => {
                self.counts.extend(done.counts);
                for (collection, readings) in appended.readings {
                    self.store.note_appended(collection, &readings);
                    answers.spent.push(readings);
                }
                for (reply, committed) in replies {
                    answers.send(reply, Ok(committed));
                }
            }
            Err(e) => {
                // Nothing of the stage was written: give its seqs back.
                self.give_back(&done.taken);
                for (reply, _) in replies {
                    answers.send(reply, Err(WriteError::Storage(e.to_string())));
                }
            }
        }
        *staged = Staged::new();
    }

    pub(super) fn current_collection(
        &self,
        prepared_for: &Collection,
        only_deletes: bool,
    ) -> Result<Arc<Collection>, WriteError> {
        let current = self
            .store
            .catalog()
            .get(&prepared_for.def.name)
            .filter(|c| c.id == prepared_for.id)
            .ok_or_else(|| WriteError::CollectionNotFound(prepared_for.def.name.clone()))?;
        if current.version != prepared_for.version && !only_deletes {
            return Err(WriteError::CollectionChanged);
        }
        Ok(current)
    }

    pub(super) fn apply_records(
        &mut self,
        prepared_for: &Collection,
        ops: Vec<RecordOp>,
        actor: Option<String>,
    ) -> Result<Committed, WriteError> {
        let only_deletes = ops.iter().all(|op| matches!(op, RecordOp::Delete { .. }));
        let current = self.current_collection(prepared_for, only_deletes)?;
        let data = self.store.data().clone();
        let name = (current.id, current.def.name.as_str());
        let first_seq = self.next_seq;
        let mut batch = Batch::default();
        let mut delta: i64 = 0;
        let mut touched = HashSet::new();
        let result = (|| {
            for op in ops {
                match op {
                    RecordOp::Create(new) => {
                        if !touched.insert(new.key.clone())
                            || (self.client_ids.must_look_up(
                                current.id,
                                &new.id,
                                new.client_chose_id,
                            ) && data.contains_key(&new.key)?)
                        {
                            return Err(WriteError::Conflict(new.id));
                        }
                        for entry in new.pending_entries(self)? {
                            batch.insert(entry, &[]);
                        }
                        self.client_ids
                            .storing(current.id, &new.id, new.client_chose_id);
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        new.insert_into(&mut batch, seq);
                        delta += 1;
                    }
                    RecordOp::Replace {
                        record,
                        expected_rev,
                        ..
                    } => {
                        let key = keys::record(current.id, record.id());
                        if !touched.insert(key.clone()) {
                            return Err(WriteError::Conflict(record.id().to_owned()));
                        }
                        let old = stored_record(&data, &key, record.id(), Some(expected_rev))?;
                        let old_record = Record::from_bytes(&old.json)
                            .ok_or_else(|| WriteError::Storage("corrupt record".into()))?;
                        let old_entries: HashSet<_> = index_entries(&current, &old_record)
                            .into_iter()
                            .chain(self.pending_entries_to_remove(current.id, &old_record))
                            .collect();
                        let new_entries: HashSet<_> = index_entries(&current, &record)
                            .into_iter()
                            .chain(self.pending_entries(current.id, &record)?)
                            .collect();
                        for entry in old_entries.difference(&new_entries) {
                            batch.remove(entry.as_slice());
                        }
                        for entry in new_entries.difference(&old_entries) {
                            batch.insert(entry.as_slice(), &[]);
                        }
                        let json = record.to_bytes();
                        batch.insert(
                            key,
                            codec::encode(&StoredRecord {
                                rev: record.rev(),
                                json: json.clone(),
                            }),
                        );
                        self.change(
                            &mut batch,
                            Entry {
                                kind: ChangeKind::Update,
                                collection: name,
                                record_id: record.id(),
                                before: Some(old.json),
                                after: Some(json),
                                actor: &actor,
                            },
                        );
                    }
                    RecordOp::Delete {
                        id,
                        expected_rev,
                        expired,
                        ..
                    } => {
                        let key = keys::record(current.id, &id);
                        if !touched.insert(key.clone()) {
                            return Err(WriteError::Conflict(id));
                        }
                        // Retention races with ordinary deletes; a record
                        // already gone needs no expiry.
                        if expired && !data.contains_key(&key)? {
                            continue;
                        }
                        let old = stored_record(&data, &key, &id, expected_rev)?;
                        if let Some(old_record) = Record::from_bytes(&old.json) {
                            for entry in index_entries(&current, &old_record)
                                .into_iter()
                                .chain(self.pending_entries_to_remove(current.id, &old_record))
                            {
                                batch.remove(entry);
                            }
                        }
                        batch.remove(key);
                        let kind = if expired {
                            ChangeKind::Expire
                        } else {
                            ChangeKind::Delete
                        };
                        self.change(
                            &mut batch,
                            Entry {
                                kind,
                                collection: name,
                                record_id: &id,
                                before: Some(old.json),
                                after: None,
                                actor: &actor,
                            },
                        );
                        delta -= 1;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.next_seq = first_seq;
            return Err(e);
        }
        let count = self.counts.entry(current.id).or_insert(0);
        let new_count = (*count as i64 + delta).max(0) as u64;
        if delta != 0 {
            batch.insert(keys::count(current.id), &new_count.to_be_bytes());
        }
        self.commit(batch, first_seq)?;
        self.counts.insert(current.id, new_count);
        Ok(Committed {
            repeated: false,
            seqs: self.seqs_since(first_seq),
            collection: Some(current),
        })
    }
}

fn stored_record(
    data: &sled::Tree,
    key: &[u8],
    id: &str,
    expected_rev: Option<u64>,
) -> Result<StoredRecord, WriteError> {
    let bytes = data
        .get(key)?
        .ok_or_else(|| WriteError::NotFound(id.to_owned()))?;
    let stored: StoredRecord = codec::decode(&bytes)?;
    if let Some(expected) = expected_rev {
        if stored.rev != expected {
            return Err(WriteError::RevMismatch {
                id: id.to_owned(),
                current: stored.rev,
            });
        }
    }
    Ok(stored)
}

/// The index entries a record needs: `created` always (retention and the
/// default sort use it), plus each declared index.
pub fn index_entries(collection: &Collection, record: &Record) -> Vec<Vec<u8>> {
    let mut entries = Vec::with_capacity(1 + collection.def.indexes.len());
    let id = record.id();
    for field in std::iter::once("created").chain(
        collection
            .def
            .indexes
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "created"),
    ) {
        let value = record.fields.get(field).unwrap_or(&Value::Null);
        entries.push(keys::index_entry(collection.id, field, value, id));
    }
    entries
}
