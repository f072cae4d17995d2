//! Sign-in sessions: an access token and a refresh token that share a
//! session id. Refresh tokens rotate on every use; presenting one that was
//! already exchanged means it leaked, so the whole session is revoked,
//! including the access tokens issued under it.
//!
//! Refresh tokens live in the `auth` tree, beside the writer's `data`
//! tree: they are written here, off the async workers, and then wait on
//! the writer ([`Writer::settle`](crate::store::writer::Writer::settle))
//! for the fsync that covers them, so in `sync` durability no token is
//! handed out that a crash could forget, and in `relaxed` the same
//! `flush_ms` bound holds as for every other write. Revocations always wait
//! for their fsync.

use super::{blocking, detached, Auth, AuthError, TokenPair};
use crate::clock;
use crate::model::User;
use crate::store::sessions::RefreshEntry;
use crate::store::writer::Settle;

/// What presenting a refresh token came to, before anything waits for disk.
enum Exchange {
    Issued(Box<(User, TokenPair)>),
    /// Presented a second time: the session must be revoked.
    Reused(String),
}

impl Auth {
    /// Starts a new session for a user who just proved who they are.
    pub async fn start_session(&self, user: &User) -> Result<TokenPair, AuthError> {
        let auth = self.clone();
        let user = user.clone();
        let pair = blocking(move || auth.issue(&user, &crate::ids::generate())).await??;
        self.writer.settle(Settle::AsConfigured).await?;
        Ok(pair)
    }

    fn issue(&self, user: &User, session: &str) -> Result<TokenPair, AuthError> {
        let settings = self.live.get();
        let token = self
            .tokens
            .access_token(user, session, settings.token_ttl)
            .map_err(|_| AuthError::InvalidToken)?;
        let refresh_token = super::token::random_token("rt_");
        self.store.put_refresh(
            &refresh_token,
            &RefreshEntry {
                user_id: user.id.clone(),
                session: session.to_owned(),
                expires_ms: clock::now_ms() + settings.refresh_ttl.as_millis() as i64,
                generation: user.generation,
                rotated: false,
            },
        )?;
        Ok(TokenPair {
            token,
            refresh_token,
            expires_in: settings.token_ttl.as_secs(),
        })
    }

    /// Exchanges a refresh token for a new pair in the same session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(User, TokenPair), AuthError> {
        let auth = self.clone();
        let presented = refresh_token.to_owned();
        detached(async move {
            let exchanger = auth.clone();
            match blocking(move || exchanger.exchange(&presented)).await?? {
                Exchange::Issued(issued) => {
                    // Covers the rotation of the old token and the new one.
                    auth.writer.settle(Settle::AsConfigured).await?;
                    Ok(*issued)
                }
                Exchange::Reused(session) => {
                    auth.revoke_session(&session).await?;
                    Err(AuthError::RefreshReused)
                }
            }
        })
        .await
    }

    fn exchange(&self, refresh_token: &str) -> Result<Exchange, AuthError> {
        let entry = self
            .store
            .get_refresh(refresh_token)?
            .ok_or(AuthError::InvalidToken)?;
        if self.session_revoked(&entry.session) {
            return Err(AuthError::InvalidToken);
        }
        if entry.rotated || !self.store.rotate_refresh(refresh_token, &entry)? {
            tracing::warn!(user = %entry.user_id, "refresh token reused; session revoked");
            return Ok(Exchange::Reused(entry.session));
        }
        if entry.expires_ms <= clock::now_ms() {
            return Err(AuthError::Expired);
        }
        let user = self
            .store
            .get_user(&entry.user_id)?
            .filter(|u| !u.disabled && u.generation == entry.generation)
            .ok_or(AuthError::InvalidToken)?;
        let pair = self.issue(&user, &entry.session)?;
        Ok(Exchange::Issued(Box::new((user, pair))))
    }

    /// Ends the session a refresh token belongs to. Unknown tokens are
    /// ignored, so signing out is idempotent.
    pub async fn end_session(&self, refresh_token: &str) -> Result<(), AuthError> {
        let auth = self.clone();
        let presented = refresh_token.to_owned();
        detached(async move {
            let store = auth.store.clone();
            if let Some(entry) = blocking(move || store.get_refresh(&presented)).await?? {
                auth.revoke_session(&entry.session).await?;
            }
            Ok(())
        })
        .await
    }
}
