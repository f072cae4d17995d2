//! Schemas of the answers the handlers build as JSON by hand (sessions,
//! users, keys, pages, series answers). They describe, they are not sent:
//! tests/openapi.rs checks real answers against them, so a field added to
//! a handler and not here fails a test. Request bodies and topics are the
//! real types, which derive their schemas where they are defined.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::schema::{AdditionalProperties, Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::model::collection::CollectionDef;

/// The one error shape of every error answer.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "invalid record", "details": {"temp": "must be of type number"}}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `validation_failed`, `unauthorized`,
    /// `invalid_credentials`, `token_expired`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `precondition_failed`,
    /// `payload_too_large`, `unsupported_media_type`, `rate_limited`,
    /// `internal`, `unavailable`.
    pub code: String,
    /// A safe message for people.
    pub message: String,
    /// Per code: the bad fields (`validation_failed`), `position` (a bad
    /// filter), `rev` (`precondition_failed`), `items.<index>` (a batch).
    pub details: Option<BTreeMap<String, Value>>,
}

/// `GET /api/health`.
#[derive(ToSchema)]
pub struct Health {
    /// `ok`, or `storage_failed` (with 503) once a write to disk failed.
    pub status: String,
    pub version: String,
    /// With `storage_failed`: what to do.
    pub message: Option<String>,
}

/// `GET /api/setup`.
#[derive(ToSchema)]
pub struct SetupState {
    /// Whether the first admin is still to be created with the printed code.
    pub needed: bool,
}

/// A user's public fields (never the password hash).
#[derive(ToSchema)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    pub disabled: bool,
    pub verified: bool,
    /// RFC 3339 UTC with milliseconds.
    pub created: String,
}

/// A signed-in session.
#[derive(ToSchema)]
pub struct Session {
    /// The access token: an HS256 JWT for `Authorization: Bearer`.
    pub token: String,
    /// Opaque; exchanged once at `/api/auth/refresh`.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: User,
}

#[derive(ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// The next page's `cursor`; `null` at the end.
    pub next_cursor: Option<String>,
}

/// An API key; the secret is never shown again after creation.
#[derive(ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub created: String,
    /// RFC 3339; `null` for a key that does not expire.
    pub expires: Option<String>,
}

/// A new API key, with its secret (`pbk_...`), shown this once.
#[derive(ToSchema)]
pub struct NewApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub created: String,
    pub expires: Option<String>,
    /// Send as `X-Api-Key` or `Authorization: Bearer`.
    pub secret: String,
}

#[derive(ToSchema)]
pub struct KeyList {
    pub items: Vec<ApiKey>,
}

#[derive(ToSchema)]
pub struct CollectionList {
    pub items: Vec<Collection>,
}

/// `{"seq"}`: where a published message sits in the change log.
#[derive(ToSchema)]
pub struct Published {
    pub seq: u64,
}

#[derive(ToSchema)]
pub struct RecordPage {
    pub items: Vec<Record>,
    /// The next page's `cursor`; `null` at the end.
    pub next_cursor: Option<String>,
}

/// A batch create's answer (records), or `latest` (series).
#[derive(ToSchema)]
pub struct RecordItems {
    pub items: Vec<Record>,
}

/// A series ingest's answer: the seqs of the readings written, and with
/// `?return=items` the readings.
#[derive(ToSchema)]
pub struct Ingested {
    pub count: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub items: Option<Vec<Record>>,
}

#[derive(ToSchema)]
pub struct Aggregate {
    pub buckets: Vec<Bucket>,
}

/// One time bucket of one group.
#[derive(ToSchema)]
pub struct Bucket {
    /// The bucket's start, RFC 3339 UTC with milliseconds.
    pub t: String,
    /// The `group` fields' values (empty without `group`).
    pub group: BTreeMap<String, Value>,
    /// Each `agg` as asked (`avg(temp)`, `count()`); `null` in a filled
    /// empty bucket.
    pub values: BTreeMap<String, Option<f64>>,
}

/// One setting as `GET /api/settings` shows it.
#[derive(ToSchema)]
pub struct Setting {
    pub value: Value,
    /// For runtime settings.
    pub default: Option<Value>,
    /// For runtime settings: where the value comes from.
    pub source: Option<String>,
    /// Whether it may change while the server runs.
    pub runtime: bool,
    /// Whether `PATCH /api/settings` may change it now.
    pub editable: bool,
}

/// `GET /api/stats`.
#[derive(ToSchema)]
pub struct Stats {
    /// The newest applied change (writes and messages).
    pub seq: u64,
    /// The newest change sent to subscribers.
    pub released_seq: u64,
    /// WebSocket, SSE and MQTT connections together.
    pub connections: u64,
    pub transports: Transports,
    pub subscriptions: u64,
    pub events_delivered: u64,
    pub slow_consumer_closes: u64,
    /// Persistent MQTT sessions stored (connected or not).
    pub mqtt_sessions: u64,
    pub backlog_bytes: u64,
    /// Bytes waiting in all realtime outboxes (a message counts once per
    /// outbox it waits in), and in the fullest one.
    pub outbox_bytes: u64,
    pub outbox_bytes_max: u64,
    pub storage_bytes: u64,
    /// Records (or readings) per collection.
    pub records: BTreeMap<String, u64>,
    /// Per series collection.
    pub series: BTreeMap<String, SeriesSize>,
}

#[derive(ToSchema)]
pub struct Transports {
    pub websocket: u64,
    pub sse: u64,
    pub mqtt: u64,
}

#[derive(ToSchema)]
pub struct SeriesSize {
    pub readings: u64,
    pub blocks: u64,
    /// The blocks' encoded bytes (what `max_bytes` caps).
    pub bytes: u64,
}

/// A record (or a series reading): the server's fields and the
/// collection's own, which each collection defines, so any others may be
/// present. `fields=` may leave out all but `id`.
pub struct Record;

impl PartialSchema for Record {
    fn schema() -> RefOr<Schema> {
        let string = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "The collection's own fields beside the server's: their names and types \
                 are the collection's `fields` (GET /api/collections/{name}).",
            ))
            .property(
                "id",
                string("ULID, or the client's own id (records); 13 characters (readings)"),
            )
            .required("id")
            .property("created", string("RFC 3339 UTC with milliseconds"))
            .property("updated", string("records only"))
            .property(
                "owner",
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
                        Type::String,
                        Type::Null,
                    ]))
                    .description(Some("the creator's id, or null")),
            )
            .property(
                "rev",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .description(Some("records only: 1 on create, +1 per write")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .into()
    }
}

impl ToSchema for Record {}

/// A collection as the API shows it: its definition with `created` and
/// `updated`. Built from the definition's own schema, so the two cannot
/// drift apart.
pub struct Collection;

impl PartialSchema for Collection {
    fn schema() -> RefOr<Schema> {
        let RefOr::T(Schema::Object(mut object)) = CollectionDef::schema() else {
            // The definition is a struct: its schema is an object.
            return CollectionDef::schema();
        };
        for name in ["created", "updated"] {
            object.properties.insert(
                name.to_owned(),
                Object::builder()
                    .schema_type(Type::String)
                    .description(Some("RFC 3339 UTC with milliseconds"))
                    .into(),
            );
            object.required.push(name.to_owned());
        }
        object.description =
            Some("A collection: its definition, and when it was created and last changed.".into());
        Schema::Object(object).into()
    }
}

impl ToSchema for Collection {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <CollectionDef as ToSchema>::schemas(schemas);
    }
}
