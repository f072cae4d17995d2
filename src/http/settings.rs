//! `/api/settings`: admins read and change settings (`services::settings`).

use axum::extract::State;
use axum::Json;
use serde_json::{Map, Value};

use super::error::ApiResult;
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::services::settings;

/// `GET /api/settings` → `{name: {value, source, runtime, editable}}`.
pub async fn get_settings(State(state): State<AppState>, Admin(admin): Admin) -> Json<Value> {
    Json(settings::describe(&state, &admin))
}

/// `PATCH /api/settings {name: value | null}`: all or nothing.
pub async fn update_settings(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(settings::update(&state, &admin, patch).await?))
}
