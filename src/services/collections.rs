//! Collections: what an admin does to them (create, list, read, change by
//! merge patch, drop), and definitions as callers send them, parsed and
//! checked with every problem named by its path, for REST and the demo
//! alike.

use std::sync::Arc;

use serde_json::Value;

use crate::access::AdminPermit;
use crate::error::{ApiError, ApiResult};
use crate::model::collection::FieldErrors;
use crate::model::record::merge_patch;
use crate::model::{Collection, CollectionDef};
use crate::state::AppState;
use crate::store::writer::{Committed, Mutation};

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("collection {name} not found"))
}

/// The collection a definition change committed, as the writer compiled it.
fn committed(done: Committed) -> ApiResult<Arc<Collection>> {
    done.collection
        .ok_or_else(|| ApiError::internal("writer returned no collection"))
}

pub async fn create(
    state: &AppState,
    _: &AdminPermit,
    definition: Value,
) -> ApiResult<Arc<Collection>> {
    let def = parse_def(definition)?;
    committed(state.writer.submit(Mutation::CreateCollection(def)).await?)
}

/// Every collection, by name.
pub fn list(state: &AppState, _: &AdminPermit) -> Vec<Arc<Collection>> {
    state.store.catalog().all()
}

pub fn get(state: &AppState, _: &AdminPermit, name: &str) -> ApiResult<Arc<Collection>> {
    state
        .store
        .catalog()
        .get(name)
        .ok_or_else(|| not_found(name))
}

/// A merge patch over the current definition. The writer checks the new
/// schema against every stored record; any misfit refuses the change.
pub async fn update(
    state: &AppState,
    admin: &AdminPermit,
    name: &str,
    patch: Value,
) -> ApiResult<Arc<Collection>> {
    let current = get(state, admin, name)?;
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    if patch.get("name").is_some_and(|n| n.as_str() != Some(name)) {
        return Err(ApiError::bad_request("a collection cannot be renamed"));
    }
    let Value::Object(mut merged) =
        serde_json::to_value(&current.def).map_err(ApiError::internal)?
    else {
        return Err(ApiError::internal("collection definition is not an object"));
    };
    merge_patch(&mut merged, patch);
    merged.insert("name".into(), Value::String(name.to_owned()));
    let def = parse_def(Value::Object(merged))?;
    // Stored readings were laid out by these three: they stay.
    let mut fixed = FieldErrors::new();
    for (part, same) in [
        ("kind", def.kind == current.def.kind),
        ("series", def.series == current.def.series),
        ("time", def.time == current.def.time),
    ] {
        if !same {
            fixed.insert(
                part.into(),
                "cannot change once the collection exists".into(),
            );
        }
    }
    if !fixed.is_empty() {
        return Err(ApiError::validation("invalid collection", &fixed));
    }
    committed(state.writer.submit(Mutation::UpdateCollection(def)).await?)
}

/// Drops a collection: gone from the catalog at once, its records purged
/// in chunks afterwards, the drop logged with the admin as its actor.
pub async fn delete(state: &AppState, admin: &AdminPermit, name: &str) -> ApiResult<()> {
    state
        .writer
        .submit(Mutation::DropCollection {
            name: name.to_owned(),
            actor: admin.id(),
        })
        .await?;
    Ok(())
}

pub fn parse_def(value: Value) -> ApiResult<CollectionDef> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::access;
    use crate::services::testing::{admin, refused, state_with_records, stop};

    fn permit() -> AdminPermit {
        access::admin(admin()).unwrap()
    }

    #[tokio::test]
    async fn a_patch_merges_into_the_definition_but_cannot_rename() {
        let (_dir, state) = state_with_records(1).await;
        let admin = permit();
        let renamed = update(&state, &admin, "c", json!({"name": "d"})).await;
        let error = refused(renamed);
        assert_eq!(
            (error.code, error.message.as_str()),
            ("bad_request", "a collection cannot be renamed")
        );
        let patch = json!({"name": "c", "fields": {"title": {"type": "string"}}});
        let changed = update(&state, &admin, "c", patch).await.unwrap();
        assert!(changed.def.fields.contains_key("title"));
        assert_eq!(get(&state, &admin, "c").unwrap().def.fields.len(), 1);
        let missing = update(&state, &admin, "nope", json!({})).await;
        assert_eq!(refused(missing).code, "not_found");
        stop(state).await;
    }

    #[tokio::test]
    async fn a_dropped_collection_is_gone_and_logged_with_its_admin() {
        let (_dir, state) = state_with_records(0).await;
        let admin = permit();
        delete(&state, &admin, "c").await.unwrap();
        assert!(list(&state, &admin).is_empty());
        let last = state.store.changes_after(0).last().unwrap().unwrap();
        assert_eq!(last.actor.as_deref(), Some("admin"));
        let again = delete(&state, &admin, "c").await;
        assert_eq!(refused(again).code, "not_found");
        stop(state).await;
    }
}
