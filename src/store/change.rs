//! Change-log entries: what realtime delivery and resume need, so neither has
//! to read the records themselves.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeKind {
    Create,
    Update,
    Delete,
    /// A delete made by retention (`reason: expired`).
    Expire,
    /// A whole collection was dropped with its records.
    DropCollection,
}

impl ChangeKind {
    pub fn op(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete | ChangeKind::Expire => "delete",
            ChangeKind::DropCollection => "drop",
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
    /// The topic: the collection name, or `_users`.
    pub collection: String,
    pub record_id: String,
    /// The record after the change (JSON), for create and update.
    pub after: Option<Vec<u8>>,
    /// The record before the change (JSON), for update and delete.
    pub before: Option<Vec<u8>>,
    pub ts_ms: i64,
    /// Who made the change: a user id, or `None` for the system.
    pub actor: Option<String>,
}
