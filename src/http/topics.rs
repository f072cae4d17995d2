//! `/api/topics` (docs/realtime.md): list, create and delete custom topics, and
//! publish without holding a socket. The realtime actions share the logic
//! in `realtime::topics`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::extract::{client_ip, JsonBody};
use super::AppState;
use crate::auth::Principal;
use crate::protocol::server::{CustomTopic, TopicInfo};
use crate::services::topics::{self, NewTopic};

/// `GET /api/topics` → the topics the caller may subscribe to.
pub async fn list_topics(
    State(state): State<AppState>,
    principal: Principal,
) -> Json<Vec<TopicInfo>> {
    Json(topics::list_topics(&state, &principal))
}

/// `POST /api/topics {name, publish?, subscribe?, history?, presence?}` → 201.
pub async fn create_topic(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(body): JsonBody<NewTopic>,
) -> ApiResult<(StatusCode, Json<CustomTopic>)> {
    let topic = topics::create_topic(&state, &principal, body).await?;
    Ok((StatusCode::CREATED, Json(topics::custom_topic(&topic))))
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

/// `POST /api/topics/{name}/messages {data}` → 202 `{seq}`; at most
/// `message_rate` per second per caller (the principal, or for anonymous
/// callers their address), as on a WebSocket connection.
pub async fn publish(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    principal: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Publish>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let caller = match principal.id() {
        Some(id) => id,
        None => format!("address {}", client_ip(&state, peer, &headers)),
    };
    state
        .realtime
        .publish_rates
        .allow(&caller, state.live.get().message_rate)?;
    let seq = topics::publish(&state, &principal, &name, body.data).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"seq": seq}))))
}
