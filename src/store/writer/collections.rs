//! Collection definitions: create and drop (its records are purged later,
//! a chunk at a time). Updates are migrations: `migration`.

use std::sync::Arc;

use super::{Committed, Entry, WriteError, WriterState};
use crate::clock;
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
            repeated: false,
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
        self.store.forget_latest(collection.id);
        self.cancel_migration(collection.id, name);
        // The records are unreachable from here on (ids are never reused);
        // removing them is housekeeping, done a chunk at a time between
        // write groups, that a crash may interrupt and the next start
        // resumes.
        self.chores.push(Chore::Purge(collection.id));
        Ok(Committed {
            repeated: false,
            seqs: self.seqs_since(first_seq),
            collection: Some(collection),
        })
    }
}

pub(super) fn encode_collection(collection: &Collection) -> Vec<u8> {
    codec::encode(&StoredCollection {
        id: collection.id,
        version: collection.version,
        created: collection.created.clone(),
        updated: collection.updated.clone(),
        def_json: serde_json::to_vec(&collection.def).unwrap_or_default(),
    })
}
