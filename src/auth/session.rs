//! Sign-in sessions: an access token and a refresh token that share a
//! session id. Refresh tokens rotate on every use; presenting one that was
//! already exchanged means it leaked, so the whole session is revoked,
//! including the access tokens issued under it.

use super::{Auth, AuthError, TokenPair};
use crate::clock;
use crate::model::User;
use crate::store::sessions::RefreshEntry;

impl Auth {
    /// Starts a new session for a user who just proved who they are.
    pub fn start_session(&self, user: &User) -> Result<TokenPair, AuthError> {
        self.issue(user, &crate::ids::generate())
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
    pub fn refresh(&self, refresh_token: &str) -> Result<(User, TokenPair), AuthError> {
        let entry = self
            .store
            .get_refresh(refresh_token)?
            .ok_or(AuthError::InvalidToken)?;
        if self.session_revoked(&entry.session) {
            return Err(AuthError::InvalidToken);
        }
        if entry.rotated || !self.store.rotate_refresh(refresh_token, &entry)? {
            self.revoke_session(&entry.session)?;
            tracing::warn!(user = %entry.user_id, "refresh token reused; session revoked");
            return Err(AuthError::RefreshReused);
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
        Ok((user, pair))
    }

    /// Ends the session a refresh token belongs to. Unknown tokens are
    /// ignored, so signing out is idempotent.
    pub fn end_session(&self, refresh_token: &str) -> Result<(), AuthError> {
        if let Some(entry) = self.store.get_refresh(refresh_token)? {
            self.revoke_session(&entry.session)?;
        }
        Ok(())
    }
}
