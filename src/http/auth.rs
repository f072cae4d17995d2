//! Sign-in, sign-up, first-admin setup, and `me`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::AppState;
use crate::auth::password::check_policy;
use crate::auth::Principal;
use crate::model::collection::FieldErrors;
use crate::model::user::{is_plausible_email, normalize_email};
use crate::model::User;
use crate::store::writer::Mutation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupBody {
    code: String,
    email: String,
    password: String,
    #[serde(default)]
    name: Option<String>,
}

/// Hashes the password and stores a new user; the caller decides the roles.
/// Who a new user is, apart from the password.
#[derive(Default)]
pub struct Profile {
    pub name: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
}

pub async fn create_user(
    state: &AppState,
    email: &str,
    password: String,
    profile: Profile,
) -> ApiResult<User> {
    let email = normalize_email(email);
    // Every problem at once, so a form can mark them all.
    let mut problems = FieldErrors::new();
    if !is_plausible_email(&email) {
        problems.insert("email".to_owned(), "must be an email address".to_owned());
    }
    if let Err(e) = check_policy(&password) {
        problems.insert("password".to_owned(), e.to_string());
    }
    for (field, names) in [("roles", &profile.roles), ("groups", &profile.groups)] {
        if let Some(problem) = super::users::names_problem(names) {
            problems.insert(field.to_owned(), problem.to_owned());
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation("invalid user", &problems));
    }
    let password_hash = state
        .auth
        .passwords
        .hash(password)
        .await
        .map_err(ApiError::internal)?;
    let user = User {
        id: crate::ids::generate(),
        email,
        name: profile.name.unwrap_or_default(),
        roles: profile.roles,
        groups: profile.groups,
        tenant: profile.tenant,
        disabled: false,
        created: crate::clock::now_rfc3339(),
        password_hash,
        generation: 0,
    };
    state
        .writer
        .submit(Mutation::CreateUser(user.clone()))
        .await?;
    Ok(user)
}

/// Starts a session, as durable as a write before it answers.
async fn session(state: &AppState, user: &User) -> ApiResult<Value> {
    let pair = state.auth.start_session(user).await?;
    Ok(session_body(pair, user))
}

fn session_body(pair: crate::auth::TokenPair, user: &User) -> Value {
    json!({
        "token": pair.token,
        "refresh_token": pair.refresh_token,
        "expires_in": pair.expires_in,
        "user": user.public_json(),
    })
}

/// `POST /api/setup`: redeems the one-time code printed at start-up.
/// `GET /api/setup` → `{"needed": bool}`: whether the first admin is still
/// to be created with the printed code (the admin UI offers the form then).
pub async fn setup_state(State(state): State<AppState>) -> Json<Value> {
    let needed = state
        .setup_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some();
    Json(json!({ "needed": needed }))
}

pub async fn setup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SetupBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let expected = state
        .setup_code
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let Some(expected) = expected else {
        return Err(ApiError::forbidden("setup is complete: an admin exists"));
    };
    if !bool::from(expected.as_bytes().ct_eq(body.code.trim().as_bytes())) {
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
        name: body.name,
        roles: vec!["admin".to_owned()],
        ..Profile::default()
    };
    let created = create_user(&state, &body.email, body.password, profile).await;
    let user = match created {
        Ok(user) => user,
        Err(e) => {
            // Nothing was created: the code stays valid for another try.
            *state.setup_code.lock().unwrap_or_else(|e| e.into_inner()) = Some(expected);
            return Err(e);
        }
    };
    tracing::info!(user = %user.id, "first admin created through setup");
    Ok((StatusCode::CREATED, Json(session(&state, &user).await?)))
}

/// `POST /api/auth/signin`: the same answer, in about the same time, for an
/// unknown email as for a wrong password.
pub async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Credentials>,
) -> ApiResult<Json<Value>> {
    let email = normalize_email(&body.email);
    let address = super::extract::client_ip(&state, peer, &headers).to_string();
    let throttle = &state.auth.throttle;
    if let Err(seconds) = throttle.check(&email, &address) {
        return Err(ApiError::rate_limited(
            "too many failed sign-ins; try again later",
            seconds,
        ));
    }
    let user = state.store.user_by_email(&email)?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state.auth.passwords.verify(body.password, hash).await;
    match user {
        Some(user) if matched && !user.disabled => {
            throttle.record_success(&email);
            Ok(Json(session(&state, &user).await?))
        }
        _ => {
            throttle.record_failure(&email, &address);
            Err(ApiError::invalid_credentials())
        }
    }
}

/// `POST /api/auth/signup`, when the `allow_signup` setting is on.
pub async fn signup(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<SignupBody>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if !state.live.get().allow_signup {
        return Err(ApiError::forbidden("sign-up is disabled on this server"));
    }
    let profile = Profile {
        name: body.name,
        ..Profile::default()
    };
    let user = create_user(&state, &body.email, body.password, profile).await?;
    Ok((StatusCode::CREATED, Json(session(&state, &user).await?)))
}

/// `GET /api/auth/me`.
pub async fn me(principal: Principal) -> ApiResult<Json<Value>> {
    match principal.user() {
        Some(user) => Ok(Json(user.public_json())),
        None => Err(ApiError::unauthorized("not signed in")),
    }
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
    let (user, pair) = state.auth.refresh(&body.refresh_token).await?;
    Ok(Json(session_body(pair, &user)))
}

/// `POST /api/auth/signout`: ends the session of the refresh token.
pub async fn signout(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<RefreshBody>,
) -> ApiResult<StatusCode> {
    state.auth.end_session(&body.refresh_token).await?;
    Ok(StatusCode::NO_CONTENT)
}
