//! Whether one change or message reaches one subscriber, and its JSON. The
//! hub (live) and replay (resume) both use this, so a resumed stream is
//! exactly what the live one would have been.

use axum::extract::ws::Utf8Bytes;
use serde_json::{json, Map, Value};

use super::{Frame, FrameKind, Ops, Subscription};
use crate::auth::Principal;
use crate::clock;
use crate::model::Collection;
use crate::rules::{EvalContext, UserContext};
use crate::store::change::{Change, ChangeKind};
use crate::store::topics::{Message, Topic};

/// A subscriber as rules see it; rebuilt when its identity changes.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub admin: bool,
    pub user: Option<UserContext>,
}

impl Viewer {
    pub fn of(principal: &Principal) -> Viewer {
        Viewer {
            admin: principal.is_admin(),
            user: principal.rule_context(),
        }
    }

    pub fn context<'a>(&'a self, record: &'a Map<String, Value>, now: &'a str) -> EvalContext<'a> {
        EvalContext {
            record,
            user: self.user.as_ref(),
            now,
        }
    }
}

pub fn op_of(kind: ChangeKind) -> Ops {
    match kind {
        ChangeKind::Create => Ops::CREATE,
        ChangeKind::Update => Ops::UPDATE,
        ChangeKind::Delete | ChangeKind::Expire | ChangeKind::DropCollection => Ops::DELETE,
    }
}

/// A decoded change ready for matching: the record to check (the new one,
/// or for a delete the one that was) parsed once for all subscribers.
pub struct ChangeView<'a> {
    pub change: &'a Change,
    pub record: Map<String, Value>,
    pub now: String,
}

impl<'a> ChangeView<'a> {
    pub fn new(change: &'a Change) -> ChangeView<'a> {
        let bytes = change.after.as_deref().or(change.before.as_deref());
        let record = bytes
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or_default();
        ChangeView {
            change,
            record,
            now: clock::now_rfc3339(),
        }
    }

    /// Does this change reach this subscription of this viewer? `collection`
    /// is `None` for the `_users` topic, which only admins hold.
    pub fn reaches(
        &self,
        collection: Option<&Collection>,
        subscription: &Subscription,
        viewer: &Viewer,
    ) -> bool {
        if !subscription.ops.contains(op_of(self.change.kind)) {
            return false;
        }
        let allowed =
            match collection {
                None => viewer.admin,
                Some(collection) => {
                    viewer.admin
                        || collection.rules.view.as_ref().is_some_and(|rule| {
                            rule.matches(&viewer.context(&self.record, &self.now))
                        })
                }
            };
        allowed
            && subscription
                .filter
                .as_ref()
                .is_none_or(|filter| filter.matches(&viewer.context(&self.record, &self.now)))
    }

    /// The event as `topic` delivers it; protected fields only for admins.
    pub fn render(&self, topic: &str, collection: Option<&Collection>, admin: bool) -> Frame {
        let record: Map<String, Value> = match collection {
            Some(collection) if !admin => self
                .record
                .iter()
                .filter(|(name, _)| !collection.protected.contains(*name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            _ => self.record.clone(),
        };
        let mut event = json!({
            "type": "event",
            "topic": topic,
            "op": self.change.kind.op(),
            "seq": self.change.seq,
            "ts": clock::format_ms(self.change.ts_ms),
            "record": record,
        });
        if self.change.kind == ChangeKind::Expire {
            event["reason"] = json!("expired");
        }
        Frame {
            seq: self.change.seq,
            kind: FrameKind::Event,
            text: Utf8Bytes::from(event.to_string()),
        }
    }
}

/// Does a custom-topic message reach this subscriber? Rules see the
/// message's `data` as the record.
pub fn message_reaches(
    topic: &Topic,
    data: &Map<String, Value>,
    subscription: &Subscription,
    viewer: &Viewer,
    now: &str,
) -> bool {
    let context = viewer.context(data, now);
    (viewer.admin || topic.subscribe.matches(&context))
        && subscription
            .filter
            .as_ref()
            .is_none_or(|filter| filter.matches(&context))
}

pub fn render_message(message: &Message) -> Frame {
    let data: Value = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
    let text = json!({
        "type": "message",
        "topic": message.topic,
        "seq": message.seq,
        "ts": clock::format_ms(message.ts_ms),
        "from": message.from,
        "data": data,
    });
    Frame {
        seq: message.seq,
        kind: FrameKind::Message,
        text: Utf8Bytes::from(text.to_string()),
    }
}
