//! Where the paths of collections, records and series readings are
//! described; the handlers are in `http::collections`, `http::records` and
//! `http::series`.

use utoipa::openapi::schema::{AnyOf, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::schemas::{Aggregate, Collection, CollectionList, ErrorBody, Ingested, Record};
use super::schemas::{RecordItems, RecordPage};
use crate::model::collection::CollectionDef;
use crate::services::records::ListParams;
use crate::services::series::LatestParams;

/// List collections by name (admins)
#[utoipa::path(get, path = "/api/collections", tag = "collections",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = CollectionList)))]
pub fn list_collections() {}

/// Create a collection (admins)
///
/// `kind: "series"` makes a collection of sensor readings (`series` and
/// `time` name its source and time fields). A definition with problems is
/// 400 `validation_failed`, one `details` entry per problem.
#[utoipa::path(post, path = "/api/collections", tag = "collections", request_body = CollectionDef,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Collection), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub fn create_collection() {}

/// One collection (admins)
#[utoipa::path(get, path = "/api/collections/{name}", tag = "collections",
    params(("name" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Collection), (status = 404, body = ErrorBody)))]
pub fn get_collection() {}

/// Change a collection with a JSON merge patch over its definition (admins)
///
/// A patch that changes `fields` or `strict`, or adds an index, answers
/// once the stored records are checked; one change of a collection at a
/// time (409 otherwise). Renaming is refused.
#[utoipa::path(patch, path = "/api/collections/{name}", tag = "collections",
    params(("name" = String, Path)),
    request_body(content = Value, description = "A JSON merge patch (RFC 7396) over the definition"),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Collection), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub fn update_collection() {}

/// Drop a collection and its records (admins)
#[utoipa::path(delete, path = "/api/collections/{name}", tag = "collections",
    params(("name" = String, Path)), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub fn delete_collection() {}

/// List records (or a series collection's readings)
///
/// The `list` and `view` rules filter what the caller sees. Readings of a
/// series collection are listed in time order and also take `from` and
/// `to`. Unknown parameters are 400.
#[utoipa::path(get, path = "/api/collections/{name}/records", tag = "records",
    params(("name" = String, Path), ListParams,
        ("from" = Option<String>, Query, description = "series: from this time (RFC 3339 or ms), inclusive"),
        ("to" = Option<String>, Query, description = "series: to this time, exclusive")),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = RecordPage), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn list_records() {}

/// Create one record, or a batch (a JSON array or NDJSON), all or nothing
///
/// One object answers the record; a batch `{"items": [...]}`, up to
/// `max_batch` (413 beyond). A series collection answers
/// `{count, first_seq, last_seq}` (and `items` with `?return=items`), and
/// honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/collections/{name}/records", tag = "records",
    params(("name" = String, Path),
        ("return" = Option<String>, Query, description = "series: `items` to get the stored readings back, or `count` (the default)"),
        ("Idempotency-Key" = Option<String>, Header, description = "series: a retry with the same key answers as the first request did, without writing again")),
    request_body(description = "One object, a JSON array of them, or NDJSON: the collection's fields, and optionally `id` (records)",
        content((Value = "application/json"), (String = "application/x-ndjson"))),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 201, description = "The record, the batch, or (series) the count",
            body = CreateAnswer),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub fn create_records() {}

/// Drop a series collection's readings older than a time (admins)
#[utoipa::path(delete, path = "/api/collections/{name}/records", tag = "series",
    params(("name" = String, Path),
        ("before" = String, Query, description = "RFC 3339 or milliseconds since the epoch")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn delete_readings_before() {}

/// One record (404 also when the caller may not view it)
#[utoipa::path(get, path = "/api/collections/{name}/records/{id}", tag = "records",
    params(("name" = String, Path), ("id" = String, Path)),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Record), (status = 404, body = ErrorBody)))]
pub fn get_record() {}

/// Change a record with a JSON merge patch (RFC 7396)
///
/// With `If-Match: <rev>`, 412 when the record has moved on. Series
/// readings cannot be changed (405).
#[utoipa::path(patch, path = "/api/collections/{name}/records/{id}", tag = "records",
    params(("name" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<u64>, Header, description = "the rev the change is meant for")),
    request_body(content = Value, description = "The fields to change; `null` removes one"),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Record), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 405, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub fn patch_record() {}

/// Replace a record's fields
#[utoipa::path(put, path = "/api/collections/{name}/records/{id}", tag = "records",
    params(("name" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<u64>, Header, description = "the rev the change is meant for")),
    request_body(content = Value, description = "Every user field of the record"),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Record), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 405, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub fn replace_record() {}

/// Delete a record
#[utoipa::path(delete, path = "/api/collections/{name}/records/{id}", tag = "records",
    params(("name" = String, Path), ("id" = String, Path),
        ("If-Match" = Option<u64>, Header, description = "the rev the delete is meant for")),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 405, body = ErrorBody), (status = 412, body = ErrorBody)))]
pub fn delete_record() {}

/// The newest reading of each source the caller may list (series)
#[utoipa::path(get, path = "/api/collections/{name}/latest", tag = "series",
    params(("name" = String, Path), LatestParams),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = RecordItems), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub fn latest() {}

/// Time buckets over what the caller may list (series)
///
/// Functions: `count()`, `count(field)`, `sum`, `avg`, `min`, `max`,
/// `first`, `last`. Only admins may aggregate or group by a protected
/// field (403).
#[utoipa::path(get, path = "/api/collections/{name}/aggregate", tag = "series",
    params(("name" = String, Path),
        ("from" = String, Query, description = "RFC 3339 or ms, inclusive"),
        ("to" = String, Query, description = "RFC 3339 or ms, exclusive"),
        ("bucket" = String, Query, description = "`1s` to `30d`, aligned to the Unix epoch"),
        ("agg" = String, Query, description = "comma separated, e.g. `avg(temp),max(temp),count()`"),
        ("group" = Option<String>, Query, description = "fields to group by, comma separated"),
        ("fill" = Option<String>, Query, description = "`none` (the default), `null`, `prev`, or a number"),
        ("filter" = Option<String>, Query, description = "an expression over the readings")),
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Aggregate), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub fn aggregate() {}

/// Write InfluxDB line protocol into a series collection
///
/// What Telegraf and InfluxDB client libraries send. A body may be
/// gzipped (`Content-Encoding: gzip`). Nothing of a bad batch is written.
#[utoipa::path(post, path = "/api/v2/write", tag = "series",
    params(("bucket" = String, Query, description = "the series collection"),
        ("precision" = Option<String>, Query, description = "`ns` (the default), `us`, `ms` or `s`"),
        ("org" = Option<String>, Query, description = "ignored"),
        ("orgID" = Option<String>, Query, description = "ignored"),
        ("Idempotency-Key" = Option<String>, Header)),
    request_body(content = String, content_type = "text/plain",
        example = "env,device=gw-1,site=north temp=21.5,humidity=40 1764748800000000000"),
    security(("influx_token" = []), ("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub fn write_lines() {}

/// What a create answers: one record, a batch, or a series ingest's count.
pub struct CreateAnswer;

impl PartialSchema for CreateAnswer {
    fn schema() -> RefOr<Schema> {
        let mut any_of = AnyOf::new();
        any_of.items = vec![
            Ref::from_schema_name(Record::name()).into(),
            Ref::from_schema_name(RecordItems::name()).into(),
            Ref::from_schema_name(Ingested::name()).into(),
        ];
        Schema::AnyOf(any_of).into()
    }
}

impl ToSchema for CreateAnswer {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Record::name().into(), Record::schema()));
        schemas.push((RecordItems::name().into(), RecordItems::schema()));
        schemas.push((Ingested::name().into(), Ingested::schema()));
        RecordItems::schemas(schemas);
        Ingested::schemas(schemas);
    }
}
