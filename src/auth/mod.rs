//! Identity: password hashing, access and refresh tokens, and the principal
//! a request acts as. Admin status always comes from the stored user, never
//! from a token claim.

pub mod api_key;
pub mod password;
pub mod principal;
pub mod session;
pub mod throttle;
pub mod token;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use principal::Principal;
pub use token::{TokenError, TokenPair};

use crate::store::{Store, StoreError};

/// Everything needed to authenticate a request. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    pub tokens: token::TokenIssuer,
    pub passwords: password::Hasher,
    pub throttle: Arc<throttle::Throttle>,
    /// Revoked sessions, mirrored from the store so checking one costs no
    /// storage read.
    revoked: Arc<RwLock<HashSet<String>>>,
    pub(crate) store: Store,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid token")]
    InvalidToken,
    #[error("token expired")]
    Expired,
    #[error("refresh token reused")]
    RefreshReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Auth {
    pub fn new(
        store: Store,
        token_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<Auth, StoreError> {
        let secret = token::load_or_create_secret(&store)?;
        Ok(Auth {
            tokens: token::TokenIssuer::new(&secret, token_ttl, refresh_ttl),
            passwords: password::Hasher::new(),
            throttle: Arc::default(),
            revoked: Arc::new(RwLock::new(store.revoked_sessions()?.into_iter().collect())),
            store,
        })
    }

    /// Resolves a bearer credential to a principal. The token's user must
    /// still exist, be enabled, and be at the token's generation.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if bearer.starts_with(api_key::PREFIX) {
            return self.authenticate_key(bearer);
        }
        let claims = self.tokens.verify(bearer).map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            TokenError::Invalid => AuthError::InvalidToken,
        })?;
        let user = self
            .store
            .get_user(&claims.sub)?
            .ok_or(AuthError::InvalidToken)?;
        if user.disabled
            || user.generation != claims.generation
            || self.session_revoked(&claims.sid)
        {
            return Err(AuthError::InvalidToken);
        }
        Ok(Principal::User(Arc::new(user)))
    }

    pub fn session_revoked(&self, session: &str) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        revoked.contains(session)
    }

    /// Revokes a session durably, then in memory.
    pub fn revoke_session(&self, session: &str) -> Result<(), AuthError> {
        self.store.revoke_session(session)?;
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        revoked.insert(session.to_owned());
        Ok(())
    }
}
