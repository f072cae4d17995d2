//! Signing in and out: first-admin setup, sign-up, sign-in, refresh,
//! sign-out and who a caller is. Each flow ends with a session whose
//! tokens the transport hands back; the session's writes are as durable as
//! the server's writes before this answers (see `auth::session`).

use std::net::IpAddr;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::users::{apply, insert, password_hash, Profile};
use crate::auth::{Principal, TokenPair};
use crate::error::{ApiError, ApiResult};
use crate::model::user::normalize_email;
use crate::model::{User, UserChanges};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password, proving the caller is the user and not just
    /// someone holding their token.
    pub password: String,
    pub new_password: String,
}

/// A signed-in user and the session's tokens.
pub struct Session {
    pub user: User,
    pub tokens: TokenPair,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    pub code: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub name: Option<String>,
}

async fn start(state: &AppState, user: User) -> ApiResult<Session> {
    let tokens = state.auth.start_session(&user).await?;
    Ok(Session { user, tokens })
}

/// Whether the first admin is still to be created with the printed code.
pub fn setup_needed(state: &AppState) -> bool {
    state
        .setup_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
}

/// Redeems the one-time code printed at start-up: the first admin, signed in.
pub async fn setup(state: &AppState, setup: Setup) -> ApiResult<Session> {
    let expected = state
        .setup_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(expected) = expected else {
        return Err(ApiError::forbidden("setup is complete: an admin exists"));
    };
    if !bool::from(expected.as_bytes().ct_eq(setup.code.trim().as_bytes())) {
        return Err(ApiError::forbidden("wrong setup code"));
    }
    // Claim the code before the slow hash so two visitors cannot both redeem it.
    {
        let mut code = state.setup_code.lock().unwrap_or_else(|e| e.into_inner());
        if code.as_deref() != Some(expected.as_str()) {
            return Err(ApiError::forbidden("setup is complete: an admin exists"));
        }
        *code = None;
    }
    let profile = Profile {
        name: setup.name,
        roles: vec!["admin".to_owned()],
        ..Profile::default()
    };
    let user = match insert(state, &setup.email, setup.password, profile).await {
        Ok(user) => user,
        Err(e) => {
            // Nothing was created: the code stays valid for another try.
            *state.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = Some(expected);
            return Err(e);
        }
    };
    tracing::info!(user = %user.id, "first admin created through setup");
    start(state, user).await
}

/// The same refusal, in about the same time, for an unknown email as for
/// a wrong password; failures are throttled by email and by `address`.
pub async fn sign_in(
    state: &AppState,
    address: IpAddr,
    credentials: Credentials,
) -> ApiResult<Session> {
    let email = normalize_email(&credentials.email);
    let address = address.to_string();
    let throttle = &state.auth.throttle;
    if let Err(seconds) = throttle.check(&email, &address) {
        return Err(ApiError::rate_limited(
            "too many failed sign-ins; try again later",
            seconds,
        ));
    }
    let user = state.store.user_by_email(&email)?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state
        .auth
        .passwords
        .verify(credentials.password, hash)
        .await;
    match user {
        Some(user) if matched && !user.disabled => {
            throttle.record_success(&email);
            start(state, user).await
        }
        _ => {
            throttle.record_failure(&email, &address);
            Err(ApiError::invalid_credentials())
        }
    }
}

/// A new user without roles, signed in, when the `allow_signup` setting is
/// on.
pub async fn sign_up(state: &AppState, sign_up: SignUp) -> ApiResult<Session> {
    if !state.live.get().allow_signup {
        return Err(ApiError::forbidden("sign-up is disabled on this server"));
    }
    let profile = Profile {
        name: sign_up.name,
        ..Profile::default()
    };
    let user = insert(state, &sign_up.email, sign_up.password, profile).await?;
    start(state, user).await
}

/// The signed-in user; API keys and anonymous callers are not one.
pub fn me(principal: &Principal) -> ApiResult<&User> {
    principal
        .user()
        .ok_or_else(|| ApiError::unauthorized("not signed in"))
}

/// Changes the caller's own password, once the current one is checked
/// (wrong tries are throttled like sign-ins). Every token the user holds
/// stops working, this caller's too; the answer is a new session, so the
/// caller stays signed in and every other sign-in is signed out.
pub async fn change_password(
    state: &AppState,
    principal: &Principal,
    address: IpAddr,
    change: PasswordChange,
) -> ApiResult<Session> {
    let caller = me(principal)?;
    let address = address.to_string();
    let throttle = &state.auth.throttle;
    if let Err(seconds) = throttle.check(&caller.email, &address) {
        return Err(ApiError::rate_limited(
            "too many wrong passwords; try again later",
            seconds,
        ));
    }
    // As stored now: the token's copy may predate another change.
    let stored = state.store.get_user(&caller.id)?;
    let hash = stored.as_ref().map(|u| u.password_hash.clone());
    if !state.auth.passwords.verify(change.password, hash).await {
        throttle.record_failure(&caller.email, &address);
        return Err(ApiError::validation(
            "wrong password",
            &[(
                "password".to_owned(),
                "is not your current password".to_owned(),
            )]
            .into(),
        ));
    }
    let changes = UserChanges {
        password_hash: Some(password_hash(state, "new_password", change.new_password).await?),
        ..UserChanges::default()
    };
    let user = apply(state, &caller.id, changes).await?;
    start(state, user).await
}

/// A new pair in the same session; the old refresh token stops working.
pub async fn refresh(state: &AppState, refresh_token: &str) -> ApiResult<Session> {
    let (user, tokens) = state.auth.refresh(refresh_token).await?;
    Ok(Session { user, tokens })
}

/// Ends the session of a refresh token; an unknown one is not an error, so
/// signing out twice is fine.
pub async fn sign_out(state: &AppState, refresh_token: &str) -> ApiResult<()> {
    state.auth.end_session(refresh_token).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{refused, state_with_records, stop};

    /// The stable code and the message of a refusal.
    fn refusal(result: ApiResult<impl Sized>) -> (&'static str, String) {
        let error = refused(result);
        (error.code, error.message)
    }

    /// The tokens of a fresh sign-in of a new plain user.
    async fn signed_in(state: &AppState) -> TokenPair {
        let user = insert(
            state,
            "u@example.com",
            "password-123".to_owned(),
            Profile::default(),
        )
        .await
        .unwrap();
        start(state, user).await.unwrap().tokens
    }

    fn setup_with(code: &str, password: &str) -> Setup {
        Setup {
            code: code.to_owned(),
            email: "first@example.com".to_owned(),
            password: password.to_owned(),
            name: None,
        }
    }

    #[tokio::test]
    async fn the_setup_code_is_redeemed_once_and_survives_a_failed_try() {
        let (_dir, state) = state_with_records(0).await;
        *state.setup_code.lock().unwrap() = Some("code-1".to_owned());
        let wrong = setup(&state, setup_with("code-2", "password-123")).await;
        assert_eq!(refusal(wrong), ("forbidden", "wrong setup code".to_owned()));
        let weak = setup(&state, setup_with("code-1", "short")).await;
        assert_eq!(refusal(weak).0, "validation_failed");
        assert!(setup_needed(&state), "a failed try keeps the code");

        let session = setup(&state, setup_with(" code-1 ", "password-123"))
            .await
            .unwrap();
        assert!(session.user.is_admin());
        assert!(state.auth.authenticate(&session.tokens.token).is_ok());
        assert!(!setup_needed(&state));
        let again = setup(&state, setup_with("code-1", "password-123")).await;
        assert_eq!(
            refusal(again),
            ("forbidden", "setup is complete: an admin exists".to_owned())
        );
        stop(state).await;
    }

    #[tokio::test]
    async fn sign_up_is_refused_unless_allowed() {
        let (_dir, state) = state_with_records(0).await;
        let new = SignUp {
            email: "u@example.com".to_owned(),
            password: "password-123".to_owned(),
            name: None,
        };
        assert_eq!(
            refusal(sign_up(&state, new).await),
            ("forbidden", "sign-up is disabled on this server".to_owned())
        );
        assert!(state.store.users().unwrap().is_empty());
        stop(state).await;
    }

    #[tokio::test]
    async fn a_reused_refresh_token_ends_its_session() {
        let (_dir, state) = state_with_records(0).await;
        let first = signed_in(&state).await;
        let second = refresh(&state, &first.refresh_token).await.unwrap().tokens;
        assert!(state.auth.authenticate(&second.token).is_ok());
        let reused = refresh(&state, &first.refresh_token).await;
        assert_eq!(refusal(reused).0, "unauthorized");
        // Every token of the session stops working, the newest included.
        assert!(state.auth.authenticate(&second.token).is_err());
        assert_eq!(
            refusal(refresh(&state, &second.refresh_token).await).0,
            "unauthorized"
        );
        // Signing out of an ended (or unknown) session is fine.
        sign_out(&state, &second.refresh_token).await.unwrap();
        sign_out(&state, "rt_unknown").await.unwrap();
        stop(state).await;
    }

    /// A sign-out whose caller goes away (the client hangs up) still
    /// revokes the session: it runs to its end on its own task.
    #[tokio::test]
    async fn a_sign_out_finishes_when_its_caller_goes_away() {
        use futures_util::FutureExt as _;

        let (_dir, state) = state_with_records(0).await;
        let tokens = signed_in(&state).await;
        let session = state.auth.sign_in_of(&tokens.token).unwrap();
        // Polled once, then dropped.
        let _ = sign_out(&state, &tokens.refresh_token).now_or_never();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !state.auth.session_revoked(&session) {
            assert!(
                std::time::Instant::now() < deadline,
                "the session was never revoked"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(state.auth.authenticate(&tokens.token).is_err());
        stop(state).await;
    }
}
