//! `GET /api/openapi.json`: an OpenAPI 3.1 document of every endpoint,
//! built by `utoipa` from the request types (which derive their schemas)
//! and the `#[utoipa::path]` descriptions in this module's files, one per
//! area. tests/openapi.rs checks that every route of the router is here
//! and that real answers match the schemas.

// Their functions only carry a `#[utoipa::path]` and are never called.
#[allow(dead_code)]
mod accounts;
#[allow(dead_code)]
mod data;
#[allow(dead_code)]
mod realtime;
pub mod schemas;
#[allow(dead_code)]
mod server;

use axum::extract::State;
use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Response};
use utoipa::{Modify, OpenApi};

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pulsebase",
        description = "A realtime backend in one binary: records, rules, users, series \
            readings and live events. Errors have one shape (`ErrorBody`). Realtime \
            messages over WebSocket and SSE are described in docs/realtime.md.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        server::health,
        server::openapi_json,
        server::stats,
        server::request_log,
        server::get_settings,
        server::update_settings,
        server::backup,
        server::metrics,
        server::sdk,
        accounts::setup_state,
        accounts::setup,
        accounts::signin,
        accounts::signup,
        accounts::refresh,
        accounts::signout,
        accounts::me,
        accounts::change_password,
        accounts::request_reset,
        accounts::reset,
        accounts::request_verification,
        accounts::verify,
        accounts::list_users,
        accounts::create_user,
        accounts::get_user,
        accounts::update_user,
        accounts::delete_user,
        accounts::list_keys,
        accounts::create_key,
        accounts::revoke_key,
        data::list_collections,
        data::create_collection,
        data::get_collection,
        data::update_collection,
        data::delete_collection,
        data::list_records,
        data::create_records,
        data::delete_readings_before,
        data::get_record,
        data::patch_record,
        data::replace_record,
        data::delete_record,
        data::latest,
        data::aggregate,
        data::write_lines,
        realtime::list_topics,
        realtime::create_topic,
        realtime::delete_topic,
        realtime::publish,
        realtime::realtime_websocket,
        realtime::realtime_sse,
        realtime::mqtt_websocket,
    ),
    // Path parameters' schemas are not collected by themselves.
    components(schemas(schemas::ErrorBody, server::SdkFile)),
    modifiers(&SecuritySchemes, &ErrorsEverywhere),
    tags(
        (name = "auth", description = "Setup, sign-in, sessions and the caller's account"),
        (name = "users", description = "Users (admins)"),
        (name = "keys", description = "API keys for devices and backends (admins)"),
        (name = "collections", description = "Collections: schema, rules, events, indexes, retention (admins)"),
        (name = "records", description = "Records of a collection, under its rules"),
        (name = "series", description = "What only series collections (sensor readings) have"),
        (name = "topics", description = "Custom pub/sub topics"),
        (name = "realtime", description = "Live connections: WebSocket, SSE, MQTT over WebSocket"),
        (name = "server", description = "Health, stats, settings, backup, metrics, the JavaScript client"),
    ),
)]
struct ApiDoc;

/// The credentials the server reads (docs/api.md): one per request.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "An access token from a session (an HS256 JWT), or an API key's secret \
                 (`pbk_...`), which is not a JWT.",
            ))
            .build();
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        let schemes = [
            (
                "api_key",
                ApiKey::Header(ApiKeyValue::with_description(
                    "X-Api-Key",
                    "An API key's secret (`pbk_...`).",
                )),
            ),
            (
                "query_token",
                ApiKey::Query(ApiKeyValue::with_description(
                    "token",
                    "Realtime endpoints only: an access token or API key in the query, \
                     for clients that cannot set headers (EventSource).",
                )),
            ),
            (
                "influx_token",
                ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "InfluxDB's scheme, `Authorization: Token <API key or access token>`, \
                     read like Bearer.",
                )),
            ),
            (
                "metrics_token",
                ApiKey::Header(ApiKeyValue::with_description(
                    "Authorization",
                    "`/metrics` only: `Authorization: Bearer <metrics_token>` (the setting).",
                )),
            ),
        ];
        for (name, scheme) in schemes {
            components.add_security_scheme(name, SecurityScheme::ApiKey(scheme));
        }
    }
}

/// Every operation can fail, and every failure has the one error shape
/// (even the ones axum and hyper make): a `default` answer says so where
/// a path lists only its typical errors.
struct ErrorsEverywhere;

impl Modify for ErrorsEverywhere {
    fn modify(&self, openapi: &mut Document) {
        let error = Response::builder()
            .description("An error, in the one error shape (docs/api.md, Errors)")
            .content(
                "application/json",
                utoipa::openapi::Content::new(Some(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                operation
                    .responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| error.clone().into());
            }
        }
    }
}

/// The document for this server: `/mqtt` only when it is served.
pub fn document(mqtt_on: bool) -> Document {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if !mqtt_on {
        document
            .paths
            .paths
            .shift_remove(crate::mqtt::websocket::PATH);
    }
    document
}

/// `GET /api/openapi.json`, without auth.
pub async fn openapi_json(State(state): State<AppState>) -> Json<Document> {
    Json(document(state.settings.mqtt.is_some()))
}
