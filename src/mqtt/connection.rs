//! One MQTT client: CONNECT and its credential, then one task with a
//! `select!` over the socket, the publishes in flight, the hub's outbox
//! (deliveries, see `outgoing`), a persistent session's replay and saves,
//! the keep-alive timer, the credential's expiry and shutdown.
//!
//! Publishes are not serialized: each one's write is awaited beside the
//! others (up to [`WINDOW`] per connection, which is what a 5.0 client is
//! told as its receive maximum), so one fsync group carries the writes of
//! every client that published meanwhile. Acknowledgements go out in the
//! order the publishes came, as MQTT asks. Consecutive publishes to one
//! series collection's topic that were read together become one write.
//!
//! The CONNECT is handled in `open`; `waits` holds what the task waits
//! on; `persisted` the replay and saves of a persistent session.
//! Thousands of connections may sit idle, each costing its task, its
//! session and what they allocate: both are kept small (see `Session`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::{FutureExt as _, OptionFuture};
use futures_util::stream::{FuturesOrdered, StreamExt as _};
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::time::{Instant, Sleep};

use super::codec::{DecodeError, Framer, Inbound, Outbound, Publish, Version, Will};
use super::resume::{Keeper, Replaying};
use super::subscriptions::{Registration, Subscriptions};
use crate::auth::{AuthError, Principal};
use crate::error::ApiError;
use crate::state::AppState;

mod open;
mod outgoing;
mod persisted;
#[cfg(test)]
mod tests;
mod waits;

use crate::peer::write_in_time;
use open::{open, Opened};
use waits::{maybe, next_done, read_some, set_timer, tick, Woke};

/// Publishes in flight per connection before its socket is read again.
pub const WINDOW: u16 = 64;
/// QoS 1 deliveries awaiting the client's PUBACK, at most (fewer when a
/// 5.0 client asks for fewer with its receive maximum). While they are
/// all out, the hub's frames wait in the outbox; a full outbox closes
/// the connection as a slow consumer.
pub const OUT_WINDOW: u16 = 32;
/// The most read from a socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// How long a new connection has to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one over the connection caps has, to be refused in words.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a connection's credential is checked again, at most.
const RECHECK: Duration = Duration::from_secs(1);
/// How long a closed connection's writes get to finish.
const DRAIN: Duration = Duration::from_secs(10);
/// Room for the fixed header and topic on top of `max_message_bytes`,
/// which bounds the payload like a WebSocket message's.
const HEADER_ROOM: usize = 1024;

/// The topic a client may subscribe to for its refused writes (3.1.1 has
/// no reason codes).
pub fn errors_topic(client_id: &str) -> String {
    format!("_errors/{client_id}")
}

/// The result of one publish's write, for its acknowledgement.
struct Done {
    /// `None` for QoS 0: nothing to acknowledge.
    pkid: Option<u16>,
    result: Result<(), ApiError>,
}

/// The writes of one or more publishes, answered in their order.
type Write = Pin<Box<dyn Future<Output = Vec<Done>> + Send>>;

/// Consecutive publishes to one series collection's topic, read together
/// and not yet started: they become one write.
struct Run {
    topic: String,
    retain: bool,
    payloads: Vec<bytes::Bytes>,
    pkids: Vec<Option<u16>>,
}

/// The largest packet a client may send.
pub fn max_packet(state: &AppState) -> usize {
    state
        .live
        .get()
        .max_message_bytes
        .saturating_add(HEADER_ROOM)
}

/// Serves one client until it leaves, breaks the protocol or the server
/// stops. `stream` is a TCP connection or an upgraded WebSocket
/// ([`super::ws_io`]).
///
/// Two steps, chained rather than awaited in an `async fn`: such a task
/// keeps its arguments' room (and what only the CONNECT needed) beside the
/// session for as long as the connection is served, and every idle
/// connection would pay for it.
pub fn run<S>(state: AppState, stream: S, peer: SocketAddr) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(open(state, stream, peer))
        .then(|opened| OptionFuture::from(opened.map(Opened::serve)))
        .map(drop)
}

/// One client's state for as long as it is connected. Every idle
/// connection holds one inside its task, so what only some sessions use
/// (a Will, a persistent session, a replay, publishes in flight) is boxed
/// behind an `Option`: `None` costs a pointer, not the part's size.
struct Session {
    /// The CONNECT password, checked again now and then (`None`:
    /// anonymous).
    credential: Option<String>,
    /// When it was last checked.
    checked: Instant,
    /// This connection's place under `max_connections`.
    _slot: crate::limits::Slot,
    state: AppState,
    principal: Principal,
    peer: SocketAddr,
    version: Version,
    client_id: String,
    /// Whether the client subscribed to its `_errors/<client id>`.
    errors_subscribed: bool,
    /// Published if the session ends unexpectedly ([`End::publishes_will`]).
    will: Option<Box<Will>>,
    /// Bytes to write before the next wait.
    out: BytesMut,
    /// The writes started and not yet answered; made at the first publish
    /// and let go when none are left (an empty one still holds two
    /// allocations).
    pending: Option<Box<FuturesOrdered<Write>>>,
    /// Publishes in `pending` and `run`, counted against [`WINDOW`].
    publishes_in_flight: usize,
    /// Publishes read but not yet started (see [`Run`]).
    run: Option<Box<Run>>,
    /// The connection in the realtime hub: its outbox and close signal.
    registration: Registration,
    subscriptions: Subscriptions,
    /// QoS 1 deliveries awaiting PUBACK: packet id → the frame's seq.
    inflight: std::collections::BTreeMap<u16, u64>,
    /// The last packet id handed out.
    next_pkid: u16,
    /// How many QoS 1 deliveries may await PUBACK at once.
    out_window: u16,
    /// The persistent session, if the client asked for one (kept until
    /// the CONNECT has been answered either way: a clean start forgets a
    /// stored session).
    keeper: Option<Box<Keeper>>,
    /// What a taken-up session missed, sent before live deliveries, while
    /// there is some.
    replaying: Option<Box<Replaying>>,
    /// The seq of the last frame handed to the client.
    delivered: u64,
    /// Retained messages to send after a SUBACK, before anything else.
    retained: std::collections::VecDeque<crate::fanout::Frame>,
    /// Custom topics created, heard while a wildcard filter is held.
    topics_created: tokio::sync::watch::Receiver<u64>,
    /// A busy subscriber's writes are spaced like a WebSocket's (see
    /// `fanout::pacing`): at a thousand busy MQTT subscribers, a write
    /// each per round of the delivery threads took every core. Made when
    /// the subscriber is busy and let go once it is not: an idle
    /// connection carries a pointer, not the count's handle and a
    /// deadline.
    pace: Option<Box<outgoing::Paced>>,
}

/// Why a session ends.
enum End {
    /// The client sent DISCONNECT (a 5.0 one may ask for its Will).
    Left { will: bool },
    /// The socket closed or failed without a DISCONNECT.
    Lost,
    /// Tell a 5.0 client why (3.1.1 clients are just closed).
    Close(DisconnectReasonCode),
}

impl End {
    /// Whether the end was unexpected, as MQTT means it: anything but a
    /// DISCONNECT, except the server's own shutdown (the device did not
    /// fail; it reconnects once the server is back).
    fn publishes_will(&self) -> bool {
        match self {
            End::Left { will } => *will,
            End::Lost => true,
            End::Close(reason) => *reason != DisconnectReasonCode::ServerShuttingDown,
        }
    }
}

impl Session {
    /// Serves the connection once its CONNECT was answered. Not an `async
    /// fn`: that would keep its arguments twice in the task (as passed and
    /// as moved in), so the block uses them where they are. The stream is
    /// not split: it is read only inside the `select!` and written only
    /// outside it.
    #[allow(clippy::manual_async_fn)] // an async fn would keep its arguments twice
    fn serve<S>(
        mut self,
        mut stream: S,
        mut framer: Framer,
        mut buf: BytesMut,
        keep_alive: Option<Duration>,
        expires: Option<Instant>,
    ) -> impl Future<Output = ()> + Send
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        async move {
            let mut heard = Instant::now();
            // Boxed, and only while there is a deadline: a `Sleep` is over
            // a hundred bytes that an idle connection without keep-alive
            // would carry for nothing.
            let mut timer: Option<Pin<Box<Sleep>>> = None;
            // What was read with the CONNECT may already hold packets.
            let mut end = Box::pin(self.handle_all(&mut framer, &mut buf)).await;
            if buf.is_empty() {
                // The CONNECT's bytes are not kept while idle either.
                buf = BytesMut::new();
            }
            while end.is_none() {
                self.fill_window();
                if !self.out.is_empty() {
                    let written = write_in_time(&mut stream, &self.out).await;
                    // An idle connection keeps no write buffer.
                    self.out = BytesMut::new();
                    if written.is_err() {
                        end = Some(End::Lost);
                        break;
                    }
                }
                let silence = keep_alive.map(|k| heard + k);
                let window_open = self.publishes_in_flight < usize::from(WINDOW);
                let out_open = self.inflight.len() < usize::from(self.out_window);
                let replaying = self.replaying.is_some();
                let live = out_open
                    && self.retained.is_empty()
                    && !replaying
                    && self.paced_until().is_none();
                let save_at = self.save_due();
                set_timer(
                    &mut timer,
                    [save_at, silence, expires, self.paced_until()]
                        .into_iter()
                        .flatten()
                        .min(),
                );
                let wildcards = self.subscriptions.has_wildcard();
                // The rare waits are made (boxed) only when they can
                // happen; the `select!` holds every branch's future. What
                // woke the task is acted on after it: the `select!`'s own
                // output (as large as its largest branch's) would otherwise
                // keep its room while those actions are awaited.
                let woke = tokio::select! {
                    read = read_some(&mut stream, &mut buf), if window_open => match read {
                        Ok(0) | Err(_) => Woke::Lost,
                        Ok(_) => Woke::Read,
                    },
                    page = maybe(
                        self.replaying
                            .as_deref_mut()
                            .filter(|r| r.needs_page())
                            .map(|r| Box::pin(r.read_page(&self.state.store))),
                    ), if replaying => Woke::Page(page),
                    frame = self.registration.outbox.recv(), if live => match frame {
                        Some(frame) => {
                            self.deliver(&frame);
                            let (more, crowded) = self.deliver_waiting();
                            self.wrote(1 + more, crowded);
                            Woke::Nothing
                        }
                        // The hub let go of the connection: it says why.
                        None => Woke::HubClosed,
                    },
                    _ = self.registration.closed.closed() => Woke::HubClosed,
                    Ok(()) = maybe(wildcards.then(|| Box::pin(self.topics_created.changed()))) => {
                        Woke::TopicsCreated
                    }
                    Some(done) = next_done(&mut self.pending) => {
                        // While its window is full the client is not read: its
                        // silence then is the server's, and does not count.
                        heard = Instant::now();
                        self.publishes_in_flight -= done.len();
                        for done in done {
                            self.acknowledge(done);
                        }
                        if self.pending.as_ref().is_some_and(|p| p.is_empty()) {
                            self.pending = None;
                        }
                        Woke::Nothing
                    }
                    // One timer for the three deadlines.
                    () = tick(&mut timer) => Woke::Timer,
                };
                end = match woke {
                    Woke::Nothing => None,
                    Woke::Lost => Some(End::Lost),
                    Woke::HubClosed => Some(self.hub_closed()),
                    Woke::Read => {
                        heard = Instant::now();
                        let end = Box::pin(self.handle_all(&mut framer, &mut buf)).await;
                        if buf.is_empty() {
                            // Nothing left over: an idle connection keeps
                            // no read buffer.
                            buf = BytesMut::new();
                        }
                        end
                    }
                    Woke::Page(page) => Box::pin(self.replayed(page)).await,
                    Woke::TopicsCreated => {
                        Box::pin(self.cover_new_topics()).await;
                        None
                    }
                    Woke::Timer => {
                        let now = Instant::now();
                        if silence.is_some_and(|at| at <= now) {
                            Some(End::Close(DisconnectReasonCode::KeepAliveTimeout))
                        } else if expires.is_some_and(|at| at <= now) {
                            Some(End::Close(DisconnectReasonCode::NotAuthorized))
                        } else {
                            self.pace_over(now);
                            // Asked again rather than kept from before the
                            // `select!`: kept, it would take room in every
                            // connection's task.
                            if self.save_due().is_some_and(|at| at <= now) {
                                Box::pin(self.save(false)).await;
                            }
                            None
                        }
                    }
                };
            }
            drop(timer);
            self.registration.leave();
            if let Some(End::Close(reason)) = &end {
                self.send(&Outbound::Disconnect(*reason));
            }
            let _ = write_in_time(&mut stream, &self.out).await;
            let _ = stream.shutdown().await;
            Box::pin(self.save(true)).await;
            // A device that publishes at QoS 0 and disconnects at once (as
            // `mosquitto_pub` does) still means its message: writes already
            // received are finished, not dropped with the connection.
            self.start_run();
            if let Some(pending) = self.pending.as_mut() {
                let drained = async { while pending.next().await.is_some() {} };
                if tokio::time::timeout(DRAIN, drained).await.is_err() {
                    tracing::warn!(client = %self.client_id, "mqtt: writes of a closed connection did not finish in time");
                }
            }
            // After the client's own publishes: the Will is its last word.
            if let Some(will) = self
                .will
                .take()
                .filter(|_| end.is_some_and(|e| e.publishes_will()))
            {
                let credential = self.credential.as_deref();
                let principal = self.principal.clone();
                Box::pin(super::will::publish(
                    &self.state,
                    credential,
                    principal,
                    self.peer.ip(),
                    &self.client_id,
                    *will,
                ))
                .await;
            }
        }
    }

    /// Handles every whole packet in `buf`; `Some` when the session ends.
    /// Publishes that can be written together are gathered while packets
    /// are read and started before anything else is handled.
    async fn handle_all(&mut self, framer: &mut Framer, buf: &mut BytesMut) -> Option<End> {
        loop {
            match framer.next(buf) {
                Ok(Some(Inbound::Publish(publish))) => {
                    if let Some(end) = self.publish(publish) {
                        return Some(end);
                    }
                }
                Ok(Some(packet)) => {
                    self.start_run();
                    if let Some(end) = self.handle(packet).await {
                        return Some(end);
                    }
                }
                Ok(None) => {
                    self.start_run();
                    return None;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = ?e, "mqtt: unreadable packet");
                    return Some(End::Close(match e {
                        DecodeError::TooLarge => DisconnectReasonCode::PacketTooLarge,
                        DecodeError::Protocol(_) | DecodeError::UnsupportedVersion => {
                            DisconnectReasonCode::ProtocolError
                        }
                        DecodeError::Malformed(_) => DisconnectReasonCode::MalformedPacket,
                    }));
                }
            }
        }
    }

    async fn handle(&mut self, packet: Inbound) -> Option<End> {
        match packet {
            Inbound::Connect(_) => {
                return Some(End::Close(DisconnectReasonCode::ProtocolError));
            }
            Inbound::Publish(publish) => return self.publish(publish),
            Inbound::Subscribe {
                pkid,
                filters,
                properties,
            } => self.subscribe(pkid, filters, &properties).await,
            Inbound::Unsubscribe { pkid, filters } => {
                let own = errors_topic(&self.client_id);
                for filter in &filters {
                    if *filter == own {
                        self.errors_subscribed = false;
                    } else {
                        let realtime = &self.state.realtime;
                        let conn = self.registration.conn;
                        self.subscriptions.unsubscribe(realtime, conn, filter).await;
                    }
                }
                self.send(&Outbound::UnsubAck {
                    pkid,
                    count: filters.len(),
                });
                self.save(true).await;
            }
            Inbound::PubAck(pkid) => {
                self.inflight.remove(&pkid);
            }
            Inbound::PingReq => self.send(&Outbound::PingResp),
            Inbound::Disconnect => return Some(End::Left { will: false }),
            Inbound::DisconnectWithWill => return Some(End::Left { will: true }),
            Inbound::Ignored => {}
        }
        None
    }

    fn publish(&mut self, publish: Publish) -> Option<End> {
        let Publish {
            topic,
            payload,
            qos,
            pkid,
            retain,
        } = publish;
        if qos > 1 {
            // CONNACK offered QoS 1 at most.
            return Some(End::Close(DisconnectReasonCode::QoSNotSupported));
        }
        if let Some(end) = self.recheck() {
            return Some(end);
        }
        let pkid = (qos == 1).then_some(pkid);
        self.publishes_in_flight += 1;
        match &mut self.run {
            Some(run)
                if run.topic == topic
                    && run.retain == retain
                    && run.payloads.len() < usize::from(WINDOW) =>
            {
                run.payloads.push(payload);
                run.pkids.push(pkid);
            }
            _ => {
                self.start_run();
                self.run = Some(Box::new(Run {
                    topic,
                    retain,
                    payloads: vec![payload],
                    pkids: vec![pkid],
                }));
                let batches = self
                    .run
                    .as_ref()
                    .is_some_and(|run| super::publish::batches(&self.state, &run.topic));
                if !batches {
                    self.start_run();
                }
            }
        }
        None
    }

    /// Starts the gathered publishes' write.
    fn start_run(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        let Run {
            topic,
            retain,
            payloads,
            pkids,
        } = *run;
        let state = self.state.clone();
        let principal = self.principal.clone();
        let peer = self.peer.ip();
        let pending = self
            .pending
            .get_or_insert_with(|| Box::new(FuturesOrdered::new()));
        pending.push_back(Box::pin(async move {
            let results =
                super::publish::apply_all(&state, &principal, peer, &topic, payloads, retain).await;
            pkids
                .into_iter()
                .zip(results)
                .map(|(pkid, result)| Done { pkid, result })
                .collect()
        }));
    }

    /// Checks the credential again, at most once per [`RECHECK`]: a
    /// revoked key, a disabled user or an ended sign-in writes no more
    /// (the connection closes), and changed roles apply, as on the next
    /// REST request.
    fn recheck(&mut self) -> Option<End> {
        let credential = self.credential.as_deref()?;
        if self.checked.elapsed() < RECHECK {
            return None;
        }
        match self.state.auth.authenticate(credential) {
            Ok(principal) => {
                self.principal = principal;
                self.checked = Instant::now();
                None
            }
            Err(AuthError::InvalidToken | AuthError::Expired | AuthError::RefreshReused) => {
                Some(End::Close(DisconnectReasonCode::NotAuthorized))
            }
            // Storage trouble: the write itself will answer for it.
            Err(_) => None,
        }
    }

    fn send(&mut self, packet: &Outbound<'_>) {
        if let Err(e) = packet.encode(self.version, &mut self.out) {
            tracing::warn!(error = %e, "mqtt: cannot encode a packet");
        }
    }
}
