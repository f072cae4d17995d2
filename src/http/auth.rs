//! Sign-in, sign-up, first-admin setup, refresh, sign-out and `me`
//! (`services::accounts`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::JsonBody;
use super::AppState;
use crate::auth::Principal;
use crate::services::account_mail::{self, Reset, ResetRequest, Verification};
use crate::services::accounts::{self, Credentials, PasswordChange, Session, Setup, SignUp};

fn session_body(session: Session) -> Json<Value> {
    let Session { user, tokens } = session;
    Json(json!({
        "token": tokens.token,
        "refresh_token": tokens.refresh_token,
        "expires_in": tokens.expires_in,
        "user": user.public_json(),
    }))
}

/// `GET /api/setup` → `{"needed": bool}`: whether the first admin is still
/// to be created with the printed code (the admin UI offers the form then).
pub async fn setup_state(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "needed": accounts::setup_needed(&state) }))
}

/// `POST /api/setup`: redeems the one-time code printed at start-up.
pub async fn setup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Setup>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let session = accounts::setup(&state, body).await?;
    Ok((StatusCode::CREATED, session_body(session)))
}

/// `POST /api/auth/signin`.
pub async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult<Json<Value>> {
    let address = super::extract::client_ip(&state, peer, &headers);
    Ok(session_body(
        accounts::sign_in(&state, address, body).await?,
    ))
}

/// `POST /api/auth/signup`, when the `allow_signup` setting is on.
pub async fn signup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SignUp>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let session = accounts::sign_up(&state, body).await?;
    Ok((StatusCode::CREATED, session_body(session)))
}

/// `GET /api/auth/me`.
pub async fn me(principal: Principal) -> ApiResult<Json<Value>> {
    Ok(Json(accounts::me(&principal)?.public_json()))
}

/// `POST /api/auth/password`: changes the caller's own password; the
/// answer is a new session, every other one ends.
pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    principal: Principal,
    JsonBody(body): JsonBody<PasswordChange>,
) -> ApiResult<Json<Value>> {
    let address = super::extract::client_ip(&state, peer, &headers);
    Ok(session_body(
        accounts::change_password(&state, &principal, address, body).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    refresh_token: String,
}

/// `POST /api/auth/refresh`: a new pair; the old refresh token stops working.
pub async fn refresh(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<Json<Value>> {
    Ok(session_body(
        accounts::refresh(&state, &body.refresh_token).await?,
    ))
}

/// `POST /api/auth/signout`: ends the session of the refresh token.
pub async fn signout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<StatusCode> {
    accounts::sign_out(&state, &body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/auth/request-reset`: 202 whatever the address; a reset link
/// goes to it if it has an account.
pub async fn request_reset(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<ResetRequest>,
) -> ApiResult<StatusCode> {
    account_mail::request_reset(&state, body)?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /api/auth/reset`: a new password through a mailed link.
pub async fn reset(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Reset>,
) -> ApiResult<StatusCode> {
    account_mail::reset(&state, body).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/auth/request-verification`: a link to the caller's address.
pub async fn request_verification(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<StatusCode> {
    account_mail::request_verification(&state, &principal).await?;
    Ok(StatusCode::ACCEPTED)
}

/// `POST /api/auth/verify`: the address of a mailed link is verified.
pub async fn verify(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Verification>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        account_mail::verify(&state, body).await?.public_json(),
    ))
}
