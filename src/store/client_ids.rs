//! Which creates must look their id up before writing it.
//!
//! A client-chosen id is always looked up: it may be taken. A
//! server-generated id is a monotonic ULID, unique among server ids, so it
//! can only be taken by a client that chose the same text first (the next
//! ULID within a millisecond is the last one plus one, so it can be
//! guessed). Looking every id up would make the writer look up every record
//! of a batch (a sled lookup costs about as much as the insert beside it),
//! so the writer keeps, per collection, a bound at or above every id of the
//! generator's shape a client may have stored there; a server id above it
//! cannot exist yet, and only one at or below it is looked up. Generated
//! ids grow with time, so ingest of server ids looks nothing up unless
//! clients store ULIDs of their own ahead of the server's clock.

use std::collections::HashMap;

use super::{keys, Store, StoreError};
use crate::ids::is_generated_shape;

/// The highest text a generated id can have.
const HIGHEST_GENERATED: &str = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ";
/// Keys looked at per collection on start before settling for a bound.
const START_WALK: usize = 64;

pub struct ClientIds {
    /// Collection id → an id at or above every generated-shape id a client
    /// may have stored in it.
    bounds: HashMap<u32, String>,
}

impl ClientIds {
    /// Which of the stored ids clients chose is not recorded, so on start
    /// every stored id counts: the bound is the highest generated-shape id
    /// of each collection, or, when other ids (numbers, UUIDs) crowd the
    /// end of that range, the lowest of the last few looked at, which is
    /// still above every generated-shape id below it.
    pub fn load(store: &Store) -> Result<ClientIds, StoreError> {
        let mut bounds = HashMap::new();
        for collection in store.catalog().all() {
            let prefix_len = keys::record(collection.id, "").len();
            let range =
                keys::record(collection.id, "0")..=keys::record(collection.id, HIGHEST_GENERATED);
            let mut bound = None;
            for key in store.data().range(range).keys().rev().take(START_WALK) {
                let key = key?;
                let id =
                    String::from_utf8_lossy(key.get(prefix_len..).unwrap_or_default()).into_owned();
                let generated = is_generated_shape(&id);
                bound = Some(id);
                if generated {
                    break;
                }
            }
            if let Some(bound) = bound {
                bounds.insert(collection.id, bound);
            }
        }
        Ok(ClientIds { bounds })
    }

    pub fn must_look_up(&self, collection: u32, id: &str, client_chose_id: bool) -> bool {
        client_chose_id
            || self
                .bounds
                .get(&collection)
                .is_some_and(|bound| id <= bound.as_str())
    }

    /// Notes an id about to be stored (before it is: a write that then
    /// fails only makes later lookups more frequent, never wrong).
    pub fn storing(&mut self, collection: u32, id: &str, client_chose_id: bool) {
        if !client_chose_id || !is_generated_shape(id) {
            return;
        }
        let bound = self.bounds.entry(collection).or_default();
        if bound.as_str() < id {
            id.clone_into(bound);
        }
    }
}
