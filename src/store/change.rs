//! Change-log entries: what realtime delivery and resume need, so neither has
//! to read the records themselves.

use serde::{Deserialize, Serialize};

use super::{codec, StoreError};
use crate::model::collection::EventOp;

/// `collection_id` of the `_users` topic's entries (collection ids start
/// at 1).
pub const USERS_ID: u32 = 0;
/// `collection_id` of an entry written before the log named collections by
/// id, whose collection was dropped since: it belongs to no collection
/// that exists, so it is never replayed into one.
pub const GONE_ID: u32 = u32::MAX;

/// Envelope version of [`Change`]; version 1 named the collection only,
/// version 2 had no `through`.
const FORMAT: u8 = 3;
const FORMAT_V2: u8 = 2;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    /// A delete made by retention (`reason: expired`).
    Expire,
    /// A whole collection was dropped with its records.
    DropCollection,
    /// Readings appended to a series collection: one block, the seqs
    /// `seq..=through`, one `create` event per reading.
    Append,
    /// A series collection's readings before `record_id` (a time, RFC 3339)
    /// were dropped, by retention or by an admin.
    Truncate,
}

impl ChangeKind {
    /// The kind of event a collection's `events` list names for this change.
    pub fn event_op(self) -> EventOp {
        match self {
            ChangeKind::Create | ChangeKind::Append => EventOp::Create,
            ChangeKind::Update => EventOp::Update,
            ChangeKind::Delete
            | ChangeKind::Expire
            | ChangeKind::DropCollection
            | ChangeKind::Truncate => EventOp::Delete,
        }
    }
}

/// A change-log entry. Stored under the key `c` + seq, so the seq is not
/// part of the stored value: handlers encode an entry before the writer
/// numbers it. (`serde(skip)` is symmetric, which bincode handles; only
/// conditional skips break it.)
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    #[serde(skip)]
    pub seq: u64,
    pub kind: ChangeKind,
    /// The collection by id, which is never reused: a dropped collection's
    /// history can never be taken for its namesake's. [`USERS_ID`] for
    /// `_users`.
    pub collection_id: u32,
    /// The topic's name when the change was made (the collection's name, or
    /// `_users`): for rendering and logs, never for matching.
    pub collection: String,
    pub record_id: String,
    /// The record after the change (JSON), for create and update.
    pub after: Option<Vec<u8>>,
    /// The record before the change (JSON), for update and delete.
    pub before: Option<Vec<u8>>,
    pub ts_ms: i64,
    /// Who made the change: a user id, or `None` for the system.
    pub actor: Option<String>,
    /// The last seq this entry covers: `seq` itself except for an
    /// [`ChangeKind::Append`], which covers one seq per reading. Set by the
    /// writer with `seq`, and stored (unlike `seq`) because nothing else
    /// tells where the block's range ends.
    pub through: u64,
}

/// A change as version 2 stored it.
#[derive(Deserialize)]
struct ChangeV2 {
    kind: ChangeKind,
    collection_id: u32,
    collection: String,
    record_id: String,
    after: Option<Vec<u8>>,
    before: Option<Vec<u8>>,
    ts_ms: i64,
    actor: Option<String>,
}

/// A change as version 1 stored it.
#[derive(Deserialize)]
struct ChangeV1 {
    kind: ChangeKind,
    collection: String,
    record_id: String,
    after: Option<Vec<u8>>,
    before: Option<Vec<u8>>,
    ts_ms: i64,
    actor: Option<String>,
}

impl Change {
    /// The entry of a series block: readings `first..=through` appended to
    /// a collection (the hub and replay expand it into one event each).
    pub fn append(
        collection_id: u32,
        collection: String,
        (first, through): (u64, u64),
        ts_ms: i64,
        actor: Option<String>,
    ) -> Change {
        Change {
            seq: first,
            kind: ChangeKind::Append,
            collection_id,
            collection,
            record_id: String::new(),
            after: None,
            before: None,
            ts_ms,
            actor,
            through,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode_as(FORMAT, self)
    }

    /// Decodes the current version. A version 1 entry comes back with
    /// [`GONE_ID`]; [`Change::upgrade`] gives it its id.
    pub fn decode(bytes: &[u8]) -> Result<Change, StoreError> {
        if bytes.first() == Some(&codec::FORMAT) {
            let old: ChangeV1 = codec::decode(bytes)?;
            return Ok(Change {
                seq: 0,
                kind: old.kind,
                collection_id: GONE_ID,
                collection: old.collection,
                record_id: old.record_id,
                after: old.after,
                before: old.before,
                ts_ms: old.ts_ms,
                actor: old.actor,
                through: 0,
            });
        }
        if bytes.first() == Some(&FORMAT_V2) {
            let old: ChangeV2 = codec::decode_as(FORMAT_V2, bytes)?;
            return Ok(Change {
                seq: 0,
                kind: old.kind,
                collection_id: old.collection_id,
                collection: old.collection,
                record_id: old.record_id,
                after: old.after,
                before: old.before,
                ts_ms: old.ts_ms,
                actor: old.actor,
                through: 0,
            });
        }
        codec::decode_as(FORMAT, bytes)
    }

    /// Sets the entry's seq as read from its key; `through` follows it
    /// unless the entry covers a range.
    pub fn at(mut self, seq: u64) -> Change {
        self.seq = seq;
        self.through = self.through.max(seq);
        self
    }

    /// Whether these bytes are a version 1 entry.
    pub fn is_v1(bytes: &[u8]) -> bool {
        bytes.first() == Some(&codec::FORMAT)
    }

    /// Names a version 1 entry's collection by id: the collection of that
    /// name that exists now, if it was created before the change was made;
    /// otherwise the change belonged to an earlier namesake, since dropped.
    pub fn upgrade(&mut self, now_named: Option<(u32, i64)>) {
        self.collection_id = if self.collection == "_users" {
            USERS_ID
        } else {
            match now_named {
                Some((id, created_ms)) if created_ms <= self.ts_ms => id,
                _ => GONE_ID,
            }
        };
    }
}
