//! Fan-out: every change and message pushed to exactly the subscribers
//! allowed to see it. This is the engine under the WebSocket and SSE
//! transports (`realtime`): it knows connections only as outboxes, and
//! nothing of HTTP sessions or of the server's shared state.
//!
//! ```text
//!  writer ──apply_batch──► sled `c` prefix ──watch_prefix──► watcher thread ─┐
//!    │                                                                       │
//!    └── publish tap (custom-topic messages) ────────────────────────────────┤
//!  flusher ── release tap: durable seq (relaxed: see store::seqs) ───────────┤
//!  connections ── connect / subscribe / unsubscribe / identity ──────────────┤
//!                                                                            ▼
//!                                       hub thread: reorder by seq, release up to
//!                                       what is on disk, match through the topic
//!                                       index, check rules in memory, serialize
//!                                       once, try_send shared bytes to outboxes
//!                                                                            │
//!            ┌───────────────────────────────────────────────────────────────┘
//!            ▼
//!  per-connection outbox (bounded in bytes) ──► WebSocket / SSE / MQTT task ──► client
//! ```
//!
//! - [`hub`] owns the subscription registry; one thread, so registering a
//!   subscription and releasing events are totally ordered, which is what
//!   makes resume seamless (replay up to the seq the hub answered with,
//!   live after it).
//! - [`watcher`] drains sled's subscriber without ever blocking it (a full
//!   sled subscriber blocks every writer).
//! - [`render`] decides whether one event reaches one subscriber and
//!   serializes it (as a [`crate::protocol`] message) once for all of them;
//!   the hub and replay share it.
//! - [`outbox`] holds what waits for one connection, bounded in bytes, and
//!   counts all outboxes against one memory budget.
//! - [`pacing`] spaces the writes of busy connections, so a heavy fan-out
//!   writes fewer, fuller batches rather than taking every core.
//! - [`replay`] streams what a resuming subscriber missed, a page at a time.
//! - [`presence`] keeps who is subscribed to the topics that track it, and
//!   gathers joins and leaves into one announcement per room and window.
//! - The wire types are in [`crate::protocol`]; the transports in `realtime`.

pub mod backfill;
pub mod backlog;
pub mod hub;
pub mod outbox;
pub mod pacing;
pub mod presence;
pub mod render;
pub mod replay;
pub mod target;
pub mod watcher;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::oneshot;
use tungstenite::Utf8Bytes;

use crate::auth::{Auth, Principal};
use crate::config::Live;
use crate::protocol::ServerMessage;
use crate::rules::Expr;
use crate::series::{BucketSpec, LiveBuckets};
use crate::store::topics::Message;
use crate::store::writer::Taps;
use crate::store::Store;
use crate::visibility::Reach;
use backlog::Backlog;

pub type ConnId = u64;

/// A map keyed by connection id. The ids are the server's own counter, so
/// SipHash's defence against chosen keys buys nothing, and the hub looks
/// up two such maps for every delivery.
pub type ConnMap<V> = HashMap<ConnId, V, BuildHasherDefault<ConnIdHasher>>;

/// Fibonacci hashing: one multiply spreads consecutive ids over the high
/// bits the table's probing reads as well as over the low ones.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnIdHasher(u64);

impl Hasher for ConnIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// One serialized server message, shared by every recipient.
#[derive(Clone, Debug)]
pub struct Frame {
    /// The seq for SSE's `id:` line; 0 for frames that have none.
    pub seq: u64,
    pub kind: FrameKind,
    pub text: Utf8Bytes,
    /// When it was serialized: how long it then waits for its connection
    /// is the delivery lag (`outbox`, `pulsebase_realtime_delivery_lag_seconds`).
    pub made: Instant,
    /// The frame as an SSE event block, made by the first SSE stream that
    /// sends it and copied by the others: a thousand streams formatting
    /// the same event each cost more than the rest of their delivery.
    pub sse: OnceLock<Box<[u8]>>,
    /// Where the frame goes over MQTT, read from its JSON by the first
    /// MQTT session that sends it (`None`: MQTT does not carry it). Read
    /// per delivery, it cost more than the rest of the delivery.
    pub mqtt: OnceLock<Option<MqttAddress>>,
}

/// A frame's topic in the hub and its MQTT topic name.
#[derive(Clone, Debug)]
pub struct MqttAddress {
    pub topic: Box<str>,
    /// When it differs from `topic`: `collection/id` for a record's event.
    pub name: Option<Box<str>>,
}

impl MqttAddress {
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.topic)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Event,
    Message,
    /// Replies, errors and notices, by their `type`.
    Control(&'static str),
}

impl FrameKind {
    /// The SSE `event:` name.
    pub fn sse_name(self) -> &'static str {
        match self {
            FrameKind::Event => "event",
            FrameKind::Message => "message",
            FrameKind::Control(name) => name,
        }
    }
}

impl AsRef<Frame> for Frame {
    fn as_ref(&self) -> &Frame {
        self
    }
}

impl Frame {
    /// A reply, error or notice: serialized once, named by its `type`.
    pub fn control(message: &ServerMessage) -> Frame {
        Frame::new(0, FrameKind::Control(message.kind()), message.to_text())
    }

    /// A frame made now.
    pub fn new(seq: u64, kind: FrameKind, text: impl Into<Utf8Bytes>) -> Frame {
        Frame {
            seq,
            kind,
            text: text.into(),
            made: Instant::now(),
            sse: OnceLock::new(),
            mqtt: OnceLock::new(),
        }
    }
}

/// Why the server ends a connection: a close code, and a last message sent
/// before it when there is one (boxed: a connection's task holds a `Close`
/// for its whole life, and most have no last message).
#[derive(Clone, Debug)]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
    pub last: Option<Box<Frame>>,
}

impl Close {
    pub fn slow_consumer() -> Close {
        Close {
            code: 4008,
            reason: "slow_consumer",
            last: None,
        }
    }

    /// Another connection with the same MQTT client id came.
    pub fn taken_over() -> Close {
        Close {
            code: 4009,
            reason: "session_taken_over",
            last: None,
        }
    }

    /// The server is stopping: a client should come back later.
    pub fn going_away() -> Close {
        Close {
            code: 1001,
            reason: "server shutting down",
            last: None,
        }
    }

    pub fn unauthorized(code: &'static str, message: &str) -> Close {
        Close {
            code: 4001,
            reason: code,
            last: Some(Box::new(Frame::control(&ServerMessage::Closing {
                code,
                message,
            }))),
        }
    }
}

/// How a connection reaches the server, as `_connections` and the stats
/// name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Sse,
    Mqtt,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::Mqtt => "mqtt",
        }
    }
}

/// What the hub keeps of a connection.
pub struct ConnHandle {
    pub id: ConnId,
    pub transport: Transport,
    /// An MQTT client id: a new connection with the same one takes the
    /// session over and the older connection is closed.
    pub client_id: Option<String>,
    pub principal: Principal,
    /// The sign-in session of the access token it authenticated with last;
    /// ending that sign-in closes the connection.
    pub sign_in: Option<String>,
    /// Frames are shared, not copied: a slot is one pointer. It also
    /// carries the hub's request to close the connection.
    pub outbox: outbox::Sender,
}

/// Operations a subscription wants, as a bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ops(u8);

impl Ops {
    pub const CREATE: Ops = Ops(1);
    pub const UPDATE: Ops = Ops(2);
    pub const DELETE: Ops = Ops(4);
    pub const ALL: Ops = Ops(7);

    pub fn parse(names: &[String]) -> Result<Ops, String> {
        if names.is_empty() {
            return Ok(Ops::ALL);
        }
        let mut ops = 0;
        for name in names {
            ops |= match name.as_str() {
                "create" => 1,
                "update" => 2,
                "delete" => 4,
                other => {
                    return Err(format!(
                        "unknown op {other:?}; use create, update or delete"
                    ))
                }
            };
        }
        Ok(Ops(ops))
    }

    pub fn contains(self, other: Ops) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One subscription of one connection to one topic.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// `readings`, `readings/ID`, a custom topic, `_users` or `_connections`.
    pub topic: String,
    /// For a collection or record topic, the collection subscribed to, by
    /// id: a namesake created after a drop is another collection.
    pub collection_id: Option<u32>,
    pub ops: Ops,
    pub filter: Option<Arc<Expr>>,
    /// A series collection's readings in closed time buckets instead of
    /// one event per reading.
    pub aggregate: Option<Arc<BucketSpec>>,
    /// A custom topic that tracks presence: the connection is a member.
    pub presence: bool,
}

impl Subscription {
    /// A record topic (`c/ID`) reaches one record (`view`); a collection
    /// topic the whole collection (`list` and `view`).
    pub fn reach(&self) -> Reach {
        if self.topic.contains('/') {
            Reach::Record
        } else {
            Reach::Collection
        }
    }
}

/// The handle the rest of the server uses to talk to the hub.
#[derive(Clone)]
pub struct Realtime {
    tx: std_mpsc::Sender<hub::Input>,
    next_conn: Arc<AtomicU64>,
    /// The hub thread, joined by [`Realtime::stop`].
    hub: Arc<Mutex<Option<JoinHandle<()>>>>,
    /// Open connections, against `max_connections` and its per-IP cap.
    pub connections: crate::limits::Connections,
    /// HTTP publishes per caller, against `message_rate`.
    pub publish_rates: crate::limits::PublishRates,
    /// What all outboxes hold, against `outbox_budget_mb`.
    outbox_budget: Arc<outbox::Budget>,
    /// How many connections are busy, for the gap between their writes.
    pacing: Arc<pacing::Pacing>,
}

/// The hub's inbox before the hub runs: the writer needs the publish tap
/// before it starts, and the hub needs the writer's first seq.
pub struct Wiring {
    tx: std_mpsc::Sender<hub::Input>,
    rx: std_mpsc::Receiver<hub::Input>,
    subscriber: sled::Subscriber,
    backlog: Arc<Backlog>,
}

impl Wiring {
    /// Subscribes to the change log; call before anything writes.
    pub fn new(store: &Store) -> Wiring {
        Wiring::with_backlog(store, backlog::DEFAULT_BYTES)
    }

    /// With a byte budget for what waits for the hub (see [`backlog`]).
    pub fn with_backlog(store: &Store, bytes: usize) -> Wiring {
        let (tx, rx) = std_mpsc::channel();
        Wiring {
            tx,
            rx,
            subscriber: store.watch_changes(),
            backlog: Arc::new(Backlog::new(bytes)),
        }
    }

    /// The writer's hooks into the hub: published messages (the hub puts
    /// them in seq order), the seq up to which events may go out (durable
    /// in `sync` mode; applied and under a durable seq reservation in
    /// `relaxed` mode), and seqs a failed write leaves empty.
    pub fn taps(&self) -> Taps {
        let messages = self.tx.clone();
        let watermarks = self.tx.clone();
        let gaps = self.tx.clone();
        let backlog = self.backlog.clone();
        Taps {
            publish: Arc::new(move |message: Message, stored: bool| {
                let input = if backlog.admit(backlog::message_size(&message)) {
                    hub::Input::Published(message, stored)
                } else {
                    hub::Input::Shed {
                        seq: message.seq,
                        through: message.seq,
                        shed: hub::Shed::Topic(message.topic),
                        stored,
                    }
                };
                let _ = messages.send(input);
            }),
            released: Arc::new(move |seq| {
                let _ = watermarks.send(hub::Input::Watermark(seq));
            }),
            gap: Arc::new(move |first, last| {
                let _ = gaps.send(hub::Input::Gap { first, last });
            }),
        }
    }

    /// Starts the hub and the watcher. `first_seq` is the first seq the
    /// writer will hand out; everything before it is already released.
    pub fn start(self, store: Store, first_seq: u64, live: Live) -> std::io::Result<Realtime> {
        let outbox_budget = Arc::new(outbox::Budget::default());
        let budget = outbox_budget.clone();
        let hub = hub::spawn(
            store,
            first_seq,
            self.rx,
            self.backlog.clone(),
            budget,
            live,
        )?;
        watcher::spawn(self.subscriber, self.tx.clone(), self.backlog)?;
        Ok(Realtime {
            tx: self.tx,
            next_conn: Arc::new(AtomicU64::new(1)),
            hub: Arc::new(Mutex::new(Some(hub))),
            connections: crate::limits::Connections::default(),
            publish_rates: crate::limits::PublishRates::default(),
            outbox_budget,
            pacing: pacing::Pacing::new(pacing::delivery_threads()),
        })
    }
}

impl Realtime {
    pub fn next_conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    fn send(&self, input: hub::Input) {
        // The hub only stops at shutdown; a lost command then is harmless.
        let _ = self.tx.send(input);
    }

    /// A new connection's outbox: the sender goes into its [`ConnHandle`].
    pub fn outbox(&self) -> (outbox::Sender, outbox::Receiver) {
        outbox::channel(&self.outbox_budget)
    }

    /// A new connection's pace (see [`pacing`]).
    pub fn pace(&self) -> pacing::Pace {
        pacing::Pace::new(&self.pacing)
    }

    /// Connections paced as busy now (see [`pacing`]).
    pub fn paced_connections(&self) -> usize {
        self.pacing.busy()
    }

    /// A connection's place in the busy count, for a transport that keeps
    /// its own timer (MQTT).
    pub fn busy(&self) -> pacing::Busy {
        pacing::Busy::new(&self.pacing)
    }

    pub fn connect(&self, handle: ConnHandle) {
        self.send(hub::Input::Connect(Box::new(handle)));
    }

    /// The server is stopping: every connection is asked to close (1001),
    /// and any that connects from now on at once. Connections hear of the
    /// stop only this way, through their outbox's close signal, so an idle
    /// one keeps no waiter of its own on the shutdown flag.
    pub fn going_away(&self) {
        self.send(hub::Input::GoingAway);
    }

    pub fn disconnect(&self, conn: ConnId) {
        self.send(hub::Input::Disconnect(conn));
    }

    /// Registers subscriptions, all at one position; answers the last seq
    /// released before them, so a replay up to that seq and live delivery
    /// after it meet exactly, for every topic at once.
    pub async fn subscribe(&self, conn: ConnId, subscriptions: Vec<Subscription>) -> u64 {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::Subscribe {
            conn,
            subscriptions,
            reply,
        });
        answer.await.unwrap_or(0)
    }

    /// The stored part of a bucket subscription's buckets (see `backfill`).
    pub fn seed_buckets(&self, conn: ConnId, topic: String, upto: u64, seed: LiveBuckets) {
        self.send(hub::Input::SeedBuckets {
            conn,
            topic,
            upto,
            seed: Box::new(seed),
        });
    }

    /// Removes a subscription; answers whether there was one.
    pub async fn unsubscribe(&self, conn: ConnId, topic: String) -> bool {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::Unsubscribe { conn, topic, reply });
        answer.await.unwrap_or(false)
    }

    /// The connection now acts as someone else (the `auth` action).
    pub fn set_identity(&self, conn: ConnId, principal: Principal) {
        self.send(hub::Input::Identity { conn, principal });
    }

    /// Subscribers of a deleted custom topic hear `topic_deleted`.
    pub fn topic_deleted(&self, name: &str) {
        self.send(hub::Input::TopicDeleted(name.to_owned()));
    }

    /// Connections authenticated as this principal (a revoked API key) close.
    pub fn principal_revoked(&self, id: &str) {
        self.send(hub::Input::PrincipalRevoked(id.to_owned()));
    }

    /// Connections whose latest token belongs to this sign-in (signed out,
    /// or revoked for a reused refresh token) close.
    pub fn sign_in_ended(&self, sign_in: &str) {
        self.send(hub::Input::SignInEnded(sign_in.to_owned()));
    }

    /// The connection now uses a token of this sign-in (the `auth` action).
    pub fn set_sign_in(&self, conn: ConnId, sign_in: Option<String>, auth: &Auth) {
        self.send(hub::Input::SignIn {
            conn,
            sign_in: sign_in.clone(),
        });
        self.close_if_signed_out(auth, sign_in.as_deref());
    }

    /// Closes the connections of `sign_in` if it has ended: call it after
    /// telling the hub about a connection's sign-in. A sign-out between the
    /// token's check and that message would otherwise reach the hub first
    /// and miss the connection; either this check sees it, or its own
    /// message comes after.
    pub fn close_if_signed_out(&self, auth: &Auth, sign_in: Option<&str>) {
        if let Some(sign_in) = sign_in.filter(|s| auth.session_revoked(s)) {
            self.sign_in_ended(sign_in);
        }
    }

    /// The last seq the hub has released.
    pub async fn released_seq(&self) -> u64 {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::Position(reply));
        answer.await.unwrap_or(0)
    }

    /// Who is subscribed to a presence topic, as last announced: the list,
    /// or past `presence_max` only the count. The caller checks who may
    /// ask.
    pub async fn presence(&self, topic: String) -> presence::Snapshot {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::Presence { topic, reply });
        answer.await.unwrap_or_default()
    }

    /// Connection, subscription and delivery counts (zeros once stopped).
    pub async fn stats(&self) -> hub::HubStats {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::Stats(reply));
        answer.await.unwrap_or_default()
    }

    /// The MQTT client ids connected now (none once stopped).
    pub async fn mqtt_client_ids(&self) -> std::collections::HashSet<String> {
        let (reply, answer) = oneshot::channel();
        self.send(hub::Input::ClientIds(reply));
        answer.await.unwrap_or_default()
    }

    /// Closes every connection (1001), stops the hub and waits for its
    /// thread.
    pub async fn stop(&self) {
        self.send(hub::Input::Stop);
        let hub = self.hub.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(hub) = hub {
            let joined = tokio::task::spawn_blocking(move || hub.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the realtime hub thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher as _;

    #[test]
    fn consecutive_connection_ids_spread_over_high_and_low_bits() {
        // The table picks a slot from the low bits and filters a probe by
        // the top seven; an identity hash would give every small id the
        // same top bits.
        let hasher = BuildHasherDefault::<ConnIdHasher>::default();
        let hashes: Vec<u64> = (1..=1024u64).map(|id| hasher.hash_one(id)).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        assert_eq!(top.len(), 128, "top seven bits");
        assert!(low.len() > 1000, "low ten bits: {}", low.len());
    }
}
