//! Tokens sent by mail (password reset, email verification), in the
//! `auth` tree under `m` + SHA-256(token): only digests are stored, so a
//! copy of the database cannot redeem them. Each is taken out as it is
//! redeemed, which makes it single use: of two redeemers at once, sled's
//! atomic remove hands the value to exactly one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{codec, Store, StoreError};

/// What a mailed token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    ResetPassword,
    VerifyEmail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailToken {
    pub purpose: Purpose,
    pub user_id: String,
    /// The address it was sent to: a token mailed to an address the user
    /// no longer has proves nothing about the new one.
    pub email: String,
    pub expires_ms: i64,
}

fn key(token: &str) -> Vec<u8> {
    let mut key = vec![b'm'];
    key.extend_from_slice(&Sha256::digest(token.as_bytes()));
    key
}

impl Store {
    /// Not durable yet: the caller waits for the writer's next fsync
    /// before the mail goes out.
    pub fn put_mail_token(&self, token: &str, entry: &MailToken) -> Result<(), StoreError> {
        self.auth.insert(key(token), codec::encode(entry))?;
        Ok(())
    }

    /// Takes the token out, whatever it is for; `None` if it is unknown or
    /// was taken before.
    pub fn take_mail_token(&self, token: &str) -> Result<Option<MailToken>, StoreError> {
        match self.auth.remove(key(token))? {
            Some(bytes) => codec::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Drops tokens that expired before `now_ms`; returns how many.
    pub fn prune_mail_tokens(&self, now_ms: i64) -> Result<usize, StoreError> {
        let mut pruned = 0;
        for entry in self.auth.scan_prefix([b'm']) {
            let (key, value) = entry?;
            let token: MailToken = codec::decode(&value)?;
            if token.expires_ms <= now_ms {
                self.auth.remove(key)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_ms: i64) -> MailToken {
        MailToken {
            purpose: Purpose::ResetPassword,
            user_id: "u".into(),
            email: "a@b.c".into(),
            expires_ms,
        }
    }

    #[test]
    fn a_mailed_token_is_taken_once_and_expired_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_mail_token("pr_live", &token(2_000)).unwrap();
        store.put_mail_token("pr_old", &token(500)).unwrap();
        assert_eq!(store.prune_mail_tokens(1_000).unwrap(), 1);
        assert!(store.take_mail_token("pr_old").unwrap().is_none());
        assert_eq!(
            store.take_mail_token("pr_live").unwrap(),
            Some(token(2_000))
        );
        assert!(store.take_mail_token("pr_live").unwrap().is_none());
    }
}
