//! Collection definitions as callers send them: parsed and checked with
//! every problem named by its path, for REST and the demo alike.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::model::collection::FieldErrors;
use crate::model::{Collection, CollectionDef};

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
