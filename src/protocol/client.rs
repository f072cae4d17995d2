//! What a WebSocket client sends: one JSON object per text frame, with an
//! `action`, the fields of that action, and an optional `id` that the one
//! reply echoes.
//!
//! Fields an action does not know are ignored, so a newer client (or one
//! that sends every field every time) still works.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// One client action with exactly its fields (docs/realtime.md, "Client
/// actions").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ClientMessage {
    Subscribe(Subscribe),
    Unsubscribe(Topics),
    Publish(Publish),
    /// The topics the caller may subscribe to.
    Topics {},
    CreateTopic(CreateTopic),
    DeleteTopic {
        topic: String,
    },
    /// Who is subscribed to a custom topic that tracks presence.
    Presence {
        topic: String,
    },
    Ping {},
    /// Swap in another credential.
    Auth {
        token: String,
    },
    List(List),
    Get(RecordRef),
    Create(Create),
    Update(Update),
    Delete(RecordRef),
}

impl ClientMessage {
    /// Every `action`, as the wire spells it.
    pub const ACTIONS: [&'static str; 14] = [
        "subscribe",
        "unsubscribe",
        "publish",
        "topics",
        "create_topic",
        "delete_topic",
        "presence",
        "ping",
        "auth",
        "list",
        "get",
        "create",
        "update",
        "delete",
    ];

    /// Whether the action runs as the connection's current identity, so
    /// the credential is checked again first. `ping` and `auth` do not
    /// need it; `unsubscribe` must work even for an identity gone bad.
    pub fn acts_as_caller(&self) -> bool {
        !matches!(
            self,
            ClientMessage::Ping {} | ClientMessage::Auth { .. } | ClientMessage::Unsubscribe(_)
        )
    }
}

/// One topic, a comma list of them, or a list; `services::topics` splits
/// and checks them, so both forms stay optional here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Topics {
    pub topic: Option<String>,
    pub topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Subscribe {
    #[serde(flatten)]
    pub names: Topics,
    /// `create`, `update`, `delete`; none means all. Kept as words so an
    /// unknown op gets the same message here as in an SSE query.
    #[serde(default)]
    pub ops: Vec<String>,
    pub filter: Option<String>,
    pub since: Option<u64>,
    /// The epoch `since` belongs to, as `welcome` gave it.
    pub epoch: Option<String>,
    /// Buckets instead of readings (series collections):
    /// `{"bucket": "1m", "agg": ["avg(temp)"], "group": ["device"], "grace": "2s"}`.
    pub aggregate: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Publish {
    pub topic: String,
    /// Any JSON; absent is `null`.
    #[serde(default)]
    pub data: Value,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CreateTopic {
    pub topic: String,
    /// Messages kept for resume; 0 keeps none.
    #[serde(default)]
    pub history: u32,
    /// Rules; absent means `@user != null`.
    pub publish: Option<String>,
    pub subscribe: Option<String>,
    /// Track who is subscribed.
    #[serde(default)]
    pub presence: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct List {
    pub collection: String,
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub fields: Option<String>,
}

/// `get` and `delete`: one record of one collection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordRef {
    pub collection: String,
    pub record: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Create {
    pub collection: String,
    /// The new record's fields; absent or `null` is an empty record.
    pub data: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Update {
    pub collection: String,
    pub record: String,
    /// A JSON merge patch; absent or `null` changes nothing.
    pub data: Option<Value>,
}

/// A parsed client frame: the action, and the `id` its reply carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Value>,
    pub message: ClientMessage,
}

/// A frame that is not a request: answered `bad_request` with this
/// message, to the frame's `id` when it had one.
#[derive(Debug)]
pub struct Rejected {
    pub id: Option<Value>,
    pub message: String,
}

impl Rejected {
    pub fn error(&self) -> ApiError {
        ApiError::bad_request(self.message.clone())
    }
}

impl Request {
    /// The `id` of a frame answered without being handled (over the rate
    /// limit), when it has one.
    pub fn id_of(text: &str) -> Option<Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(mut fields)) => fields.remove("id"),
            _ => None,
        }
    }

    /// Parses one text frame. Every failure is `bad_request` (the
    /// connection stays open), naming the action and the field at fault.
    pub fn parse(text: &str) -> Result<Request, Rejected> {
        let reject = |id: Option<Value>, message: String| Rejected { id, message };
        let mut value: Value =
            serde_json::from_str(text).map_err(|e| reject(None, format!("bad request: {e}")))?;
        let Value::Object(fields) = &mut value else {
            return Err(reject(
                None,
                "bad request: send a JSON object with an action".into(),
            ));
        };
        // Taken out first, so every later error still answers to it.
        let id = fields.remove("id").filter(|id| !id.is_null());
        let action = match fields.get("action") {
            None => return Err(reject(id, "bad request: missing field `action`".into())),
            Some(Value::String(action)) => action.clone(),
            Some(other) => {
                return Err(reject(
                    id,
                    format!("bad request: action must be a string, not {other}"),
                ))
            }
        };
        // Checked before serde, whose message would speak of "variants".
        if !ClientMessage::ACTIONS.contains(&action.as_str()) {
            return Err(reject(id, format!("unknown action {action:?}")));
        }
        // serde cannot name the field of a type error inside an internally
        // tagged enum (it buffers the object first); naming the action
        // narrows it down, and the message names the expected type.
        match ClientMessage::deserialize(value) {
            Ok(message) => Ok(Request { id, message }),
            Err(e) => Err(reject(id, format!("bad request: {action}: {e}"))),
        }
    }
}
