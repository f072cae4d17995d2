//! Stored values: one format-version byte, then bincode. bincode cannot read
//! back self-describing values (`serde_json::Value`), so JSON bodies travel
//! inside these envelopes as bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::User;

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

/// Users moved to format 2 when they gained `verified`.
const USER_FORMAT: u8 = 2;

pub fn encode_user(user: &User) -> Vec<u8> {
    encode_as(USER_FORMAT, user)
}

/// A stored user of either format: one written before `verified` existed
/// reads as unverified.
pub fn decode_user(bytes: &[u8]) -> Result<User, StoreError> {
    match bytes.first() {
        Some(&FORMAT) => decode_as::<UserV1>(FORMAT, bytes).map(UserV1::upgraded),
        _ => decode_as(USER_FORMAT, bytes),
    }
}

/// A user as format 1 stored it.
#[derive(Deserialize)]
struct UserV1 {
    id: String,
    email: String,
    name: String,
    roles: Vec<String>,
    groups: Vec<String>,
    tenant: Option<String>,
    disabled: bool,
    created: String,
    password_hash: String,
    generation: u64,
}

impl UserV1 {
    fn upgraded(self) -> User {
        User {
            id: self.id,
            email: self.email,
            name: self.name,
            roles: self.roles,
            groups: self.groups,
            tenant: self.tenant,
            disabled: self.disabled,
            created: self.created,
            password_hash: self.password_hash,
            generation: self.generation,
            verified: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let user = User {
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
            verified: true,
        };
        assert_eq!(decode_user(&encode_user(&user)).unwrap(), user);
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

    /// The bytes format 1 wrote for a user, before `verified`.
    #[test]
    fn a_user_stored_before_verification_existed_reads_as_unverified() {
        #[derive(Serialize)]
        struct Old<'a>(
            &'a str,
            &'a str,
            &'a str,
            Vec<String>,
            Vec<String>,
            Option<String>,
        );
        let mut bytes = encode(&Old("u1", "a@b.c", "A", vec!["x".into()], vec![], None));
        bincode::serialize_into(&mut bytes, &(true, "c", "h", 7u64)).unwrap();
        let user = decode_user(&bytes).unwrap();
        assert_eq!(
            (
                user.id.as_str(),
                user.disabled,
                user.generation,
                user.verified
            ),
            ("u1", true, 7, false)
        );
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
