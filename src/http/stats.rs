//! `GET /api/stats` (admins): what the dashboard charts (`services::stats`).

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use super::error::ApiResult;
use super::extract::Admin;
use super::AppState;
use crate::services::stats;

pub async fn get_stats(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> ApiResult<Json<Value>> {
    Ok(Json(stats::collect(&state, &admin).await?))
}
