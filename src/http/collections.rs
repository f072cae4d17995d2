//! `/api/collections`: admins manage collections.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::model::collection::FieldErrors;
use crate::model::record::merge_patch;
use crate::model::{Collection, CollectionDef};
use crate::store::writer::Mutation;

pub(crate) fn parse_def(value: Value) -> ApiResult<CollectionDef> {
    // A definition of the wrong shape (an unknown type, `enum` not a list)
    // is named by its path like any other problem, so a form can show it
    // where it occurs.
    let def: CollectionDef = serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let errors: FieldErrors = [(detail_key(&e.path().to_string(), &message), message)].into();
        ApiError::validation("invalid collection", &errors)
    })?;
    // Compile once here for a complete error report; the writer compiles
    // again when it commits.
    Collection::compile(0, 0, String::new(), String::new(), def.clone())
        .map_err(|errors| ApiError::validation("invalid collection", &errors))?;
    Ok(def)
}

/// A serde path as our details name things: `events[1]` → `events.1`, and
/// a missing top-level key by its name.
fn detail_key(path: &str, message: &str) -> String {
    if path == "." {
        return message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .unwrap_or("definition")
            .to_owned();
    }
    path.replace('[', ".").replace(']', "")
}

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
