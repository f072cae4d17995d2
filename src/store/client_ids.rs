//! Which creates must look their id up before writing it.
//!
//! A client-chosen id is always looked up: it may be taken. A
//! server-generated id is a monotonic ULID, unique among server ids, so it
//! can only be taken by a client that chose the same text first (the next
//! ULID within a millisecond is the last one plus one, so it can be
//! guessed). Looking every id up would make the writer look up every record
//! of a batch (a sled lookup costs about as much as the insert beside it),
//! so the writer remembers the highest id a client stored that has the
//! generator's shape; a server id above it cannot exist yet, and only one
//! at or below it is looked up. Generated ids grow with time, so ingest of
//! server ids looks nothing up unless clients store ULIDs of their own
//! ahead of the server's clock.

use super::{keys, Store, StoreError};
use crate::ids::is_generated_shape;

pub struct ClientIds {
    /// The highest generated-shape id that may have come from a client.
    highest: Option<String>,
}

impl ClientIds {
    /// Starts from the highest generated-shape id stored in any collection:
    /// which of them clients chose is not recorded, so all count.
    pub fn load(store: &Store) -> Result<ClientIds, StoreError> {
        let mut highest: Option<String> = None;
        for collection in store.catalog().all() {
            let prefix_len = keys::record(collection.id, "").len();
            // Generated ids start with a digit from 0 to 7.
            let range = keys::record(collection.id, "0")..keys::record(collection.id, "8");
            let found = store.data().range(range).keys().rev().find_map(|key| {
                key.ok().and_then(|key| {
                    let id = std::str::from_utf8(&key[prefix_len..]).ok()?.to_owned();
                    is_generated_shape(&id).then_some(id)
                })
            });
            if let Some(id) = found {
                if highest.as_ref().is_none_or(|h| *h < id) {
                    highest = Some(id);
                }
            }
        }
        Ok(ClientIds { highest })
    }

    pub fn must_look_up(&self, id: &str, client_chose_id: bool) -> bool {
        client_chose_id || self.highest.as_deref().is_some_and(|h| id <= h)
    }

    /// Notes an id about to be stored (before it is: a write that then
    /// fails only makes later lookups more frequent, never wrong).
    pub fn storing(&mut self, id: &str, client_chose_id: bool) {
        if client_chose_id
            && is_generated_shape(id)
            && self.highest.as_deref().is_none_or(|h| h < id)
        {
            self.highest = Some(id.to_owned());
        }
    }
}
