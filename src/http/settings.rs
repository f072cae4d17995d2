//! `/api/settings`: admins read every setting and change the runtime ones
//! (docs/configuration.md). Changes are stored before they take effect.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, JsonBody};
use super::AppState;
use crate::config::tunables::TUNABLES;
use crate::config::Durability;

/// `GET /api/settings` → `{name: {value, source, runtime, editable}}`.
pub async fn get_settings(State(state): State<AppState>, Admin(_): Admin) -> Json<Value> {
    Json(describe(&state))
}

/// `PATCH /api/settings {name: value | null}`: all or nothing; `null` returns
/// a setting to its startup value.
pub async fn update_settings(
    State(state): State<AppState>,
    Admin(_): Admin,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let worker = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        worker
            .live
            .change(&patch, &worker.settings.tunables, |overrides| {
                worker.store.save_runtime_settings(overrides)
            })
    })
    .await
    .map_err(ApiError::internal)??;
    if let Err(refused) = outcome {
        return Err(ApiError::validation(
            "some settings were not changed; nothing was",
            &refused.0,
        ));
    }
    tracing::info!("settings changed");
    Ok(Json(describe(&state)))
}

fn describe(state: &AppState) -> Value {
    let current = state.live.get();
    let mut out = Map::new();
    for tunable in TUNABLES {
        let source = state.live.source(tunable.name);
        out.insert(
            tunable.name.to_owned(),
            json!({
                "value": tunable.show(&current),
                "default": tunable.show(&Default::default()),
                "source": source,
                "runtime": true,
                "editable": !source.pinned(),
            }),
        );
    }
    let startup = &state.settings;
    let durability = match startup.durability {
        Durability::Sync => "sync",
        Durability::Relaxed => "relaxed",
    };
    let fixed = [
        ("http", json!(startup.http.to_string())),
        ("data", json!(startup.data.display().to_string())),
        ("durability", json!(durability)),
        ("flush_ms", json!(startup.flush_ms)),
        ("max_body_bytes", json!(startup.max_body_bytes)),
        ("trust_proxy", json!(startup.trust_proxy)),
        // Never the token itself: only whether one is set.
        (
            "metrics_token",
            json!(startup.metrics_token.as_ref().map(|_| "(set)")),
        ),
    ];
    for (name, value) in fixed {
        out.insert(
            name.to_owned(),
            json!({"value": value, "runtime": false, "editable": false}),
        );
    }
    Value::Object(out)
}
