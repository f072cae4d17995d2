//! How one change or message shows to one subscription, and its JSON. The
//! hub (live) and replay (resume) both use this, and both judge records
//! through [`crate::visibility`], the decision REST makes too: a resumed
//! stream is exactly what the live one would have been.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::{Frame, FrameKind, Ops, Subscription};
use crate::clock;
use crate::model::collection::EventOp;
use crate::model::Collection;
use crate::protocol::server::{Event, EventReason, EventRecord, MessageData};
use crate::protocol::{self, ServerMessage};
use crate::rules::EvalContext;
use crate::series::{Bucket, Reading};
use crate::store::change::{Change, ChangeKind};
use crate::store::topics::{Message, Topic};
use crate::visibility::{self, Sighted, Viewer};

pub fn op_of(kind: ChangeKind) -> Ops {
    match kind {
        ChangeKind::Create | ChangeKind::Append => Ops::CREATE,
        ChangeKind::Update => Ops::UPDATE,
        ChangeKind::Delete
        | ChangeKind::Expire
        | ChangeKind::DropCollection
        | ChangeKind::Truncate => Ops::DELETE,
    }
}

/// How a change shows to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// As the change itself: create, update, delete (or expired).
    Change,
    /// An update brought the record into view: `op: create, reason: entered`.
    Entered,
    /// An update took the record out of view: `op: delete, reason: left`,
    /// with only its id.
    Left,
}

impl Seen {
    fn index(self, admin: bool) -> usize {
        let base = match self {
            Seen::Change => 0,
            Seen::Entered => 2,
            Seen::Left => 4,
        };
        base + usize::from(admin)
    }
}

/// A decoded change ready for matching: the record before and after,
/// parsed once for every subscriber, with what non-admins may see of each.
pub struct ChangeView<'a> {
    pub change: &'a Change,
    before: Option<Sighted<'static>>,
    after: Option<Sighted<'static>>,
    now: String,
}

impl<'a> ChangeView<'a> {
    /// `collection` is `None` for the `_users` topic, which only admins
    /// hold and which has no protected fields.
    pub fn new(change: &'a Change, collection: Option<&Collection>) -> ChangeView<'a> {
        let sight = |bytes: &Option<Vec<u8>>| {
            let fields: Map<String, Value> = serde_json::from_slice(bytes.as_deref()?).ok()?;
            Some(match collection {
                Some(collection) => Sighted::owned(collection, fields),
                None => Sighted::unprotected(fields),
            })
        };
        ChangeView {
            change,
            before: sight(&change.before),
            after: sight(&change.after),
            now: clock::now_rfc3339(),
        }
    }

    /// One reading of a block as the `create` change it is to subscribers:
    /// `change` is the reading's own (see [`readings_of`]).
    pub fn reading(
        change: &'a Change,
        collection: &Collection,
        fields: Map<String, Value>,
    ) -> ChangeView<'a> {
        ChangeView {
            change,
            before: None,
            after: Some(Sighted::owned(collection, fields)),
            now: clock::now_rfc3339(),
        }
    }

    /// How this change shows to this subscription of this viewer, if at all.
    pub fn seen(
        &self,
        collection: Option<&Collection>,
        subscription: &Subscription,
        viewer: &Viewer,
    ) -> Option<Seen> {
        let Some(collection) = collection else {
            // `_users`: admins only, every change as it is.
            return (viewer.admin && subscription.ops.contains(op_of(self.change.kind)))
                .then_some(Seen::Change);
        };
        let reach = subscription.reach();
        let sees = |record: &Option<Sighted>| {
            record.as_ref().is_some_and(|record| {
                visibility::sees(
                    viewer,
                    collection,
                    reach,
                    record,
                    subscription.filter.as_deref(),
                    &self.now,
                )
            })
        };
        let seen = match self.change.kind {
            ChangeKind::Create => sees(&self.after).then_some(Seen::Change),
            ChangeKind::Delete | ChangeKind::Expire => sees(&self.before).then_some(Seen::Change),
            ChangeKind::Update => match (sees(&self.before), sees(&self.after)) {
                (true, true) => Some(Seen::Change),
                (false, true) => Some(Seen::Entered),
                (true, false) => Some(Seen::Left),
                (false, false) => None,
            },
            // Expanded or rendered by the hub and replay before this point.
            ChangeKind::DropCollection | ChangeKind::Append | ChangeKind::Truncate => None,
        }?;
        let op = match seen {
            Seen::Change => op_of(self.change.kind),
            Seen::Entered => Ops::CREATE,
            Seen::Left => Ops::DELETE,
        };
        subscription.ops.contains(op).then_some(seen)
    }

    /// The event as `topic` delivers it to a viewer it reaches.
    pub fn render(&self, topic: &str, seen: Seen, admin: bool) -> Frame {
        let (op, record, reason) = match seen {
            Seen::Change => {
                let record = match self.change.kind {
                    ChangeKind::Create | ChangeKind::Update => &self.after,
                    _ => &self.before,
                };
                let reason =
                    (self.change.kind == ChangeKind::Expire).then_some(EventReason::Expired);
                (self.change.kind.event_op(), shown(record, admin), reason)
            }
            Seen::Entered => (
                EventOp::Create,
                shown(&self.after, admin),
                Some(EventReason::Entered),
            ),
            Seen::Left => (
                EventOp::Delete,
                Some(EventRecord::Id {
                    id: &self.change.record_id,
                }),
                Some(EventReason::Left),
            ),
        };
        let ts = clock::format_ms(self.change.ts_ms);
        let event = ServerMessage::Event(Event {
            topic,
            op,
            seq: self.change.seq,
            ts: &ts,
            record,
            reason,
        });
        Frame::new(self.change.seq, FrameKind::Event, event.to_text())
    }
}

/// The readings of an `Append` change as one `create` change each, with
/// the reading as the API shows it: live delivery and replay both expand
/// blocks here, so both judge each reading like a record.
pub fn readings_of(
    block: &Change,
    collection: &Collection,
    readings: Vec<Reading>,
) -> Vec<(Reading, Change, Map<String, Value>)> {
    readings
        .into_iter()
        .map(|reading| {
            let fields = collection.reading_json(&reading);
            let change = Change {
                seq: reading.seq,
                kind: ChangeKind::Create,
                collection_id: block.collection_id,
                collection: block.collection.clone(),
                record_id: crate::ids::reading_id(reading.seq),
                after: None,
                before: None,
                ts_ms: reading.created,
                actor: block.actor.clone(),
                through: reading.seq,
            };
            (reading, change, fields)
        })
        .collect()
}

/// A closed bucket for an `aggregate` subscription of `topic`.
pub fn render_bucket(topic: &str, bucket: &Bucket, seq: u64) -> Frame {
    let text = ServerMessage::Bucket { topic, bucket, seq };
    Frame::new(seq, FrameKind::Control("bucket"), text.to_text())
}

/// The `expired` notice of a `Truncate` change.
pub fn render_truncate(change: &Change, topic: &str) -> Frame {
    let text = ServerMessage::Expired {
        topic,
        before: &change.record_id,
        seq: change.seq,
    };
    Frame::new(change.seq, FrameKind::Control("expired"), text.to_text())
}

/// What a viewer may see of a record, borrowed for serializing.
fn shown<'r>(record: &'r Option<Sighted>, admin: bool) -> Option<EventRecord<'r>> {
    record
        .as_ref()
        .map(|r| EventRecord::Fields(r.as_seen_by(admin)))
}

/// The frames of one change for one topic, each rendered at most once
/// however many subscribers receive it.
pub struct Rendered<'v, 'a> {
    view: &'v ChangeView<'a>,
    topic: &'v str,
    frames: [Option<Arc<Frame>>; 6],
}

impl<'v, 'a> Rendered<'v, 'a> {
    pub fn new(view: &'v ChangeView<'a>, topic: &'v str) -> Rendered<'v, 'a> {
        Rendered {
            view,
            topic,
            frames: Default::default(),
        }
    }

    pub fn frame(&mut self, seen: Seen, admin: bool) -> Arc<Frame> {
        // Left carries only the id: one frame serves admins and others.
        let admin = admin && seen != Seen::Left;
        let (view, topic) = (self.view, self.topic);
        self.frames[seen.index(admin)]
            .get_or_insert_with(|| Arc::new(view.render(topic, seen, admin)))
            .clone()
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
    let context = EvalContext {
        record: data,
        user: viewer.user.as_ref(),
        now,
    };
    (viewer.admin || topic.subscribe.matches(&context))
        && subscription
            .filter
            .as_ref()
            .is_none_or(|filter| filter.matches(&context))
}

pub fn render_message(message: &Message) -> Frame {
    let data: &RawValue = serde_json::from_slice(&message.data).unwrap_or(RawValue::NULL);
    let ts = clock::format_ms(message.ts_ms);
    let text = ServerMessage::Message(protocol::server::Message {
        topic: &message.topic,
        seq: message.seq,
        ts: &ts,
        from: message.from.as_deref(),
        data: MessageData::Published(data),
    });
    Frame::new(message.seq, FrameKind::Message, text.to_text())
}
