//! `/api/collections`: admins manage collections (`services::collections`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::services::collections;

pub async fn create_collection(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let collection = collections::create(&state, &admin, body).await?;
    Ok((StatusCode::CREATED, Json(collection.to_json())))
}

pub async fn list_collections(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = collections::list(&state, &admin)
        .iter()
        .map(|c| c.to_json())
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn get_collection(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(collections::get(&state, &admin, &name)?.to_json()))
}

pub async fn update_collection(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let collection = collections::update(&state, &admin, &name, patch).await?;
    Ok(Json(collection.to_json()))
}

pub async fn delete_collection(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    collections::delete(&state, &admin, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
