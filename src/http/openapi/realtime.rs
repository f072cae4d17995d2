//! Where the paths of topics and of the realtime transports (WebSocket,
//! SSE, MQTT over WebSocket) are described; the handlers are in
//! `http::topics`, the realtime module and the MQTT module. The messages
//! on a connection are not HTTP: docs/realtime.md and docs/mqtt.md
//! describe them.

use serde_json::Value;

use super::schemas::{ErrorBody, Published};
use crate::protocol::server::{CustomTopic, TopicInfo};
use crate::services::topics::NewTopic;

/// The topics the caller may subscribe to
#[utoipa::path(get, path = "/api/topics", tag = "topics",
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Vec<TopicInfo>)))]
pub fn list_topics() {}

/// Create a custom topic
///
/// The `topic_create_rule` setting decides who may; 409 if a topic or a
/// collection has the name.
#[utoipa::path(post, path = "/api/topics", tag = "topics", request_body = NewTopic,
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = CustomTopic), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub fn create_topic() {}

/// Delete a custom topic (its owner or an admin)
#[utoipa::path(delete, path = "/api/topics/{name}", tag = "topics",
    params(("name" = String, Path)), security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub fn delete_topic() {}

/// Publish a message on a custom topic without holding a connection
///
/// The topic's `publish` rule applies; at most `message_rate` messages a
/// second per caller, then 429 with `Retry-After: 1`.
#[utoipa::path(post, path = "/api/topics/{name}/messages", tag = "topics",
    params(("name" = String, Path)), request_body = PublishBody,
    security((), ("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Published), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)))))]
pub fn publish() {}

/// `{data}`: any JSON.
#[derive(utoipa::ToSchema)]
pub struct PublishBody {
    pub data: Value,
}

/// The realtime WebSocket (subprotocol `pulsebase.v1`)
///
/// JSON text frames both ways: the server sends `welcome` first; clients
/// send actions (`subscribe`, `unsubscribe`, `publish`, `topics`,
/// `create_topic`, `delete_topic`, `ping`, `auth`, `list`, `get`,
/// `create`, `update`, `delete`) and get `ok` or `error` replies, `event`,
/// `message`, `bucket`, `expired`, `unsubscribed` and `heartbeat`
/// messages (docs/realtime.md). Browsers may send the token as the
/// subprotocol `bearer.<token>` next to `pulsebase.v1`. A bad credential is
/// 401 before the upgrade; over the connection caps, 503 or 429 with
/// `Retry-After`.
#[utoipa::path(get, path = "/api/realtime", tag = "realtime",
    params(("token" = Option<String>, Query, description = "an access token or API key, for clients that cannot set headers"),
        ("Sec-WebSocket-Protocol" = Option<String>, Header, description = "`pulsebase.v1`, and optionally `bearer.<token>`")),
    security((), ("bearer" = []), ("api_key" = []), ("query_token" = [])),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub fn realtime_websocket() {}

/// Server-Sent Events of one or more topics
///
/// Events are `id: <seq>`, `event: <type>`, `data: <the WebSocket message's
/// JSON>`: `ok` first, then `event`, `message`, `bucket`, `expired`,
/// `unsubscribed`, `heartbeat`, and `error` before the stream ends when
/// the token expires (docs/realtime.md). Errors before the stream starts
/// are JSON error answers.
#[utoipa::path(get, path = "/api/realtime/sse", tag = "realtime",
    params(("topic" = Vec<String>, Query, description = "a collection, `collection/record-id`, or custom topic; repeat or comma-separate for several"),
        ("ops" = Option<String>, Query, description = "`create`, `update`, `delete`, comma separated; none means all"),
        ("filter" = Option<String>, Query, description = "an expression over the records"),
        ("since" = Option<u64>, Query, description = "replay from after this seq"),
        ("epoch" = Option<String>, Query, description = "the epoch `since` belongs to"),
        ("aggregate" = Option<String>, Query, description = "series: JSON `{\"bucket\", \"agg\", \"group\", \"grace\"}` for closed buckets instead of readings"),
        ("token" = Option<String>, Query, description = "an access token or API key, for EventSource"),
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this seq")),
    security((), ("bearer" = []), ("api_key" = []), ("query_token" = [])),
    responses((status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub fn realtime_sse() {}

/// MQTT 3.1.1 and 5.0 over WebSocket (subprotocol `mqtt` or `mqttv3.1`)
///
/// Present only when the MQTT listener is on. The credential travels in
/// MQTT's CONNECT (docs/mqtt.md).
#[utoipa::path(get, path = "/mqtt", tag = "realtime", security(()),
    params(("Sec-WebSocket-Protocol" = String, Header, description = "`mqtt` or `mqttv3.1`")),
    responses((status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub fn mqtt_websocket() {}
