//! `/api/topics` (SPEC §6): list, create and delete custom topics, and
//! publish without holding a socket. The realtime actions share the logic
//! in `realtime::topics`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::JsonBody;
use super::AppState;
use crate::auth::Principal;
use crate::realtime::topics::{self, NewTopic};

/// `GET /api/topics` → the topics the caller may subscribe to.
pub async fn list_topics(State(state): State<AppState>, principal: Principal) -> Json<Value> {
    Json(Value::Array(topics::list_topics(&state, &principal)))
}

/// `POST /api/topics {name, publish?, subscribe?, history?}` → 201.
pub async fn create_topic(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewTopic>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let topic = topics::create_topic(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(topic.to_json())))
}

/// `DELETE /api/topics/{name}` → 204 for the owner or an admin.
pub async fn delete_topic(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    topics::delete_topic(&state, &principal, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    data: Value,
}

/// `POST /api/topics/{name}/messages {data}` → 202 `{seq}`.
pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Publish>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let seq = topics::publish(&state, &principal, &name, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"seq": seq}))))
}
