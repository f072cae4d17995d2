//! Collection definitions: create, update (checked against every stored
//! record, reindexed when the indexes change) and drop (its records are
//! purged later, a chunk at a time).

use std::collections::HashSet;
use std::sync::Arc;

use super::records::index_entries;
use super::{Committed, Entry, WriteError, WriterState, MAX_REPORTED_VIOLATIONS};
use crate::clock;
use crate::model::collection::FieldErrors;
use crate::model::{Collection, CollectionDef};
use crate::store::change::ChangeKind;
use crate::store::chores::Chore;
use crate::store::codec::{self, StoredCollection};
use crate::store::{keys, Batch};

impl WriterState {
    pub(super) fn create_collection(
        &mut self,
        def: CollectionDef,
    ) -> Result<Committed, WriteError> {
        if self.store.catalog().get(&def.name).is_some() {
            return Err(WriteError::CollectionExists(def.name));
        }
        if self.store.topics().get(&def.name).is_some() {
            return Err(WriteError::TopicExists(def.name));
        }
        let data = self.store.data();
        let id = data
            .get(keys::NEXT_COLLECTION_ID)?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .unwrap_or(1);
        let now = clock::now_rfc3339();
        let collection =
            Collection::compile(id, 1, now.clone(), now, def).map_err(WriteError::Invalid)?;
        let mut batch = Batch::default();
        batch.insert(keys::NEXT_COLLECTION_ID, &(id + 1).to_be_bytes());
        batch.insert(
            keys::collection(&collection.def.name),
            encode_collection(&collection),
        );
        self.store.apply(batch)?;
        let collection = Arc::new(collection);
        self.counts.insert(id, 0);
        self.store.catalog().put(collection.clone());
        Ok(Committed {
            seqs: None,
            collection: Some(collection),
        })
    }

    pub(super) fn update_collection(
        &mut self,
        def: CollectionDef,
    ) -> Result<Committed, WriteError> {
        let old = self
            .store
            .catalog()
            .get(&def.name)
            .ok_or_else(|| WriteError::CollectionNotFound(def.name.clone()))?;
        let collection = Collection::compile(
            old.id,
            old.version + 1,
            old.created.clone(),
            clock::now_rfc3339(),
            def,
        )
        .map_err(WriteError::Invalid)?;
        let data = self.store.data().clone();
        let mut batch = Batch::default();
        let mut violations = FieldErrors::new();
        let indexes_changed = old.def.indexes != collection.def.indexes;
        for entry in data.scan_prefix(keys::collection_prefix(keys::RECORD, old.id)) {
            let (_, value) = entry?;
            let record = crate::store::decode_record(&value)?;
            if let Err(errors) = collection.validate(record.data(), false) {
                for (field, reason) in errors {
                    if violations.len() < MAX_REPORTED_VIOLATIONS {
                        violations.insert(format!("records.{}.{field}", record.id()), reason);
                    }
                }
            }
            if indexes_changed && violations.is_empty() {
                let old_entries: HashSet<_> = index_entries(&old, &record).into_iter().collect();
                let new_entries: HashSet<_> =
                    index_entries(&collection, &record).into_iter().collect();
                for stale in old_entries.difference(&new_entries) {
                    batch.remove(stale.as_slice());
                }
                for fresh in new_entries.difference(&old_entries) {
                    batch.insert(fresh.as_slice(), &[]);
                }
            }
        }
        if !violations.is_empty() {
            return Err(WriteError::Invalid(violations));
        }
        batch.insert(
            keys::collection(&collection.def.name),
            encode_collection(&collection),
        );
        self.store.apply(batch)?;
        let collection = Arc::new(collection);
        self.store.catalog().put(collection.clone());
        Ok(Committed {
            seqs: None,
            collection: Some(collection),
        })
    }

    pub(super) fn drop_collection(
        &mut self,
        name: &str,
        actor: Option<String>,
    ) -> Result<Committed, WriteError> {
        let collection = self
            .store
            .catalog()
            .get(name)
            .ok_or_else(|| WriteError::CollectionNotFound(name.to_owned()))?;
        let first_seq = self.next_seq;
        let mut batch = Batch::default();
        batch.remove(keys::collection(name));
        batch.insert(keys::purge(collection.id), &[]);
        self.change(
            &mut batch,
            Entry {
                kind: ChangeKind::DropCollection,
                collection: (collection.id, name),
                record_id: "",
                before: None,
                after: None,
                actor: &actor,
            },
        );
        self.commit(batch, first_seq)?;
        self.store.catalog().remove(name);
        self.counts.remove(&collection.id);
        // The records are unreachable from here on (ids are never reused);
        // removing them is housekeeping, done a chunk at a time between
        // write groups, that a crash may interrupt and the next start
        // resumes.
        self.chores.push(Chore::Purge(collection.id));
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: Some(collection),
        })
    }
}

fn encode_collection(collection: &Collection) -> Vec<u8> {
    codec::encode(&StoredCollection {
        id: collection.id,
        version: collection.version,
        created: collection.created.clone(),
        updated: collection.updated.clone(),
        def_json: serde_json::to_vec(&collection.def).unwrap_or_default(),
    })
}
