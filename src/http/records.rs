//! `/api/collections/{name}/records` over HTTP: the request's framing (one
//! object, a JSON array or NDJSON; `If-Match`; query parameters) around
//! the records service, which decides everything else.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::Json;
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::auth::Principal;
use crate::services::items::{self, Framing};
use crate::services::records::{self, ListParams, UpdateKind};
use crate::services::series::{self, IngestOptions, SeriesListParams};

/// How a create request frames its items: one object, a JSON array, or
/// NDJSON.
fn framing(headers: &HeaderMap) -> ApiResult<Framing> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match content_type.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" => Ok(Framing::NdJson),
        _ => Err(ApiError::unsupported_media_type(
            "expected Content-Type: application/json or application/x-ndjson",
        )),
    }
}

/// Every item of a records create request, and whether it was a batch.
fn parse_items(framing: Framing, body: &[u8]) -> ApiResult<(Vec<Value>, bool)> {
    let mut items = Vec::new();
    let is_batch = items::for_each(body, framing, &mut |item| {
        items.push(item);
        Ok(())
    })?;
    Ok((items, is_batch))
}

/// `If-Match: <rev>` (quotes allowed, as for an ETag).
fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("If-Match must be a record rev, e.g. If-Match: 3"))
}

/// Whether `name` is a series collection: its readings go to
/// `services::series`, which shares these routes.
fn is_series(state: &AppState, name: &str) -> bool {
    state
        .store
        .catalog()
        .get(name)
        .is_some_and(|c| c.is_series())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    #[serde(rename = "return")]
    give_back: Option<String>,
}

pub async fn create_records(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    params: Result<Query<CreateParams>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Query(params) = params?;
    let body = body?;
    let framing = framing(&headers)?;
    let on_blocking_thread = body.len() > crate::parse_pool::INLINE_BYTES;
    if is_series(&state, &name) {
        let return_items = match params.give_back.as_deref() {
            None | Some("count") => false,
            Some("items") => true,
            Some(_) => return Err(ApiError::bad_request("return must be items or count")),
        };
        let options = IngestOptions {
            idempotency_key: super::series::idempotency_key(&headers)?,
            return_items,
        };
        // Parsed on the same thread as the readings are checked on, each
        // item checked as soon as it is read.
        let batch = series::Batch {
            arrived_bytes: body.len(),
            parse: move |sink: series::ItemSink| items::for_each(&body, framing, sink).map(|_| ()),
            on_blocking_thread,
        };
        let created = series::ingest_parsed(&state, &principal, &name, batch, options).await?;
        return Ok((StatusCode::CREATED, Json(created)));
    }
    let (items, is_batch) = if on_blocking_thread {
        state
            .parsers
            .run(move || parse_items(framing, &body))
            .await
            .map_err(ApiError::internal)??
    } else {
        parse_items(framing, &body)?
    };
    let created = records::create(&state, &principal, &name, items, is_batch).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn list_records(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    uri: Uri,
) -> ApiResult<Json<Value>> {
    let list = if is_series(&state, &name) {
        let Query(params) = Query::<SeriesListParams>::try_from_uri(&uri)?;
        series::list(&state, &principal, &name, params).await?
    } else {
        let Query(params) = Query::<ListParams>::try_from_uri(&uri)?;
        records::list(&state, &principal, &name, params).await?
    };
    Ok(Json(list))
}

pub async fn get_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(records::get(&state, &principal, &name, &id).await?))
}

pub async fn patch_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    update(state, principal, name, id, headers, body, UpdateKind::Merge).await
}

pub async fn replace_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    update(
        state,
        principal,
        name,
        id,
        headers,
        body,
        UpdateKind::Replace,
    )
    .await
}

async fn update(
    state: AppState,
    principal: Principal,
    name: String,
    id: String,
    headers: HeaderMap,
    body: Result<Json<Value>, JsonRejection>,
    kind: UpdateKind,
) -> ApiResult<Json<Value>> {
    let expected = if_match(&headers)?;
    let record = records::update(&state, &principal, &name, &id, expected, body?.0, kind);
    Ok(Json(record.await?))
}

pub async fn delete_record(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let expected = if_match(&headers)?;
    records::delete(&state, &principal, &name, &id, expected).await?;
    Ok(StatusCode::NO_CONTENT)
}
