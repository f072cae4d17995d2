//! Where the paths of the server itself are described: health, stats,
//! settings, backup, metrics, the JavaScript client and this document.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::schemas::{ErrorBody, Health, Setting, Stats};
use crate::protocol::requests::RequestLogPage;
use crate::services::logs::RequestLogParams;

/// Whether the server can write (503 once a write to disk failed)
#[utoipa::path(get, path = "/api/health", tag = "server", security(()),
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub fn health() {}

/// Counters for the admin dashboard (admins)
#[utoipa::path(get, path = "/api/stats", tag = "server",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Stats), (status = 403, body = ErrorBody)))]
pub fn stats() {}

/// The recent requests the server answered, newest first (admins)
///
/// Kept in memory only (the last 500); secrets in the query read
/// `[redacted]`.
#[utoipa::path(get, path = "/api/logs/requests", tag = "server",
    params(RequestLogParams), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = RequestLogPage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub fn request_log() {}

/// Every setting with its value and where it comes from (admins)
#[utoipa::path(get, path = "/api/settings", tag = "server",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BTreeMap<String, Setting>)))]
pub fn get_settings() {}

/// Change runtime settings, all or nothing (admins)
///
/// `null` returns a setting to its start-up value.
#[utoipa::path(patch, path = "/api/settings", tag = "server",
    request_body = BTreeMap<String, Value>, security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = BTreeMap<String, Setting>), (status = 400, body = ErrorBody)))]
pub fn update_settings() {}

/// A consistent snapshot of the whole database (admins)
///
/// Restore it with `pulsebase restore FILE --data DIR`.
#[utoipa::path(get, path = "/api/backup", tag = "server",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The backup file",
            content_type = "application/octet-stream", body = BackupFile,
            headers(("Content-Disposition" = String))),
        (status = 503, body = ErrorBody)))]
pub fn backup() {}

/// The bytes of a backup file.
pub struct BackupFile;

impl PartialSchema for BackupFile {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .content_media_type("application/octet-stream")
            .into()
    }
}

impl ToSchema for BackupFile {}

/// Prometheus metrics (admins, or `Bearer <metrics_token>`)
#[utoipa::path(get, path = "/metrics", tag = "server",
    security(("bearer" = []), ("api_key" = []), ("metrics_token" = [])),
    responses((status = 200, description = "Prometheus text format 0.0.4",
            content_type = "text/plain", body = String),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub fn metrics() {}

/// The JavaScript client, its TypeScript declarations and npm manifest
///
/// `pulsebase.mjs` is `pulsebase.js` under the name Node always loads as
/// an ES module. `If-None-Match` with the `ETag` answers 304.
#[utoipa::path(get, path = "/sdk/{path}", tag = "server", security(()),
    params(("path" = SdkFile, Path)),
    responses((status = 200, description = "The file (`text/javascript`, `application/typescript` or `application/json`)",
            content_type = "text/javascript", body = String, headers(("ETag" = String))),
        (status = 304), (status = 404, body = ErrorBody)))]
pub fn sdk() {}

/// The files under `/sdk/`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum SdkFile {
    #[schema(rename = "pulsebase.js")]
    Js,
    #[schema(rename = "pulsebase.mjs")]
    Mjs,
    #[schema(rename = "pulsebase.d.ts")]
    Declarations,
    #[schema(rename = "package.json")]
    Manifest,
}

/// This document: every endpoint of the server, as OpenAPI 3.1
#[utoipa::path(get, path = "/api/openapi.json", tag = "server", security(()),
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub fn openapi_json() {}
