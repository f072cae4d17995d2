//! Accounts by mail: a forgotten password reset through a link, and an
//! email address proved by one. Links carry single-use tokens
//! (`store::mail_tokens`) that expire: 30 minutes for a reset, 3 days for
//! a verification. A token is stored durably before its mail goes out,
//! so a link never points at a token a crash forgot.
//!
//! Asking for a reset answers 202 at once, whether or not the address has
//! an account, and the lookup and the mail happen afterwards on their own
//! task: neither the answer nor its timing tells who has an account.

use std::sync::Arc;

use serde::Deserialize;

use super::users::{apply, password_hash};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::mail::Mailer;
use crate::model::user::normalize_email;
use crate::model::{User, UserChanges};
use crate::state::AppState;
use crate::store::mail_tokens::{MailToken, Purpose};
use crate::store::writer::Settle;

const RESET_TTL_MS: i64 = 30 * 60 * 1000;
const VERIFY_TTL_MS: i64 = 3 * 24 * 60 * 60 * 1000;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    pub token: String,
    pub password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Verification {
    pub token: String,
}

fn mailer(state: &AppState) -> ApiResult<Arc<Mailer>> {
    state.mailer.clone().ok_or_else(|| {
        ApiError::unavailable("mail is not set up on this server (the smtp_url setting)")
    })
}

/// `POST /api/auth/request-reset`: the same answer for every address;
/// the mail, if any, is sent afterwards.
pub fn request_reset(state: &AppState, request: ResetRequest) -> ApiResult<()> {
    let mailer = mailer(state)?;
    let email = normalize_email(&request.email);
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = send_reset(&state, &mailer, &email).await {
            tracing::warn!(error = %e.message, "password-reset mail not sent");
        }
    });
    Ok(())
}

async fn send_reset(state: &AppState, mailer: &Mailer, email: &str) -> ApiResult<()> {
    let Some(user) = state.store.user_by_email(email)? else {
        return Ok(());
    };
    if user.disabled || !mailer.may_send_to(&user.email) {
        return Ok(());
    }
    let token = issue(state, &user, Purpose::ResetPassword, RESET_TTL_MS).await?;
    let link = format!("{}/admin/#/reset-password/{token}", mailer.app_url);
    let body = format!(
        "Someone asked to reset the password of your account at {app}.\n\n\
         To choose a new password, open this link within 30 minutes:\n\n{link}\n\n\
         The link works once. If you did not ask for it, ignore this mail: \
         your password stays as it is.\n",
        app = mailer.app_url
    );
    mailer
        .send(&user.email, "Reset your password", body)
        .await
        .map_err(ApiError::internal)
}

/// `POST /api/auth/request-verification`: a link to the caller's own
/// address.
pub async fn request_verification(state: &AppState, principal: &Principal) -> ApiResult<()> {
    let mailer = mailer(state)?;
    let caller = principal
        .user()
        .ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    let user = state
        .store
        .get_user(&caller.id)?
        .ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    if user.verified {
        return Ok(());
    }
    if !mailer.may_send_to(&user.email) {
        return Err(ApiError::rate_limited(
            "a verification mail was sent less than a minute ago",
            60,
        ));
    }
    let token = issue(state, &user, Purpose::VerifyEmail, VERIFY_TTL_MS).await?;
    let link = format!("{}/admin/#/verify/{token}", mailer.app_url);
    let body = format!(
        "To confirm that {email} is your address at {app}, open this link \
         within 3 days:\n\n{link}\n\nIf you did not sign up, ignore this mail.\n",
        email = user.email,
        app = mailer.app_url
    );
    mailer
        .send(&user.email, "Confirm your email address", body)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "verification mail not sent");
            ApiError::unavailable("the mail server did not take the mail; try again later")
        })
}

/// A new token, on disk before it is mailed.
async fn issue(state: &AppState, user: &User, purpose: Purpose, ttl_ms: i64) -> ApiResult<String> {
    let token = crate::auth::token::random_token(match purpose {
        Purpose::ResetPassword => "pr_",
        Purpose::VerifyEmail => "ev_",
    });
    let entry = MailToken {
        purpose,
        user_id: user.id.clone(),
        email: user.email.clone(),
        expires_ms: crate::clock::now_ms() + ttl_ms,
    };
    let store = state.store.clone();
    let stored = token.clone();
    tokio::task::spawn_blocking(move || store.put_mail_token(&stored, &entry))
        .await
        .map_err(ApiError::internal)??;
    state.writer.settle(Settle::Always).await?;
    Ok(token)
}

/// Redeems a token of `purpose`: its user, if the token is known, unused,
/// unexpired and the user still has the address it was sent to.
fn redeem(state: &AppState, token: &str, purpose: Purpose) -> ApiResult<User> {
    let invalid = || {
        ApiError::validation(
            "invalid link",
            &[(
                "token".to_owned(),
                "is unknown, used or expired: ask for a new link".to_owned(),
            )]
            .into(),
        )
    };
    let entry = state.store.take_mail_token(token)?.ok_or_else(invalid)?;
    if entry.purpose != purpose || entry.expires_ms <= crate::clock::now_ms() {
        return Err(invalid());
    }
    match state.store.get_user(&entry.user_id)? {
        Some(user) if !user.disabled && user.email == entry.email => Ok(user),
        _ => Err(invalid()),
    }
}

/// `POST /api/auth/reset`: sets the new password (every sign-in of the
/// user ends) and, since the link reached their inbox, marks the address
/// verified.
pub async fn reset(state: &AppState, reset: Reset) -> ApiResult<()> {
    // Checked before the token is spent, so a weak password can be retried
    // with the same link.
    let hash = password_hash(state, "password", reset.password).await?;
    let user = redeem(state, &reset.token, Purpose::ResetPassword)?;
    let changes = UserChanges {
        password_hash: Some(hash),
        verified: Some(true),
        ..UserChanges::default()
    };
    apply(state, &user.id, changes).await?;
    Ok(())
}

/// `POST /api/auth/verify`: marks the address verified; the answer is the
/// user.
pub async fn verify(state: &AppState, verification: Verification) -> ApiResult<User> {
    let user = redeem(state, &verification.token, Purpose::VerifyEmail)?;
    let changes = UserChanges {
        verified: Some(true),
        ..UserChanges::default()
    };
    apply(state, &user.id, changes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{refused, state_with_records, stop};
    use crate::services::users::{insert, Profile};

    fn token_for(user: &User, purpose: Purpose, expires_ms: i64) -> MailToken {
        MailToken {
            purpose,
            user_id: user.id.clone(),
            email: user.email.clone(),
            expires_ms,
        }
    }

    fn reset_with(token: &str) -> Reset {
        Reset {
            token: token.to_owned(),
            password: "a-new-password".to_owned(),
        }
    }

    #[tokio::test]
    async fn expired_links_and_links_to_an_old_address_do_nothing() {
        let (_dir, state) = state_with_records(0).await;
        let password = "a-password".to_owned();
        let user = insert(&state, "u@example.com", password, Profile::default())
            .await
            .unwrap();
        let now = crate::clock::now_ms();
        let store = &state.store;
        store
            .put_mail_token(
                "pr_expired",
                &token_for(&user, Purpose::ResetPassword, now - 1),
            )
            .unwrap();
        store
            .put_mail_token(
                "ev_expired",
                &token_for(&user, Purpose::VerifyEmail, now - 1),
            )
            .unwrap();
        let mut moved = token_for(&user, Purpose::ResetPassword, now + 60_000);
        moved.email = "before@example.com".to_owned();
        store.put_mail_token("pr_moved", &moved).unwrap();

        for token in ["pr_expired", "pr_moved"] {
            let error = refused(reset(&state, reset_with(token)).await);
            assert_eq!(error.code, "validation_failed", "{token}");
        }
        let verification = Verification {
            token: "ev_expired".to_owned(),
        };
        assert_eq!(
            refused(verify(&state, verification).await).code,
            "validation_failed"
        );
        let stored = state.store.get_user(&user.id).unwrap().unwrap();
        assert_eq!(
            (stored.generation, stored.verified),
            (user.generation, false)
        );

        let live = token_for(&user, Purpose::ResetPassword, now + 60_000);
        store.put_mail_token("pr_live", &live).unwrap();
        reset(&state, reset_with("pr_live")).await.unwrap();
        let stored = state.store.get_user(&user.id).unwrap().unwrap();
        assert_eq!(
            (stored.generation, stored.verified),
            (user.generation + 1, true)
        );
        stop(state).await;
    }
}
