//! What the server sends: over WebSocket each message is one text frame;
//! over SSE the same JSON is an event's `data`, named by its `type`.
//!
//! The types borrow what they show, so rendering an event serializes the
//! record's fields in place instead of building a JSON tree first.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::collection::EventOp;
use crate::series::Bucket;

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The first message on every connection.
    Welcome(Welcome<'a>),
    /// The one reply to a request that succeeded.
    Ok(Reply<'a>),
    /// The one reply to a request that failed.
    Error(ErrorReply<'a>),
    /// An error nobody asked for, sent just before the server closes the
    /// connection (an expired token): no `id`, no `details`.
    #[serde(rename = "error")]
    Closing {
        code: &'a str,
        message: &'a str,
    },
    /// The reply to `ping`.
    Pong {
        id: Option<&'a Value>,
    },
    Heartbeat {
        ts: &'a str,
    },
    /// A change to a record.
    Event(Event<'a>),
    /// A message on a custom topic or on `_connections`.
    Message(Message<'a>),
    /// A subscription the server ended.
    Unsubscribed(Unsubscribed<'a>),
    /// A series collection's readings before `before` were dropped
    /// (retention, or an admin): one message instead of one delete per
    /// reading.
    Expired {
        topic: &'a str,
        before: &'a str,
        seq: u64,
    },
    /// Someone subscribed to a topic that tracks presence.
    Join(PresenceChange<'a>),
    /// Someone's subscription to it ended.
    Leave(PresenceChange<'a>),
    /// A presence topic's member count, instead of joins and leaves: past
    /// `presence_max`, or too many changes at once. The list known so far
    /// is stale; the `presence` action gives it again.
    Presence {
        topic: &'a str,
        count: usize,
    },
    /// A closed time bucket of one group, for an `aggregate` subscription.
    Bucket {
        topic: &'a str,
        /// `t`, `group`, `values`: as the `aggregate` endpoint shows a bucket.
        #[serde(flatten)]
        bucket: &'a Bucket,
        /// The newest seq released when the bucket closed.
        seq: u64,
    },
}

impl ServerMessage<'_> {
    /// The `type`, which SSE uses as the event name.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMessage::Welcome(_) => "welcome",
            ServerMessage::Ok(_) => "ok",
            ServerMessage::Error(_) | ServerMessage::Closing { .. } => "error",
            ServerMessage::Pong { .. } => "pong",
            ServerMessage::Heartbeat { .. } => "heartbeat",
            ServerMessage::Event(_) => "event",
            ServerMessage::Message(_) => "message",
            ServerMessage::Unsubscribed(_) => "unsubscribed",
            ServerMessage::Expired { .. } => "expired",
            ServerMessage::Bucket { .. } => "bucket",
            ServerMessage::Join(_) => "join",
            ServerMessage::Leave(_) => "leave",
            ServerMessage::Presence { .. } => "presence",
        }
    }

    /// The JSON text.
    pub fn to_text(&self) -> String {
        // These types hold strings, numbers and JSON values only, under
        // string keys: nothing in them can fail to serialize.
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

/// A connection's name on the wire: `c_<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionName(pub u64);

impl fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c_{}", self.0)
    }
}

impl Serialize for ConnectionName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[derive(Debug, Serialize)]
pub struct Welcome<'a> {
    pub connection: ConnectionName,
    /// The user's public fields; `null` when anonymous (or an API key).
    pub user: Option<&'a Value>,
    /// Seconds between heartbeats.
    pub heartbeat: u64,
    /// The last seq released: subscribe with `since` from here.
    pub seq: u64,
    pub epoch: &'a str,
}

/// `ok`: the request's `id` (`null` when it had none) and what the action
/// answers with.
#[derive(Debug, Serialize)]
pub struct Reply<'a> {
    pub id: Option<&'a Value>,
    #[serde(flatten)]
    pub body: ReplyBody<'a>,
}

/// What each action's `ok` carries (docs/realtime.md, "Client actions").
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ReplyBody<'a> {
    /// `subscribe`: the topics as given, where live delivery starts, and
    /// the log's epoch.
    Subscribed {
        #[serde(flatten)]
        topics: TopicNames<'a>,
        seq: u64,
        epoch: &'a str,
    },
    /// `unsubscribe`.
    Unsubscribed {
        #[serde(flatten)]
        topics: TopicNames<'a>,
    },
    /// `publish`: the message's seq.
    Published { seq: u64 },
    /// `topics`.
    Topics { topics: &'a [TopicInfo] },
    /// `create_topic`, `delete_topic`.
    Topic { topic: &'a str },
    /// `auth`: who the connection is now.
    Auth { user: Option<&'a Value> },
    /// `list`: a page of records as REST gives it (`items`, `next_cursor`).
    Page(&'a Value),
    /// `get`, `create`, `update`.
    Record { record: &'a Value },
    /// `delete`.
    Done {},
    /// `presence`: the members, unless there are more than `presence_max`,
    /// and their count.
    Presence {
        #[serde(skip_serializing_if = "Option::is_none")]
        presence: Option<&'a [PresenceMember<'a>]>,
        count: usize,
    },
}

/// One topic is named `topic`, several `topics`, as the request did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum TopicNames<'a> {
    One { topic: &'a str },
    Many { topics: &'a [String] },
}

impl<'a> TopicNames<'a> {
    pub fn of(names: &'a [String]) -> TopicNames<'a> {
        match names {
            [one] => TopicNames::One { topic: one },
            _ => TopicNames::Many { topics: names },
        }
    }
}

/// `error`, in reply to a request: the contract's code and message.
#[derive(Debug, Serialize)]
pub struct ErrorReply<'a> {
    /// The request's `id`; `null` when it had none or could not be read.
    pub id: Option<&'a Value>,
    pub code: &'a str,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
}

impl<'a> ErrorReply<'a> {
    pub fn new(id: Option<&'a Value>, error: &'a ApiError) -> ErrorReply<'a> {
        ErrorReply {
            id,
            code: error.code,
            message: &error.message,
            details: error.details.as_ref(),
        }
    }
}

/// A change to a record as one subscription sees it.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub topic: &'a str,
    pub op: EventOp,
    pub seq: u64,
    pub ts: &'a str,
    /// `null` only if the stored record could not be read.
    pub record: Option<EventRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<EventReason>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EventRecord<'a> {
    /// What the subscriber may see of the record.
    Fields(&'a Map<String, Value>),
    /// A record that left view: its id only.
    Id { id: &'a str },
}

/// Why an event is not simply the change it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventReason {
    /// A `delete` made by retention.
    Expired,
    /// A `create`: an update brought the record into view.
    Entered,
    /// A `delete`: an update took the record out of view.
    Left,
}

/// A message on a custom topic, or a notice on `_connections`.
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub seq: u64,
    pub ts: &'a str,
    /// Who published it, when the publisher is known; `null` on
    /// `_connections`.
    pub from: Option<&'a str>,
    pub data: MessageData<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum MessageData<'a> {
    /// What was published, as it was stored (valid JSON, written out as
    /// is rather than parsed and printed again for every message).
    Published(&'a RawValue),
    Connection(ConnectionNotice<'a>),
}

/// What `_connections` reports: `event` is `connect`, `disconnect`,
/// `slow_consumer`, `subscribe` or `unsubscribe`.
#[derive(Debug, Serialize)]
pub struct ConnectionNotice<'a> {
    pub event: &'a str,
    pub connection: ConnectionName,
    pub user: Option<&'a str>,
    pub topic: Option<&'a str>,
    /// `websocket`, `sse` or `mqtt`.
    pub transport: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Unsubscribed<'a> {
    pub topic: &'a str,
    #[serde(flatten)]
    pub reason: UnsubscribeReason,
}

/// Why the server ended a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum UnsubscribeReason {
    /// The custom topic was deleted.
    TopicDeleted,
    /// The collection (of a collection or record topic) was dropped.
    CollectionDropped,
    /// Replay found the history trimmed past its position; `oldest` is the
    /// oldest seq still kept.
    HistoryExpired { oldest: u64 },
}

/// One subscriber of a presence topic.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceMember<'a> {
    pub connection: ConnectionName,
    /// `null` for an API key or an anonymous connection.
    pub user: Option<PresenceUser<'a>>,
    /// When it subscribed.
    pub since: &'a str,
}

/// Who a member is: what fellow subscribers may know of a user.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PresenceUser<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

/// `join` and `leave`: the topic, and the member.
#[derive(Debug, Serialize)]
pub struct PresenceChange<'a> {
    pub topic: &'a str,
    #[serde(flatten)]
    pub member: PresenceMember<'a>,
}

/// A topic as the `topics` listing (and `GET /api/topics`) shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TopicInfo {
    /// A collection's topic (its record topics are not listed).
    Collection {
        name: String,
    },
    Custom(CustomTopic),
    /// `_users` and `_connections`, listed for admins.
    System {
        name: String,
    },
}

/// A custom topic's definition (also the body `POST /api/topics` answers
/// with).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CustomTopic {
    pub name: String,
    pub owner: Option<String>,
    pub publish: String,
    pub subscribe: String,
    pub history: u32,
    pub created: String,
    /// Whether the topic tracks who is subscribed.
    pub presence: bool,
}

/// `details` of a `history_expired` refusal of `since`.
#[derive(Debug, Serialize)]
pub struct HistoryExpiredDetails<'a> {
    pub oldest: u64,
    pub epoch: &'a str,
}

/// `details` of a subscribe refused for the connection's filter budget.
#[derive(Debug, Serialize)]
pub struct FilterBudgetDetails {
    pub cost: usize,
    pub budget: usize,
}

/// Error `details` as the JSON `ApiError` carries.
pub fn details(details: &impl Serialize) -> Value {
    // Plain structs of numbers and strings: they always serialize.
    serde_json::to_value(details).expect("error details always serialize")
}
