//! Changing a collection's definition without stopping writes.
//!
//! Checking every stored record against the new schema (and indexing the
//! fields newly indexed) used to be one writer step: with a million records
//! every write waited seconds for it. Now it is a migration in two phases:
//!
//! 1. The writer installs it: the old version stays in force for reads,
//!    queries and rules, and an `m` marker is written for each field newly
//!    indexed. While it is pending, every record write to the collection is
//!    also checked against the new schema (a record that does not fit is
//!    refused, so nothing written meanwhile can break it) and writes the
//!    index entries of the new fields too.
//! 2. A chore ([`Chore::Migrate`]) walks the records in key order, a chunk
//!    at a time between write groups, checking each against the new schema
//!    and adding its new index entries. At the end, if a record does not
//!    fit, the change is undone: the request gets today's
//!    `validation_failed` (up to [`MAX_REPORTED_VIOLATIONS`] records) and the
//!    entries added so far are removed in chunks ([`Chore::DropIndex`]).
//!    Otherwise one short batch stores the new definition and swaps the
//!    markers (off the new fields, onto the fields no longer indexed, whose
//!    entries are then removed in chunks), the catalog moves to the new
//!    version and the request is answered (after the fsync in sync mode).
//!
//! Queries plan only with the catalog's current version's indexes, so
//! entries of a field not (or no longer) indexed are never read; they are
//! always under an `m` marker until removed. A crash mid-migration leaves
//! the old definition and markers on the new fields: the next start
//! removes those entries (`Chores::pending`) instead of resuming, since no
//! request is waiting for the outcome any more.
//!
//! One migration per collection at a time: another update of the same
//! collection meanwhile, or one that indexes a field whose entries are
//! still being removed, is refused with 409 (a PATCH is merged into the
//! definition its handler read, so queueing it behind the running change
//! would silently undo that change). A drop cancels the migration: its
//! request hears 404 and the purge removes everything.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Answer, Committed, Reply, WriteError, WriterState};
use crate::clock;
use crate::model::collection::FieldErrors;
use crate::model::{Collection, CollectionDef, Record};
use crate::store::chores::Chore;
use crate::store::{keys, Batch, StoreError};

/// Schema-change violations reported at most.
const MAX_REPORTED_VIOLATIONS: usize = 20;

pub(super) struct Migration {
    new: Arc<Collection>,
    /// Fields indexed by `new` and not by `old` (`created` always is).
    added: Vec<String>,
    /// Fields indexed by `old` and not by `new`.
    removed: Vec<String>,
    /// The next record key to check.
    cursor: Vec<u8>,
    violations: FieldErrors,
    reply: Reply,
}

/// Declared indexes other than `created`, which every version has.
fn indexed(collection: &Collection) -> BTreeSet<&str> {
    collection
        .def
        .indexes
        .iter()
        .map(String::as_str)
        .filter(|f| *f != "created")
        .collect()
}

/// The index entries of `record` for `fields` only.
fn entries_for(collection: u32, fields: &[String], record: &Record) -> Vec<Vec<u8>> {
    fields
        .iter()
        .map(|field| {
            let value = record.fields.get(field).unwrap_or(&serde_json::Value::Null);
            keys::index_entry(collection, field, value, record.id())
        })
        .collect()
}

impl WriterState {
    /// Starts an update of a collection's definition. Answers at once if
    /// it is refused or needs no walk (only rules or similar changed);
    /// otherwise the answer comes when the migration ends.
    pub(super) fn update_collection(&mut self, def: CollectionDef, reply: Reply) -> Option<Answer> {
        match self.begin_update(def, reply) {
            Ok(None) => None,
            Ok(Some((reply, committed))) => Some((reply, Ok(committed))),
            Err((reply, e)) => Some((reply, Err(e))),
        }
    }

    #[allow(clippy::type_complexity)] // a reply travels with each outcome
    fn begin_update(
        &mut self,
        def: CollectionDef,
        reply: Reply,
    ) -> Result<Option<(Reply, Committed)>, (Reply, WriteError)> {
        let Some(old) = self.store.catalog().get(&def.name) else {
            return Err((reply, WriteError::CollectionNotFound(def.name)));
        };
        if self.migrations.contains_key(&old.id) {
            return Err((reply, WriteError::CollectionBusy(def.name)));
        }
        let new = match Collection::compile(
            old.id,
            old.version + 1,
            old.created.clone(),
            clock::now_rfc3339(),
            def,
        ) {
            Ok(new) => Arc::new(new),
            Err(errors) => return Err((reply, WriteError::Invalid(errors))),
        };
        let (old_indexed, new_indexed) = (indexed(&old), indexed(&new));
        let added: Vec<String> = new_indexed
            .difference(&old_indexed)
            .map(|f| f.to_string())
            .collect();
        let removed: Vec<String> = old_indexed
            .difference(&new_indexed)
            .map(|f| f.to_string())
            .collect();
        let data = self.store.data().clone();
        for field in &added {
            // Old entries of this field are still being removed: indexing
            // it now would mix them with the new ones.
            match data.contains_key(keys::stale_index(old.id, field)) {
                Ok(false) => {}
                Ok(true) => return Err((reply, WriteError::CollectionBusy(new.def.name.clone()))),
                Err(e) => return Err((reply, e.into())),
            }
        }
        let migration = Migration {
            cursor: keys::collection_prefix(keys::RECORD, old.id),
            new: new.clone(),
            added,
            removed,
            violations: FieldErrors::new(),
            reply,
        };
        // The schema decides validity through its fields and strictness
        // only: if neither changed and no index is added, no record needs
        // a look.
        if migration.added.is_empty()
            && old.def.fields == new.def.fields
            && old.def.strict == new.def.strict
        {
            return match self.switch(&migration) {
                Ok(()) => Ok(Some((
                    migration.reply,
                    Committed {
                        repeated: false,
                        seqs: None,
                        collection: Some(new),
                    },
                ))),
                Err(e) => Err((migration.reply, e)),
            };
        }
        let mut batch = Batch::default();
        for field in &migration.added {
            batch.insert(keys::stale_index(old.id, field), &[]);
        }
        if let Err(e) = self.store.apply(batch) {
            return Err((migration.reply, e.into()));
        }
        self.migrations.insert(old.id, migration);
        self.chores.push(Chore::Migrate(old.id));
        Ok(None)
    }

    /// Stores the new definition, trusts the new fields' entries and marks
    /// the removed fields' entries for removal, in one batch.
    fn switch(&mut self, migration: &Migration) -> Result<(), WriteError> {
        let id = migration.new.id;
        let mut batch = Batch::default();
        batch.insert(
            keys::collection(&migration.new.def.name),
            super::collections::encode_collection(&migration.new),
        );
        for field in &migration.added {
            batch.remove(keys::stale_index(id, field));
        }
        for field in &migration.removed {
            batch.insert(keys::stale_index(id, field), &[]);
        }
        self.store.apply(batch)?;
        self.store.catalog().put(migration.new.clone());
        for field in &migration.removed {
            self.chores.push(Chore::DropIndex(id, field.clone()));
        }
        Ok(())
    }

    /// One chunk of the migration of `collection`: true once it is over
    /// (switched, undone, or cancelled by a drop).
    pub(super) fn migrate_chunk(&mut self, collection: u32) -> Result<bool, StoreError> {
        let Some(mut migration) = self.migrations.remove(&collection) else {
            return Ok(true);
        };
        let walked = match self.walk(&mut migration) {
            Ok(walked) => walked,
            Err(e) => {
                self.undo(migration, Err(WriteError::Storage(e.to_string())));
                return Err(e);
            }
        };
        if !walked {
            self.migrations.insert(collection, migration);
            return Ok(false);
        }
        if !migration.violations.is_empty() {
            let violations = std::mem::take(&mut migration.violations);
            self.undo(migration, Err(WriteError::Invalid(violations)));
            return Ok(true);
        }
        match self.switch(&migration) {
            Ok(()) => {
                let committed = Committed {
                    repeated: false,
                    seqs: None,
                    collection: Some(migration.new.clone()),
                };
                self.late.push((migration.reply, Ok(committed)));
            }
            Err(e) => self.undo(migration, Err(e)),
        }
        Ok(true)
    }

    /// Checks and indexes the next chunk of records: true once every record
    /// is done or enough violations are known.
    fn walk(&mut self, migration: &mut Migration) -> Result<bool, StoreError> {
        let id = migration.new.id;
        let end = keys::prefix_end(&keys::collection_prefix(keys::RECORD, id));
        let data = self.store.data();
        let mut batch = Batch::default();
        let mut seen = 0;
        for entry in data
            .range(migration.cursor.clone()..end)
            .take(self.chores.chunk())
        {
            let (key, value) = entry?;
            seen += 1;
            // The smallest key after this one.
            migration.cursor = key.to_vec();
            migration.cursor.push(0);
            let record = crate::store::decode_record(&value)?;
            if let Err(errors) = migration.new.validate(record.data(), false) {
                for (field, reason) in errors {
                    if migration.violations.len() < MAX_REPORTED_VIOLATIONS {
                        let key = format!("records.{}.{field}", record.id());
                        migration.violations.insert(key, reason);
                    }
                }
            }
            // Once the change is known to fail, its entries are waste.
            if migration.violations.is_empty() {
                for entry in entries_for(id, &migration.added, &record) {
                    batch.insert(entry, &[]);
                }
            }
        }
        self.store.apply(batch)?;
        Ok(seen < self.chores.chunk() || migration.violations.len() >= MAX_REPORTED_VIOLATIONS)
    }

    /// Ends a migration without switching: the new fields' entries (under
    /// their markers since it began) are removed in chunks.
    fn undo(&mut self, migration: Migration, outcome: Result<Committed, WriteError>) {
        for field in &migration.added {
            self.chores
                .push(Chore::DropIndex(migration.new.id, field.clone()));
        }
        self.late.push((migration.reply, outcome));
    }

    /// A drop ends the collection's migration: its request hears the
    /// collection is gone, and the purge removes every entry.
    pub(super) fn cancel_migration(&mut self, collection: u32, name: &str) {
        if let Some(migration) = self.migrations.remove(&collection) {
            let gone = WriteError::CollectionNotFound(name.to_owned());
            self.late.push((migration.reply, Err(gone)));
        }
    }

    /// During a migration of `collection`: checks a record being written
    /// against the new schema too, and gives the index entries of the new
    /// fields that it needs besides the current version's.
    pub(super) fn pending_entries(
        &self,
        collection: u32,
        record: &Record,
    ) -> Result<Vec<Vec<u8>>, WriteError> {
        let Some(migration) = self.migrations.get(&collection) else {
            return Ok(Vec::new());
        };
        migration
            .new
            .validate(record.data(), false)
            .map_err(WriteError::DoesNotFitNewSchema)?;
        Ok(entries_for(collection, &migration.added, record))
    }

    /// The index entries of the new fields that deleting `record` removes.
    pub(super) fn pending_entries_to_remove(
        &self,
        collection: u32,
        record: &Record,
    ) -> Vec<Vec<u8>> {
        self.migrations
            .get(&collection)
            .map(|m| entries_for(collection, &m.added, record))
            .unwrap_or_default()
    }

    pub(super) fn migrating(&self, collection: u32) -> bool {
        self.migrations.contains_key(&collection)
    }
}

#[cfg(test)]
#[path = "migration_tests.rs"]
mod tests;
