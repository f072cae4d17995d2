//! Refresh tokens and sign-in sessions, in the `auth` tree.
//!
//! | key                          | value                                   |
//! |------------------------------|-----------------------------------------|
//! | `r` + SHA-256(refresh token) | refresh envelope                        |
//! | `s` + session id             | revoked-at ms, i64 BE: session revoked  |
//!
//! Only digests of refresh tokens are stored, so a copy of the database
//! does not hand out sessions.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{codec, Store, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RefreshEntry {
    pub user_id: String,
    pub session: String,
    pub expires_ms: i64,
    /// The user's token generation at issue; a later bump voids the token.
    pub generation: u64,
    /// Set once the token has been exchanged; presenting it again is reuse.
    pub rotated: bool,
}

fn refresh_key(token: &str) -> Vec<u8> {
    let mut key = vec![b'r'];
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

fn session_key(session: &str) -> Vec<u8> {
    let mut key = vec![b's'];
    key.extend_from_slice(session.as_bytes());
    key
}

impl Store {
    pub fn put_refresh(&self, token: &str, entry: &RefreshEntry) -> Result<(), StoreError> {
        self.auth.insert(refresh_key(token), codec::encode(entry))?;
        Ok(())
    }

    pub fn get_refresh(&self, token: &str) -> Result<Option<RefreshEntry>, StoreError> {
        match self.auth.get(refresh_key(token))? {
            Some(bytes) => codec::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Marks a refresh token as exchanged. Returns false when it already was
    /// (or changed meanwhile): of two concurrent exchanges exactly one wins.
    pub fn rotate_refresh(&self, token: &str, entry: &RefreshEntry) -> Result<bool, StoreError> {
        let old = codec::encode(entry);
        let new = codec::encode(&RefreshEntry {
            rotated: true,
            ..entry.clone()
        });
        Ok(self
            .auth
            .compare_and_swap(refresh_key(token), Some(old), Some(new))?
            .is_ok())
    }

    /// Revokes a session durably: its access and refresh tokens stop working.
    pub fn revoke_session(&self, session: &str) -> Result<(), StoreError> {
        let now = crate::clock::now_ms().to_be_bytes();
        self.auth.insert(session_key(session), &now)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every revoked session id, for the in-memory set that authentication
    /// checks (a sled read per request cost ~25 % of single-create
    /// throughput in the benchmark).
    pub fn revoked_sessions(&self) -> Result<Vec<String>, StoreError> {
        self.auth
            .scan_prefix([b's'])
            .keys()
            .map(|key| Ok(String::from_utf8_lossy(&key?[1..]).into_owned()))
            .collect()
    }
}
