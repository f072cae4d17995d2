//! What only series collections have over HTTP: `latest`, `aggregate`,
//! dropping old readings, and InfluxDB's `/api/v2/write`. Ingest, listing
//! and one reading share the record routes (`http::records` hands series
//! collections to `services::series`).

use std::collections::HashMap;
use std::io::Read as _;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::Admin;
use super::AppState;
use crate::auth::Principal;
use crate::series::line_protocol::Precision;
use crate::services::series::{self, LatestParams};

/// The `Idempotency-Key` header, if any.
pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .map(|v| v.trim().to_owned())
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))
        })
        .transpose()
}

pub async fn latest(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    params: Result<Query<LatestParams>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params?;
    // Already JSON: written by the service straight from the readings.
    let body = series::latest(&state, &principal, &name, params).await?;
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

pub async fn aggregate(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(params) = params?;
    let answer = series::aggregate(&state, &principal, &name, params).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], answer.json).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    before: Option<String>,
}

/// `DELETE /api/collections/{c}/records?before=TIME` (series, admins).
pub async fn delete_before(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    params: Result<Query<DeleteParams>, QueryRejection>,
) -> ApiResult<StatusCode> {
    let Query(params) = params?;
    let before = params.before.ok_or_else(|| {
        ApiError::bad_request("say which readings to drop: ?before=TIME (RFC 3339 or ms)")
    })?;
    series::delete_before(&state, &admin, &name, &before).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct WriteParams {
    bucket: Option<String>,
    precision: Option<String>,
    // InfluxDB clients send their organisation; one server has one.
    #[allow(dead_code)]
    org: Option<String>,
    #[allow(dead_code)]
    #[serde(rename = "orgID")]
    org_id: Option<String>,
}

/// `POST /api/v2/write?bucket=C&precision=ns|us|ms|s`: 204 like InfluxDB.
pub async fn write_lines(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<WriteParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    let Query(params) = params?;
    let bucket = params
        .bucket
        .ok_or_else(|| ApiError::bad_request("say which collection: ?bucket=NAME"))?;
    let precision = match params.precision.as_deref() {
        None => Precision::default(),
        Some(text) => Precision::from_query(text)
            .ok_or_else(|| ApiError::bad_request("precision must be ns, us, ms or s"))?,
    };
    let body = decompressed(&state, &headers, body?).await?;
    let key = idempotency_key(&headers)?;
    series::ingest_lines(&state, &principal, &bucket, body, precision, key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// InfluxDB clients and Telegraf gzip their batches by default. The
/// inflated body is held to `max_body_bytes` like a plain one, so a small
/// gzip bomb gets 413, not the server's memory.
async fn decompressed(state: &AppState, headers: &HeaderMap, body: Bytes) -> ApiResult<Bytes> {
    let limit = state.settings.max_body_bytes;
    let encoding = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" | "x-gzip" => state
            .parsers
            .run(move || gunzip(&body, limit))
            .await
            .map_err(ApiError::internal)?,
        other => Err(ApiError::unsupported_media_type(format!(
            "Content-Encoding {other} is not supported; send gzip or uncompressed lines"
        ))),
    }
}

fn gunzip(body: &[u8], limit: usize) -> ApiResult<Bytes> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    flate2::read::GzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("the gzip body cannot be read: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::payload_too_large(
            "the request body is larger than max_body_bytes once inflated",
        ));
    }
    Ok(out.into())
}
