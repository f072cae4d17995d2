//! What a write can fail with; the HTTP layer renders each as the
//! contract's error shape (in the `error` module at the top of the crate).

use crate::model::collection::FieldErrors;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("a record with id {0} already exists")]
    Conflict(String),
    #[error("record {0} not found")]
    NotFound(String),
    #[error("record {id} is at rev {current}")]
    RevMismatch { id: String, current: u64 },
    #[error("the collection changed while the request was being prepared")]
    CollectionChanged,
    #[error("collection {0} not found")]
    CollectionNotFound(String),
    #[error("collection {0} already exists")]
    CollectionExists(String),
    #[error("a topic or collection named {0} already exists")]
    TopicExists(String),
    #[error("topic {0} not found")]
    TopicNotFound(String),
    #[error("user not found")]
    UserNotFound,
    #[error("that email is already registered")]
    EmailTaken,
    #[error("the last admin cannot be removed, disabled or demoted")]
    LastAdmin,
    #[error("existing records do not fit the new schema")]
    Invalid(FieldErrors),
    /// A record written while its collection changes must fit both the
    /// schema in force and the one being installed (`migration`).
    #[error("the record does not fit the schema the collection is changing to")]
    DoesNotFitNewSchema(FieldErrors),
    #[error("collection {0} is being changed; retry once that change is done")]
    CollectionBusy(String),
    #[error("storage failure: {0}")]
    Storage(String),
    /// The fsync failed after the write was applied in memory: a later flush
    /// may still persist it, so its outcome is unknown.
    #[error("the write could not be made durable; its outcome is unknown")]
    NotDurable,
    #[error("the writer is shutting down")]
    Unavailable,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Storage(e.to_string())
    }
}

impl From<sled::Error> for WriteError {
    fn from(e: sled::Error) -> Self {
        WriteError::Storage(e.to_string())
    }
}
