//! The hub: one thread that owns every subscription. It takes change-log
//! entries and messages in any order, releases them strictly in seq order
//! (changes and stored messages only once their write is on disk), finds
//! the subscriptions through a topic index, checks each in memory, renders
//! each distinct payload once, and offers it to each outbox. A full outbox
//! closes that connection (`slow_consumer`); nobody else waits. Past the
//! memory budget of all outboxes, the connections holding the most close.

mod buckets;
mod connections;
mod input;
mod outboxes;
mod rooms;
mod routes;
mod stats;

use input::awaited;
pub use input::Input;
pub use stats::HubStats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::backlog::{self, Backlog};
use super::outbox::{self, Limits};
use super::presence::{Rooms, Snapshot, Who};
use super::render::{self, ChangeView, Rendered};
use super::{Close, ConnHandle, ConnId, ConnMap, Frame, FrameKind, Subscription, Transport};
use crate::auth::Principal;
use crate::clock;
use crate::config::Live;
use crate::model::Collection;
use crate::protocol::server::{
    ConnectionName, ConnectionNotice, MessageData, PresenceChange, UnsubscribeReason, Unsubscribed,
};
use crate::protocol::{self, ServerMessage};
use crate::series::{LiveBuckets, Reading};
use crate::store::change::{Change, ChangeKind, USERS_ID};
use crate::store::topics::Message;
use crate::store::Store;
use crate::visibility::Viewer;
use connections::remove_from;
use outboxes::offer;

/// System topics.
pub const USERS_TOPIC: &str = "_users";
pub const CONNECTIONS_TOPIC: &str = "_connections";

/// Whose subscribers a shed change or message concerns.
#[derive(Debug)]
pub enum Shed {
    Collection(u32),
    Topic(String),
}

enum Pending {
    Nothing,
    /// Nothing up to this seq, and nothing stored to wait for.
    Gap(u64),
    Change(Change),
    Message(Message, bool),
    /// Whose subscribers, whether stored, and the last seq it covered.
    Shed(Shed, bool, u64),
}

struct Conn {
    handle: ConnHandle,
    viewer: Viewer,
    principal_id: Option<String>,
    /// The token generation the connection authenticated with.
    generation: Option<u64>,
    topics: HashSet<String>,
    /// Who it is in presence rooms.
    who: Option<Arc<Who>>,
}

struct Hub {
    store: Store,
    backlog: Arc<Backlog>,
    /// The next seq to release.
    next: u64,
    watermark: u64,
    pending: BTreeMap<u64, Pending>,
    /// Boxed: a hash table keeps up to half its slots empty as it grows,
    /// each as large as its value; with the whole `Conn` in every slot the
    /// table cost about 500 bytes per connection, with a pointer 16.
    conns: ConnMap<Box<Conn>>,
    /// topic → connection → its subscription to that topic.
    topics: HashMap<String, ConnMap<Subscription>>,
    by_principal: HashMap<String, ConnMap<()>>,
    delivered: u64,
    slow_closes: u64,
    /// Open buckets of each `aggregate` subscription, by connection and
    /// topic (made at its first reading; see [`Hub::close_buckets`]).
    buckets: HashMap<(ConnId, String), LiveBuckets>,
    /// Bucket subscriptions waiting for their stored readings, with the
    /// position they were registered at.
    seeding: HashMap<(ConnId, String), u64>,
    last_bucket_check: Instant,
    routes: routes::RouteCache,
    /// Who is subscribed to each presence topic (see `fanout::presence`).
    presence: Rooms,
    /// For `presence_max` and the outbox limits.
    live: Live,
    /// The outbox limits, read once per pass.
    limits: Limits,
    /// What all outboxes hold.
    outbox_budget: Arc<outbox::Budget>,
    /// The server is stopping: connections are closed as they come.
    going_away: bool,
}

/// How often closed buckets are looked for.
const BUCKET_TICK: Duration = Duration::from_millis(200);

pub fn spawn(
    store: Store,
    first_seq: u64,
    inputs: std_mpsc::Receiver<Input>,
    backlog: Arc<Backlog>,
    outbox_budget: Arc<outbox::Budget>,
    live: Live,
) -> std::io::Result<JoinHandle<()>> {
    let mut hub = Hub {
        store,
        backlog,
        next: first_seq,
        watermark: first_seq.saturating_sub(1),
        pending: BTreeMap::new(),
        conns: ConnMap::default(),
        topics: HashMap::new(),
        by_principal: HashMap::new(),
        delivered: 0,
        slow_closes: 0,
        buckets: HashMap::new(),
        seeding: HashMap::new(),
        routes: routes::RouteCache::default(),
        last_bucket_check: Instant::now(),
        presence: Rooms::default(),
        limits: Limits::of(&live.get()),
        live,
        outbox_budget,
        going_away: false,
    };
    std::thread::Builder::new()
        .name("pulsebase-hub".into())
        .spawn(move || {
            crate::priority::favour_current_thread();
            // Whether the last inputs held a message published without
            // the writer: more may follow one by one (see `awaited`).
            let mut unstored = false;
            loop {
                let awaited = if unstored { awaited(&inputs) } else { None };
                let input = match awaited {
                    Some(input) => Ok(input),
                    None => match hub.next_timer() {
                        None => inputs
                            .recv()
                            .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
                        Some(wait) => inputs.recv_timeout(wait),
                    },
                };
                let input = match input {
                    Ok(input) => input,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        hub.timers();
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                };
                hub.limits = Limits::of(&hub.live.get());
                hub.outbox_budget.keep_bounds(&hub.limits);
                unstored = matches!(input, Input::Published(_, false));
                if !hub.handle(input) {
                    break;
                }
                // Take whatever else is queued before releasing, so one
                // burst of inputs costs one pass over the pending map.
                let mut open = true;
                for input in inputs.try_iter().take(4096) {
                    unstored |= matches!(input, Input::Published(_, false));
                    if !hub.handle(input) {
                        open = false;
                        break;
                    }
                }
                hub.release();
                hub.timers();
                if !open {
                    break;
                }
            }
            hub.close_all();
        })
}

impl Hub {
    /// How long the hub may wait for input before a timer is due: closing
    /// buckets, or ending a presence window. `None`: no timer runs.
    fn next_timer(&self) -> Option<Duration> {
        let buckets = (!self.buckets.is_empty())
            .then(|| BUCKET_TICK.saturating_sub(self.last_bucket_check.elapsed()));
        let presence = self
            .presence
            .next_due()
            .map(|at| at.saturating_duration_since(Instant::now()));
        match (buckets, presence) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers that are due.
    fn timers(&mut self) {
        if !self.buckets.is_empty() && self.last_bucket_check.elapsed() >= BUCKET_TICK {
            self.close_buckets();
        }
        self.end_presence_windows();
    }

    /// Returns false to stop.
    fn handle(&mut self, input: Input) -> bool {
        match input {
            Input::Change(change) => {
                if change.seq >= self.next {
                    self.pending.insert(change.seq, Pending::Change(change));
                }
            }
            Input::Published(message, stored) => {
                if message.seq >= self.next {
                    self.pending
                        .insert(message.seq, Pending::Message(message, stored));
                }
            }
            Input::Shed {
                seq,
                through,
                shed,
                stored,
            } => {
                if seq >= self.next {
                    self.pending
                        .insert(seq, Pending::Shed(shed, stored, through));
                }
            }
            Input::Unreadable(seq) => {
                if seq >= self.next {
                    self.pending.insert(seq, Pending::Nothing);
                }
            }
            Input::Gap { first, last } => {
                if first >= self.next {
                    self.pending.insert(first, Pending::Gap(last));
                }
            }
            Input::Watermark(seq) => self.watermark = self.watermark.max(seq),
            Input::Connect(handle) if self.going_away => handle.outbox.close(Close::going_away()),
            Input::Connect(handle) => self.connect(*handle),
            Input::Disconnect(conn) => self.disconnect(conn, "disconnect"),
            Input::Subscribe {
                conn,
                subscriptions,
                reply,
            } => {
                // Release what may go first, so the answered position is as
                // fresh as it can be.
                self.release();
                let position = self.next - 1;
                for subscription in subscriptions {
                    self.reset_buckets(conn, &subscription, position);
                    self.subscribe(conn, subscription);
                }
                let _ = reply.send(position);
            }
            Input::SeedBuckets {
                conn,
                topic,
                upto,
                seed,
            } => self.seeded(conn, topic, upto, *seed),
            Input::Unsubscribe { conn, topic, reply } => {
                let removed = self.unsubscribe(conn, &topic);
                let _ = reply.send(removed);
            }
            Input::Identity { conn, principal } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.viewer = Viewer::of(&principal);
                    c.generation = principal.user().map(|u| u.generation);
                    let id = principal.id();
                    if id != c.principal_id {
                        if let Some(old) = c.principal_id.take() {
                            remove_from(&mut self.by_principal, &old, conn);
                        }
                        if let Some(new) = &id {
                            self.by_principal
                                .entry(new.clone())
                                .or_default()
                                .insert(conn, ());
                        }
                        c.principal_id = id;
                    }
                    self.presence_user(conn, Who::of(&principal));
                }
            }
            Input::TopicDeleted(name) => self.topic_gone(&name, UnsubscribeReason::TopicDeleted),
            Input::PrincipalRevoked(id) => {
                let conns: Vec<ConnId> = self
                    .by_principal
                    .get(&id)
                    .map(|c| c.keys().copied().collect())
                    .unwrap_or_default();
                for conn in conns {
                    self.close(
                        conn,
                        Close::unauthorized("unauthorized", "this API key was revoked"),
                    );
                }
            }
            Input::SignIn { conn, sign_in } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.handle.sign_in = sign_in;
                }
            }
            Input::SignInEnded(sign_in) => self.sign_in_ended(&sign_in),
            Input::Position(reply) => {
                self.release();
                let _ = reply.send(self.next - 1);
            }
            Input::Stats(reply) => {
                let _ = reply.send(self.stats());
            }
            Input::ClientIds(reply) => {
                let _ = reply.send(self.client_ids());
            }
            Input::Presence { topic, reply } => {
                let _ = reply.send(self.presence_snapshot(&topic));
            }
            Input::GoingAway => {
                self.going_away = true;
                self.close_all();
            }
            Input::Stop => return false,
        }
        true
    }

    fn release(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            // A block of readings covers several seqs, all made durable
            // by the same fsync.
            let (needs_disk, last) = match entry.get() {
                Pending::Change(change) => (true, change.through.max(self.next)),
                Pending::Nothing => (true, self.next),
                Pending::Gap(last) => (false, (*last).max(self.next)),
                Pending::Message(_, stored) => (*stored, self.next),
                Pending::Shed(_, stored, through) => (*stored, (*through).max(self.next)),
            };
            if needs_disk && last > self.watermark {
                break;
            }
            match entry.remove() {
                Pending::Change(change) => {
                    self.deliver_change(&change);
                    self.backlog.release(backlog::change_size(&change));
                }
                Pending::Message(message, _) => {
                    self.deliver_message(&message);
                    self.backlog.release(backlog::message_size(&message));
                }
                Pending::Shed(shed, _, _) => self.shed(&shed),
                Pending::Nothing | Pending::Gap(_) => {}
            }
            self.next = last + 1;
        }
    }

    fn deliver_change(&mut self, change: &Change) {
        if change.collection_id == USERS_ID {
            self.identity_changed(&change.record_id);
            if self.topics.contains_key(USERS_TOPIC) {
                let view = ChangeView::new(change, None);
                self.fan_out_change(&view, USERS_TOPIC, None);
            }
            return;
        }
        if change.kind == ChangeKind::DropCollection {
            self.collection_dropped(change.collection_id, &change.collection);
            return;
        }
        // By id, and found even when the collection was dropped after this
        // change was made: its subscribers get what was pending before the
        // drop, judged by its own rules.
        let Some(collection) = self.store.catalog().by_id(change.collection_id) else {
            return;
        };
        if change.kind == ChangeKind::Truncate {
            if self.topics.contains_key(&change.collection) {
                let frame = Arc::new(render::render_truncate(change, &change.collection));
                self.fan_out(&change.collection, |_, _| Some(frame.clone()));
            }
            return;
        }
        if !collection.emits(change.kind.event_op()) {
            return;
        }
        if change.kind == ChangeKind::Append {
            self.deliver_readings(change, &collection);
            return;
        }
        let record_topic = format!("{}/{}", change.collection, change.record_id);
        let watched = |topic: &str| self.topics.contains_key(topic);
        if !watched(&change.collection) && !watched(&record_topic) {
            return;
        }
        // Parsed once for both topics and all their subscribers.
        let view = ChangeView::new(change, Some(&collection));
        self.fan_out_change(&view, &change.collection, Some(&collection));
        self.fan_out_change(&view, &record_topic, Some(&collection));
    }

    /// Expands a block into one `create` per reading, each judged and
    /// rendered like a record's. The block is read only when someone
    /// listens to the collection or one of its readings.
    fn deliver_readings(&mut self, change: &Change, collection: &Collection) {
        let name = &change.collection;
        let record_prefix = format!("{name}/");
        let whole = self.topics.contains_key(name);
        let single = self.topics.keys().any(|t| t.starts_with(&record_prefix));
        if !whole && !single {
            return;
        }
        let readings = match self
            .store
            .readings_between(collection.id, change.seq, change.through)
        {
            Ok(readings) => readings,
            Err(e) => {
                tracing::error!(seq = change.seq, error = %e, "unreadable block of readings");
                return;
            }
        };
        let expected = change.through.saturating_sub(change.seq) + 1;
        if readings.len() as u64 != expected {
            // Retention may drop a block before a lagging hub reaches it
            // (its subscribers then get the `expired` message); anything
            // else is a lost delivery, and must not pass in silence.
            tracing::warn!(
                collection = %name,
                seq = change.seq,
                through = change.through,
                found = readings.len(),
                "a block of readings is not whole when the hub delivers it"
            );
        }
        let routes = whole.then(|| self.routes(name, collection));
        for (reading, change, fields) in render::readings_of(change, collection, readings) {
            let view = ChangeView::reading(&change, collection, fields);
            if let Some(routes) = &routes {
                self.feed_buckets(&view, &reading, name, collection, &routes.buckets);
                let among = routes.for_source(&reading.series);
                self.fan_out_change_among(&view, name, Some(collection), among);
            }
            if single {
                let topic = format!("{record_prefix}{}", change.record_id);
                self.fan_out_change(&view, &topic, Some(collection));
            }
        }
    }

    fn fan_out_change(&mut self, view: &ChangeView, topic: &str, collection: Option<&Collection>) {
        let everyone: Vec<ConnId> = self
            .topics
            .get(topic)
            .map(|subscribers| subscribers.keys().copied().collect())
            .unwrap_or_default();
        self.fan_out_change_among(view, topic, collection, everyone.into_iter());
    }

    fn fan_out_change_among(
        &mut self,
        view: &ChangeView,
        topic: &str,
        collection: Option<&Collection>,
        among: impl Iterator<Item = ConnId>,
    ) {
        let mut rendered = Rendered::new(view, topic);
        let collection_id = collection.map(|c| c.id);
        self.fan_out_among(topic, among, |conn, subscription| {
            // Bucket subscriptions get buckets, not readings.
            if subscription.collection_id != collection_id || subscription.aggregate.is_some() {
                return None;
            }
            let seen = view.seen(collection, subscription, &conn.viewer)?;
            Some(rendered.frame(seen, conn.viewer.admin))
        });
    }

    fn deliver_message(&mut self, message: &Message) {
        // Nobody listening: skip the lookup and the parse.
        if !self.topics.contains_key(&message.topic) {
            return;
        }
        let Some(topic) = self.store.topics().get(&message.topic) else {
            return;
        };
        // The data is parsed only for rules that read it: at a high
        // message rate, parsing every message cost more than delivering it.
        let subscribe_reads_data = !topic.subscribe.fields().is_empty();
        let mut data: Option<Map<String, Value>> = None;
        let nothing = Map::new();
        let now = clock::now_rfc3339();
        let mut frame = None;
        self.fan_out(&message.topic, |conn, subscription| {
            let data = if subscribe_reads_data || subscription.filter.is_some() {
                &*data.get_or_insert_with(|| {
                    serde_json::from_slice(&message.data).unwrap_or_default()
                })
            } else {
                &nothing
            };
            render::message_reaches(&topic, data, subscription, &conn.viewer, &now).then(|| {
                frame
                    .get_or_insert_with(|| Arc::new(render::render_message(message)))
                    .clone()
            })
        });
    }

    /// Offers each subscriber of `topic` the frame `frame_for` gives it
    /// (`None`: this one is not to see it), counts the deliveries, and
    /// closes the connections whose outbox was full.
    fn fan_out(
        &mut self,
        topic: &str,
        frame_for: impl FnMut(&Conn, &Subscription) -> Option<Arc<Frame>>,
    ) {
        let everyone: Vec<ConnId> = self
            .topics
            .get(topic)
            .map(|subscribers| subscribers.keys().copied().collect())
            .unwrap_or_default();
        self.fan_out_among(topic, everyone.into_iter(), frame_for);
    }

    /// [`Hub::fan_out`] to some of a topic's subscribers only.
    fn fan_out_among(
        &mut self,
        topic: &str,
        among: impl Iterator<Item = ConnId>,
        mut frame_for: impl FnMut(&Conn, &Subscription) -> Option<Arc<Frame>>,
    ) {
        let Some(subscribers) = self.topics.get(topic) else {
            return;
        };
        let mut overflowing = Vec::new();
        let mut delivered = 0;
        for conn_id in among {
            // Closed or unsubscribed since `among` was made.
            let (Some(subscription), Some(conn)) =
                (subscribers.get(&conn_id), self.conns.get(&conn_id))
            else {
                continue;
            };
            let Some(frame) = frame_for(conn, subscription) else {
                continue;
            };
            if offer(conn, frame, &self.limits) {
                delivered += 1;
            } else {
                overflowing.push(conn_id);
            }
        }
        self.delivered += delivered;
        self.close_slow(overflowing);
    }
}
