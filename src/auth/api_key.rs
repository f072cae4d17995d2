//! API keys for devices and backends: `pbk_<key id>_<secret>`. The id lets
//! the server find the key without scanning; the whole string is compared
//! by digest in constant time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Auth, AuthError, Principal};
use crate::clock;
use crate::store::api_keys::ApiKey;

pub const PREFIX: &str = "pbk_";

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

impl Auth {
    /// Creates a key; the secret is returned this once and never again.
    pub fn create_api_key(
        &self,
        name: String,
        roles: Vec<String>,
        expires_ms: Option<i64>,
    ) -> Result<(ApiKey, String), AuthError> {
        let id = crate::ids::generate();
        let secret = format!("{PREFIX}{id}_{}", super::token::random_token(""));
        let api_key = ApiKey {
            secret_digest: digest(&secret),
            id,
            name,
            roles,
            created: clock::now_rfc3339(),
            expires_ms,
        };
        self.store.put_api_key(&api_key)?;
        Ok((api_key, secret))
    }

    /// Resolves a presented key to its principal.
    pub fn authenticate_key(&self, secret: &str) -> Result<Principal, AuthError> {
        let id = secret
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(AuthError::InvalidToken)?;
        let api_key = self.store.get_api_key(id)?.ok_or(AuthError::InvalidToken)?;
        if !bool::from(api_key.secret_digest.ct_eq(&digest(secret))) {
            return Err(AuthError::InvalidToken);
        }
        if api_key.expires_ms.is_some_and(|at| at <= clock::now_ms()) {
            return Err(AuthError::Expired);
        }
        Ok(Principal::ApiKey(Arc::new(api_key)))
    }
}
