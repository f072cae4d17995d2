//! Settings: an admin reads every setting and changes the runtime ones
//! (docs/configuration.md). Changes are stored before they take effect,
//! all or nothing.

use serde_json::{json, Map, Value};

use crate::access::AdminPermit;
use crate::config::tunables::TUNABLES;
use crate::config::web::CorsOrigins;
use crate::config::Durability;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `{name: {value, source, runtime, editable}}` for every setting.
pub fn describe(state: &AppState, _: &AdminPermit) -> Value {
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
        ("cache_mb", json!(startup.cache_mb)),
        ("mqtt", json!(startup.mqtt.map(|addr| addr.to_string()))),
        ("mqtt_anonymous", json!(startup.mqtt_anonymous)),
        // Never the token itself: only whether one is set.
        (
            "metrics_token",
            json!(startup.metrics_token.as_ref().map(|_| "(set)")),
        ),
        cors_origins(&startup.web.cors_origins),
        (
            "public",
            json!(startup.web.public.as_ref().map(|p| p.display().to_string())),
        ),
        ("public_spa", json!(startup.web.public_spa)),
        // The URL holds the SMTP password.
        (
            "smtp_url",
            json!(startup.mail.smtp_url.as_ref().map(|_| "(set)")),
        ),
        ("smtp_from", json!(startup.mail.from)),
        ("app_url", json!(startup.mail.app_url)),
    ];
    for (name, value) in fixed {
        out.insert(
            name.to_owned(),
            json!({"value": value, "runtime": false, "editable": false}),
        );
    }
    Value::Object(out)
}

/// Applies `{name: value | null}` (`null` returns a setting to its startup
/// value) and answers every setting as it now is.
pub async fn update(
    state: &AppState,
    admin: &AdminPermit,
    patch: Map<String, Value>,
) -> ApiResult<Value> {
    let worker = state.clone();
    // Stored with an fsync, so off the async workers.
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
    Ok(describe(state, admin))
}

fn cors_origins(origins: &CorsOrigins) -> (&'static str, Value) {
    let value = match origins {
        CorsOrigins::Any => json!("*"),
        CorsOrigins::Only(list) => json!(list),
    };
    ("cors_origins", value)
}
