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

const EXPIRED_REFRESH_KEPT_MS: i64 = 86_400_000;

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

    /// Revokes a session: its access and refresh tokens stop working. Not
    /// durable yet: the caller waits for the writer's next fsync
    /// (`Auth::revoke_session`), which covers every tree.
    pub fn revoke_session(&self, session: &str) -> Result<(), StoreError> {
        let now = crate::clock::now_ms().to_be_bytes();
        self.auth.insert(session_key(session), &now)?;
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

    /// Forgets what can no longer matter: refresh tokens that expired more
    /// than a day ago (until then a client still hears `token_expired`
    /// rather than "unknown token"), and revoke markers older than `marker_ttl_ms` whose session has no
    /// unexpired refresh token left. Returns the forgotten session ids.
    pub fn prune_sessions(
        &self,
        now_ms: i64,
        marker_ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut live_sessions = std::collections::HashSet::new();
        for entry in self.auth.scan_prefix([b'r']) {
            let (key, value) = entry?;
            let refresh: RefreshEntry = codec::decode(&value)?;
            if refresh.expires_ms + EXPIRED_REFRESH_KEPT_MS <= now_ms {
                self.auth.remove(key)?;
            } else {
                live_sessions.insert(refresh.session);
            }
        }
        let mut forgotten = Vec::new();
        for entry in self.auth.scan_prefix([b's']) {
            let (key, value) = entry?;
            let revoked_at = value
                .as_ref()
                .try_into()
                .map(i64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("session marker".into()))?;
            let session = String::from_utf8_lossy(&key[1..]).into_owned();
            if revoked_at < now_ms - marker_ttl_ms && !live_sessions.contains(&session) {
                self.auth.remove(key)?;
                forgotten.push(session);
            }
        }
        Ok(forgotten)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(session: &str, expires_ms: i64) -> RefreshEntry {
        RefreshEntry {
            user_id: "u".into(),
            session: session.into(),
            expires_ms,
            generation: 0,
            rotated: false,
        }
    }

    #[test]
    fn pruning_keeps_what_still_guards_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let now = crate::clock::now_ms();
        store
            .put_refresh(
                "rt_expired",
                &entry("old", now - EXPIRED_REFRESH_KEPT_MS - 1),
            )
            .unwrap();
        store
            .put_refresh("rt_just_expired", &entry("old2", now - 1))
            .unwrap();
        store
            .put_refresh("rt_live", &entry("busy", now + 60_000))
            .unwrap();
        for session in ["old", "busy", "recent"] {
            store.revoke_session(session).unwrap();
        }
        // A marker younger than the access-token bound stays; so does one
        // whose session still has an unexpired refresh token.
        let forgotten = store.prune_sessions(now + 10_000, 20_000).unwrap();
        assert!(forgotten.is_empty(), "{forgotten:?}");
        assert!(store.get_refresh("rt_expired").unwrap().is_none());
        assert!(store.get_refresh("rt_just_expired").unwrap().is_some());

        let forgotten = store.prune_sessions(now + 30_000, 20_000).unwrap();
        let mut forgotten = forgotten;
        forgotten.sort();
        assert_eq!(forgotten, ["old", "recent"]);
        assert_eq!(store.revoked_sessions().unwrap(), ["busy"]);
        assert!(store.get_refresh("rt_live").unwrap().is_some());
    }
}
