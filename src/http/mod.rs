//! HTTP: the router, shared state, and one file per resource.

pub mod assets;
pub mod auth;
pub mod backup;
pub mod collections;
pub mod cors;
pub mod error;
pub mod extract;
pub mod hyper_errors;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod public;
pub mod records;
pub mod request_log;
pub mod series;
pub mod serve;
pub mod settings;
pub mod sse_conn;
pub mod stats;
pub mod topics;
pub mod users;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::realtime;
pub use crate::state::{AppState, Shared};
use error::ApiError;

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let site = Router::new()
        .route("/", get(public::root))
        .route("/admin", get(assets::to_admin))
        .route("/admin/", get(assets::admin_index))
        .route("/admin/{*path}", get(assets::admin))
        .route("/metrics", get(metrics::scrape))
        // MQTT over WebSocket, when the MQTT listener is on: before the
        // files of `public`, like the other routes of the server.
        .merge(crate::mqtt::websocket::routes(&state))
        .fallback(public::fallback)
        .method_not_allowed_fallback(method_not_allowed);
    api_routes()
        // Unknown API paths answer in the API's words, with CORS headers
        // like the rest, not with a file of `public`.
        .route("/api/{*rest}", any(not_found))
        // Before the CORS layer, which must also see the requests no
        // method takes: a preflight is an OPTIONS.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors::layer(&state.settings.web.cors_origins))
        .merge(site)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(utf8_path))
        .layer(axum::middleware::from_fn(error::in_error_shape))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_log::record,
        ))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// The API, the SSE stream and the JavaScript client: what pages of other
/// origins may call (`cors_origins`).
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi::openapi_json))
        .route("/api/stats", get(stats::get_stats))
        .route(request_log::ROUTE, get(request_log::list_requests))
        .route("/api/backup", get(backup::download))
        .route("/sdk/{*path}", get(assets::sdk))
        .route("/api/setup", get(auth::setup_state).post(auth::setup))
        .route("/api/auth/signin", post(auth::signin))
        .route("/api/auth/signup", post(auth::signup))
        .route("/api/auth/refresh", post(auth::refresh))
        .route("/api/auth/signout", post(auth::signout))
        .route("/api/auth/me", get(auth::me))
        .route("/api/auth/password", post(auth::change_password))
        .route("/api/auth/request-reset", post(auth::request_reset))
        .route("/api/auth/reset", post(auth::reset))
        .route(
            "/api/auth/request-verification",
            post(auth::request_verification),
        )
        .route("/api/auth/verify", post(auth::verify))
        .route(
            "/api/settings",
            get(settings::get_settings).patch(settings::update_settings),
        )
        .route("/api/realtime", get(realtime::ws::websocket))
        .route("/api/realtime/sse", get(realtime::sse::sse))
        .route(
            "/api/topics",
            get(topics::list_topics).post(topics::create_topic),
        )
        .route(
            "/api/topics/{name}",
            axum::routing::delete(topics::delete_topic),
        )
        .route("/api/topics/{name}/messages", post(topics::publish))
        .route("/api/keys", get(keys::list_keys).post(keys::create_key))
        .route("/api/keys/{id}", axum::routing::delete(keys::revoke_key))
        .route(
            "/api/users",
            get(users::list_users).post(users::create_user_admin),
        )
        .route(
            "/api/users/{id}",
            get(users::get_user)
                .patch(users::update_user)
                .delete(users::delete_user),
        )
        .route(
            "/api/collections",
            get(collections::list_collections).post(collections::create_collection),
        )
        .route(
            "/api/collections/{name}",
            get(collections::get_collection)
                .patch(collections::update_collection)
                .delete(collections::delete_collection),
        )
        .route(
            "/api/collections/{name}/records",
            get(records::list_records)
                .post(records::create_records)
                .delete(series::delete_before),
        )
        .route("/api/collections/{name}/latest", get(series::latest))
        .route("/api/collections/{name}/aggregate", get(series::aggregate))
        .route("/api/v2/write", post(series::write_lines))
        .route(
            "/api/collections/{name}/records/{id}",
            get(records::get_record)
                .patch(records::patch_record)
                .put(records::replace_record)
                .delete(records::delete_record),
        )
}

/// The standard methods by name, anything else as `other`: a client can
/// send any token as a method, and each new label value would be a new
/// series kept for the life of the process.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// 200 `ok`, or 503 once storage has failed: sled refuses every write after
/// an I/O error (a full disk) until the process restarts, so a supervisor or
/// load balancer should see it and an operator should free space and
/// restart.
async fn health(State(state): State<AppState>) -> (StatusCode, Json<serde_json::Value>) {
    let version = env!("CARGO_PKG_VERSION");
    if state.writer.storage_failed() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "storage_failed",
                "version": version,
                "message": "a write to disk failed (full or broken disk?); writes are refused until the server restarts: free space, then restart",
            })),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"status": "ok", "version": version})),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// A path that is not UTF-8 once percent-decoded (`/api/collections/%FF`)
/// is refused before routing, whatever the route and the caller: every
/// name and id is UTF-8 text, so nothing could match it.
async fn utf8_path(request: Request, next: Next) -> Response {
    if std::str::from_utf8(&percent_decode(request.uri().path())).is_err() {
        return ApiError::bad_request("the path is not valid UTF-8 once percent-decoded")
            .into_response();
    }
    next.run(request).await
}

/// `%XX` escapes decoded; anything else (a stray `%` included) as is.
pub(crate) fn percent_decode(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

/// One line per request, and its metrics. Only the path is logged: query
/// strings may carry tokens. Metrics label the route pattern, never the
/// path, so record ids cannot grow the series without bound.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await.into_response();
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        %method,
        %path,
        status,
        latency_us = elapsed.as_micros() as u64,
        "request"
    );
    let labels = [
        ("method", method_label(&method).to_owned()),
        ("route", route),
        ("status", status.to_string()),
    ];
    ::metrics::counter!(crate::metrics::HTTP_REQUESTS, &labels).increment(1);
    ::metrics::histogram!(crate::metrics::HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding_takes_only_whole_hex_escapes() {
        assert_eq!(percent_decode("/a%20b/%e2%82%AC"), "/a b/€".as_bytes());
        assert_eq!(percent_decode("/%FF"), b"/\xff");
        assert_eq!(percent_decode("/100%/%+f/%4"), b"/100%/%+f/%4");
    }
}
