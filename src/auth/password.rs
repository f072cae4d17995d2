//! argon2id password hashing, off the async runtime and bounded so that a
//! burst of sign-ins cannot take every core.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use tokio::sync::Semaphore;

pub const MIN_PASSWORD_LEN: usize = 8;
/// Hashing cost grows with length; nobody needs more than this.
pub const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// Verified against when the email is unknown, so that answer takes as
    /// long as a wrong password.
    dummy: Arc<tokio::sync::OnceCell<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    #[error("password hashing failed")]
    Internal,
}

pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let len = password.chars().count();
    if len < MIN_PASSWORD_LEN {
        Err(PasswordError::TooShort)
    } else if len > MAX_PASSWORD_LEN {
        Err(PasswordError::TooLong)
    } else {
        Ok(())
    }
}

/// Hashes on the calling thread; for the CLI and tests.
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|_| PasswordError::Internal)
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher {
            permits: Arc::new(Semaphore::new(cores)),
            dummy: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        check_policy(&password)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Internal)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| PasswordError::Internal)?
    }

    /// `hash: None` (unknown user) still spends a full verification.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => match self
                .dummy
                .get_or_try_init(|| self.hash("not a real password".to_owned()))
                .await
            {
                Ok(dummy) => dummy.clone(),
                Err(_) => return false,
            },
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let matched = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .unwrap_or(false);
        known && matched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hasher = Hasher::new();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify("correct horse".into(), Some(hash.clone()))
                .await
        );
        assert!(!hasher.verify("wrong horse!".into(), Some(hash)).await);
        assert!(!hasher.verify("correct horse".into(), None).await);
    }

    #[test]
    fn policy() {
        assert!(matches!(
            check_policy("short"),
            Err(PasswordError::TooShort)
        ));
        assert!(check_policy("long enough").is_ok());
        assert!(matches!(
            check_policy(&"x".repeat(2000)),
            Err(PasswordError::TooLong)
        ));
    }
}
