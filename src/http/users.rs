//! `/api/users`: admins manage users (`services::users`).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::services::users::{self, ListParams, NewUser, UserPatch};

pub async fn list_users(
    State(state): State<AppState>,
    Admin(admin): Admin,
    params: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(params) = params?;
    let page = users::list(&state, &admin, params)?;
    Ok(Json(
        json!({"items": page.items, "next_cursor": page.next_cursor}),
    ))
}

pub async fn create_user_admin(
    State(state): State<AppState>,
    Admin(admin): Admin,
    JsonBody(body): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let user = users::create(&state, &admin, body).await?;
    Ok((StatusCode::CREATED, Json(user.public_json())))
}

pub async fn get_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(users::get(&state, &admin, &id)?.public_json()))
}

pub async fn update_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    JsonBody(patch): JsonBody<UserPatch>,
) -> ApiResult<Json<Value>> {
    let user = users::update(&state, &admin, &id, patch).await?;
    Ok(Json(user.public_json()))
}

pub async fn delete_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    users::delete(&state, &admin, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
