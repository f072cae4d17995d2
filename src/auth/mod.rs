//! Identity: password hashing, access and refresh tokens, and the principal
//! a request acts as. Admin status always comes from the stored user, never
//! from a token claim.

pub mod api_key;
pub mod password;
pub mod session;
pub mod throttle;
pub mod token;

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock};

pub use crate::model::Principal;
pub use token::{TokenError, TokenPair};

use crate::config::Live;
use crate::store::writer::{Settle, WriteError, Writer};
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
    /// Session writes go to the `auth` tree directly, then wait on the
    /// writer for the fsync, like every other write (see `session`).
    writer: Writer,
    /// Token lifetimes are read per issue, so a runtime change applies to
    /// the next sign-in.
    pub(crate) live: Live,
    /// Told of every revoked session, once it is revoked (realtime closes
    /// the connections that session's tokens opened).
    on_revoked: Arc<OnceLock<RevokedHook>>,
}

type RevokedHook = Box<dyn Fn(&str) + Send + Sync>;

/// A credential whose lasting part was checked once ([`Auth::check`]).
pub enum Checked {
    /// An API key: looked up again each time (it may be revoked or expire).
    Key(String),
    /// An access token with a valid signature: what is left to check.
    Token(Box<Grant>),
}

/// The claims of a verified access token that can stop holding: kept
/// instead of the token (a few hundred bytes) by connections.
pub struct Grant {
    sub: String,
    sid: String,
    generation: u64,
    /// Seconds since the epoch.
    exp: i64,
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
    /// The write was made but could not be made durable (or the server is
    /// stopping).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A storage task panicked.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl Auth {
    pub fn new(store: Store, live: Live, writer: Writer) -> Result<Auth, StoreError> {
        let secret = token::load_or_create_secret(&store)?;
        Ok(Auth {
            tokens: token::TokenIssuer::new(&secret),
            passwords: password::Hasher::new(),
            throttle: Arc::default(),
            revoked: Arc::new(RwLock::new(store.revoked_sessions()?.into_iter().collect())),
            store,
            writer,
            live,
            on_revoked: Arc::default(),
        })
    }

    /// Sets what hears of each revoked session (once; later calls are
    /// ignored).
    pub fn on_session_revoked(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.on_revoked.set(Box::new(hook));
    }

    /// The sign-in session of an access token that verifies (`None` for API
    /// keys and anything else), for connections that must end with it.
    pub fn sign_in_of(&self, bearer: &str) -> Option<String> {
        self.tokens.verify(bearer).ok().map(|claims| claims.sid)
    }

    /// Resolves a bearer credential to a principal. The token's user must
    /// still exist, be enabled, and be at the token's generation.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        self.authenticate_until(bearer)
            .map(|(principal, _)| principal)
    }

    /// Like [`Auth::authenticate`], with when the credential expires (ms
    /// since the epoch), for connections that outlive a request.
    pub fn authenticate_until(&self, bearer: &str) -> Result<(Principal, Option<i64>), AuthError> {
        self.authenticate_checked(&self.check(bearer)?)
    }

    /// The part of authenticating `bearer` that stays true while the
    /// process runs: an access token's signature (the signing key is the
    /// process's). A connection keeps the result and passes it to
    /// [`Auth::authenticate_checked`] before each request.
    pub fn check(&self, bearer: &str) -> Result<Checked, AuthError> {
        if bearer.starts_with(api_key::PREFIX) {
            return Ok(Checked::Key(bearer.to_owned()));
        }
        let claims = self.tokens.verify(bearer).map_err(|e| match e {
            TokenError::Expired => AuthError::Expired,
            TokenError::Invalid => AuthError::InvalidToken,
        })?;
        Ok(Checked::Token(Box::new(Grant {
            sub: claims.sub,
            sid: claims.sid,
            generation: claims.generation,
            exp: claims.exp,
        })))
    }

    /// Who a checked credential acts as now, and when it expires (ms since
    /// the epoch): the token's expiry, its user (disabled, or its tokens
    /// revoked by a generation bump) and its session are read each time;
    /// an API key is looked up whole.
    pub fn authenticate_checked(
        &self,
        checked: &Checked,
    ) -> Result<(Principal, Option<i64>), AuthError> {
        let grant = match checked {
            Checked::Key(key) => {
                let principal = self.authenticate_key(key)?;
                let expires = match &principal {
                    Principal::ApiKey(key) => key.expires_ms,
                    _ => None,
                };
                return Ok((principal, expires));
            }
            Checked::Token(grant) => grant,
        };
        if grant.exp <= crate::clock::now_ms() / 1000 {
            return Err(AuthError::Expired);
        }
        let user = self
            .store
            .get_user(&grant.sub)?
            .ok_or(AuthError::InvalidToken)?;
        if user.disabled || user.generation != grant.generation || self.session_revoked(&grant.sid)
        {
            return Err(AuthError::InvalidToken);
        }
        Ok((
            Principal::User(Arc::new(user)),
            Some(grant.exp.saturating_mul(1000)),
        ))
    }

    pub fn session_revoked(&self, session: &str) -> bool {
        let revoked = self.revoked.read().unwrap_or_else(|e| e.into_inner());
        revoked.contains(session)
    }

    /// Drops expired refresh tokens and revoke markers no token can need:
    /// a marker is kept while its session has an unexpired refresh token,
    /// and for the access-token lifetime plus a day after revocation (the
    /// day covers a lifetime shortened at runtime after tokens were issued).
    pub fn prune_sessions(&self) -> Result<usize, AuthError> {
        let marker_ttl = self.live.get().token_ttl + std::time::Duration::from_secs(86_400);
        let forgotten = self
            .store
            .prune_sessions(crate::clock::now_ms(), marker_ttl.as_millis() as i64)?;
        self.store.prune_mail_tokens(crate::clock::now_ms())?;
        let mut revoked = self.revoked.write().unwrap_or_else(|e| e.into_inner());
        for session in &forgotten {
            revoked.remove(session);
        }
        Ok(forgotten.len())
    }

    /// Revokes a session durably (an fsync in either durability mode: a
    /// crash must not bring a revoked session back), then in memory, then
    /// tells the hook.
    pub async fn revoke_session(&self, session: &str) -> Result<(), AuthError> {
        let auth = self.clone();
        let session = session.to_owned();
        detached(async move { auth.revoke(&session).await }).await
    }

    async fn revoke(&self, session: &str) -> Result<(), AuthError> {
        let store = self.store.clone();
        let id = session.to_owned();
        blocking(move || store.revoke_session(&id)).await??;
        self.writer.settle(Settle::Always).await?;
        self.revoked
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(session.to_owned());
        if let Some(hook) = self.on_revoked.get() {
            hook(session);
        }
        Ok(())
    }
}

/// Runs sled work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AuthError::Task(e.to_string()))
}

/// Runs `work` to its end even if the caller goes away (hyper drops a
/// request's future when its client hangs up): a sign-out must not stop
/// between the stored marker and the in-memory set, nor a reuse go
/// unpunished, as neither did when they ran whole on a blocking thread.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, AuthError>> + Send + 'static,
) -> Result<T, AuthError> {
    tokio::spawn(work)
        .await
        .map_err(|e| AuthError::Task(e.to_string()))?
}
