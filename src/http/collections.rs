//! `/api/collections`: admins manage collections.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::model::record::merge_patch;
use crate::services::collections::parse_def;
use crate::store::writer::Mutation;

pub async fn create_collection(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let def = parse_def(body)?;
    let done = state.writer.submit(Mutation::CreateCollection(def)).await?;
    let collection = done
        .collection
        .ok_or_else(|| ApiError::internal("writer returned no collection"))?;
    Ok((StatusCode::CREATED, Json(collection.to_json())))
}

pub async fn list_collections(
    State(state): State<AppState>,
    Admin(_): Admin,
) -> ApiResult<Json<Value>> {
    let items: Vec<Value> = state
        .store
        .catalog()
        .all()
        .iter()
        .map(|c| c.to_json())
        .collect();
    Ok(Json(json!({ "items": items })))
}

pub async fn get_collection(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let collection = state
        .store
        .catalog()
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("collection {name} not found")))?;
    Ok(Json(collection.to_json()))
}

/// A merge patch over the current definition. The new schema is checked
/// against every stored record; any misfit refuses the change.
pub async fn update_collection(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(name): Path<String>,
    JsonBody(patch): JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let current = state
        .store
        .catalog()
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("collection {name} not found")))?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    if patch
        .get("name")
        .is_some_and(|n| n.as_str() != Some(name.as_str()))
    {
        return Err(ApiError::bad_request("a collection cannot be renamed"));
    }
    let Value::Object(mut merged) =
        serde_json::to_value(&current.def).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal("collection definition is not an object"));
    };
    merge_patch(&mut merged, patch);
    merged.insert("name".into(), Value::String(name));
    let def = parse_def(Value::Object(merged))?;
    let done = state.writer.submit(Mutation::UpdateCollection(def)).await?;
    let collection = done
        .collection
        .ok_or_else(|| ApiError::internal("writer returned no collection"))?;
    Ok(Json(collection.to_json()))
}

pub async fn delete_collection(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .writer
        .submit(Mutation::DropCollection {
            name,
            actor: admin.id(),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
