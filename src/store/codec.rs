//! Stored values: one format-version byte, then bincode. bincode cannot read
//! back self-describing values (`serde_json::Value`), so JSON bodies travel
//! inside these envelopes as bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Format version of every envelope written by this build.
pub const FORMAT: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(FORMAT, value)
}

/// For a type whose layout moved on to its own version (see `Change`).
pub fn encode_as<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = vec![format];
    // Serializing plain structs into a Vec cannot fail.
    if bincode::serialize_into(&mut out, value).is_err() {
        out.truncate(1);
    }
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    decode_as(FORMAT, bytes)
}

pub fn decode_as<T: DeserializeOwned>(format: u8, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&version, rest)) if version == format => {
            bincode::deserialize(rest).map_err(|e| StoreError::Corrupt(e.to_string()))
        }
        Some((version, _)) => Err(StoreError::Corrupt(format!(
            "unknown format version {version}"
        ))),
        None => Err(StoreError::Corrupt("empty value".into())),
    }
}

/// A record: its revision beside the JSON so the writer can check `If-Match`
/// without parsing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredRecord {
    pub rev: u64,
    pub json: Vec<u8>,
}

/// A collection definition (JSON, since it holds default values) with the
/// fields the server owns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredCollection {
    pub id: u32,
    pub version: u64,
    pub created: String,
    pub updated: String,
    pub def_json: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::User;
    use crate::store::change::{Change, ChangeKind};

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: T) {
        let bytes = encode(&value);
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode::<T>(&bytes).unwrap(), value);
    }

    #[test]
    fn every_stored_type_round_trips() {
        round_trip(StoredRecord {
            rev: 3,
            json: br#"{"a":1}"#.to_vec(),
        });
        round_trip(StoredCollection {
            id: 9,
            version: 2,
            created: "c".into(),
            updated: "u".into(),
            def_json: b"{}".to_vec(),
        });
        round_trip(User {
            id: "u1".into(),
            email: "a@b.c".into(),
            name: String::new(),
            roles: vec!["admin".into()],
            groups: vec![],
            tenant: None,
            disabled: false,
            created: "c".into(),
            password_hash: "h".into(),
            generation: 4,
        });
        // The seq lives in the key, not the value.
        let change = Change {
            seq: 0,
            kind: ChangeKind::Expire,
            collection_id: 7,
            collection: "readings".into(),
            record_id: "r1".into(),
            after: None,
            before: Some(b"{}".to_vec()),
            ts_ms: 1,
            actor: Some("u1".into()),
            through: 0,
        };
        assert_eq!(Change::decode(&change.encode()).unwrap(), change);
    }

    #[test]
    fn the_change_seq_is_not_stored() {
        let change = Change {
            seq: 12,
            kind: ChangeKind::Create,
            collection_id: 1,
            collection: "c".into(),
            record_id: "r".into(),
            after: None,
            before: None,
            ts_ms: 0,
            actor: None,
            through: 0,
        };
        assert_eq!(Change::decode(&change.encode()).unwrap().seq, 0);
    }

    #[test]
    fn unknown_versions_are_refused() {
        assert!(decode::<StoredRecord>(&[99, 0, 0]).is_err());
        assert!(decode::<StoredRecord>(&[]).is_err());
    }
}
