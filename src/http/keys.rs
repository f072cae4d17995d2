//! `/api/keys`: admins create, list and revoke API keys.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::store::api_keys::ApiKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    /// RFC 3339; the key stops working then.
    expires: Option<String>,
}

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "roles": key.roles,
        "created": key.created,
        "expires": key.expires_ms.map(crate::clock::format_ms),
    })
}

fn invalid(field: &str, reason: &str) -> ApiError {
    ApiError::validation(
        "invalid API key",
        &[(field.to_owned(), reason.to_owned())].into(),
    )
}

/// `POST /api/keys` → 201 the key with its `secret`, shown this once.
pub async fn create_key(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    if body.roles.len() > 64 || body.roles.iter().any(|r| r.is_empty() || r.len() > 64) {
        return Err(invalid("roles", "at most 64 names of 1 to 64 characters"));
    }
    let expires_ms = match body.expires.as_deref() {
        None => None,
        Some(text) => match crate::clock::parse_ms(text) {
            Some(at) if at > crate::clock::now_ms() => Some(at),
            Some(_) => return Err(invalid("expires", "must be in the future")),
            None => return Err(invalid("expires", "must be an RFC 3339 timestamp")),
        },
    };
    let auth = state.auth.clone();
    let (key, secret) =
        tokio::task::spawn_blocking(move || auth.create_api_key(name, body.roles, expires_ms))
            .await
            .map_err(ApiError::internal)??;
    let mut body = key_json(&key);
    body["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list_keys(State(state): State<AppState>, Admin(_): Admin) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = state.store.api_keys()?.iter().map(key_json).collect();
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /api/keys/{id}`: the key stops working at once, and realtime
/// connections opened with it close.
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let store = state.store.clone();
    let key_id = id.clone();
    let existed = tokio::task::spawn_blocking(move || store.delete_api_key(&key_id))
        .await
        .map_err(ApiError::internal)??;
    if existed {
        state.realtime.principal_revoked(&id);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("no such API key"))
    }
}
