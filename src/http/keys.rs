//! `/api/keys`: admins create, list and revoke API keys (`services::keys`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::services::keys::{self, NewKey};
use crate::store::api_keys::ApiKey;

fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id,
        "name": key.name,
        "roles": key.roles,
        "created": key.created,
        "expires": key.expires_ms.map(crate::clock::format_ms),
    })
}

/// `POST /api/keys` → 201 the key with its `secret`, shown this once.
pub async fn create_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonBody(body): JsonBody<NewKey>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (key, secret) = keys::create(&state, &admin, body).await?;
    let mut body = key_json(&key);
    body["secret"] = Value::String(secret);
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn list_keys(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = keys::list(&state, &admin)?.iter().map(key_json).collect();
    Ok(Json(json!({ "items": items })))
}

/// `DELETE /api/keys/{id}` → 204.
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    keys::revoke(&state, &admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
