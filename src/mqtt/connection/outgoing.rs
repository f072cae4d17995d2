//! The outgoing half of a session: SUBSCRIBE and its SUBACK, taking up a
//! stored session, the hub's frames as PUBLISH packets within the
//! in-flight window, with the position a persistent session resumes from,
//! and the acknowledgements of the client's own publishes.

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use tokio::time::Instant;

use super::{errors_topic, Done, End, Session};
use crate::clock;
use crate::fanout::pacing::{Busy, BUSY_BATCH};
use crate::fanout::render;
use crate::fanout::{outbox, Close, Frame};
use crate::mqtt::codec::{Filter, Hello, Outbound, OutgoingPublish, SubCode, Version};
use crate::mqtt::resume::Replaying;
use crate::mqtt::subscriptions::{Props, Subscribed, Subscriptions};
use crate::services::topics::Target;
use crate::visibility::Viewer;
use serde_json::{Map, Value};

/// A busy subscriber's place in the busy count, and when it may write
/// next; the session's one timer waits for that beside its other
/// deadlines.
pub(super) struct Paced {
    busy: Busy,
    until: Option<Instant>,
}

impl Session {
    /// Grants what the same rules let a WebSocket subscribe to; the
    /// client's own `_errors/<client id>` is granted at QoS 0.
    pub(super) async fn subscribe(
        &mut self,
        pkid: u16,
        filters: Vec<Filter>,
        properties: &[(String, String)],
    ) {
        let own = errors_topic(&self.client_id);
        let (errors, others): (Vec<_>, Vec<_>) = filters
            .iter()
            .cloned()
            .enumerate()
            .partition(|(_, f)| f.path == own);
        self.errors_subscribed |= !errors.is_empty();
        let requested: Vec<Filter> = others.iter().map(|(_, f)| f.clone()).collect();
        let subscribed = if requested.is_empty() {
            None
        } else {
            // The caller as it is now, as for a WebSocket subscribe.
            if let Some(End::Close(_)) = self.recheck() {
                self.send(&Outbound::SubAck {
                    pkid,
                    codes: vec![SubCode::NotAuthorized; filters.len()],
                    reason: Some("the credential is no longer valid"),
                });
                return;
            }
            let conn = self.registration.conn;
            let props = Props::of(properties);
            let requested: Vec<_> = requested.into_iter().map(|f| (f, props.clone())).collect();
            Some(
                self.subscriptions
                    .subscribe(&self.state, &self.principal, conn, &requested)
                    .await,
            )
        };
        let mut codes = vec![SubCode::Granted(0); filters.len()];
        if let Some(subscribed) = &subscribed {
            for ((index, _), code) in others.iter().zip(&subscribed.codes) {
                codes[*index] = *code;
            }
        }
        if let Some(subscribed) = &subscribed {
            self.registered(subscribed).await;
        }
        let reason = subscribed.as_ref().and_then(|s| s.reason.as_deref());
        let mut out = BytesMut::new();
        let ack = Outbound::SubAck {
            pkid,
            codes,
            reason,
        };
        if let Err(e) = ack.encode(self.version, &mut out) {
            tracing::warn!(error = %e, "mqtt: cannot encode a SUBACK");
        }
        self.out.extend_from_slice(&out);
        // After the SUBACK, as MQTT has it.
        if let Some(subscribed) = &subscribed {
            self.queue_retained(subscribed).await;
        }
    }

    /// Once topics were registered in the hub: a session that had nothing
    /// to wait for starts at the position they were registered at, and a
    /// persistent one is saved with them.
    async fn registered(&mut self, subscribed: &Subscribed) {
        let idle = self.inflight.is_empty()
            && self.replaying.as_ref().is_none_or(|r| !r.active())
            && self.registration.outbox.is_empty();
        if idle {
            self.delivered = self.delivered.max(subscribed.upto);
        }
        self.save(true).await;
    }

    /// A custom topic was created: the wildcard filters that match it take
    /// it in, with its retained message, as if subscribed now.
    pub(super) async fn cover_new_topics(&mut self) {
        let conn = self.registration.conn;
        let subscribed = self
            .subscriptions
            .widen(&self.state, &self.principal, conn)
            .await;
        if subscribed.added.is_empty() {
            return;
        }
        self.registered(&subscribed).await;
        self.queue_retained(&subscribed).await;
    }

    /// How the session ends when the hub closed it (slow consumer,
    /// revoked identity, shutdown).
    pub(super) fn hub_closed(&mut self) -> End {
        let close = self.registration.closed.requested();
        if close.as_ref().is_some_and(|c| c.code == 4009) {
            // The newer connection owns the stored session now: this one
            // must not write its older filters and position over it.
            self.keeper = None;
        }
        End::Close(disconnect_reason(close.as_ref()))
    }

    /// Takes up a stored session (see `resume`); answers whether one was.
    /// The keeper of a session that is not to be kept is let go after.
    pub(super) async fn take_up(&mut self, hello: &Hello) -> bool {
        let conn = self.registration.conn;
        let Some(keeper) = self.keeper.as_mut() else {
            return false;
        };
        let taken = keeper
            .take_up(
                &self.state,
                hello,
                &self.principal,
                conn,
                &mut self.subscriptions,
            )
            .await;
        if !keeper.persistent() {
            self.keeper = None;
        }
        match taken {
            Ok(Some(resumed)) => {
                self.delivered = resumed.position;
                self.replaying = resumed
                    .replay
                    .map(|replay| Box::new(Replaying::start(Some(replay))));
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(client = %self.client_id, error = %e, "mqtt: cannot read a stored session");
                false
            }
        }
    }

    /// The seq up to which everything was handed to the client and, at
    /// QoS 1, acknowledged.
    pub(super) fn position(&self) -> u64 {
        match self.inflight.values().min() {
            Some(oldest) => self.delivered.min(oldest.saturating_sub(1)),
            None => self.delivered,
        }
    }

    /// Sends one frame from the hub (or a replay) as a PUBLISH.
    pub(super) fn deliver(&mut self, frame: &Frame) {
        self.delivered = self.delivered.max(frame.seq);
        if let Some(topic) = Subscriptions::ended_by(frame) {
            self.subscriptions.forget(&topic);
            return;
        }
        self.publish_frame(frame, false);
    }

    /// After a frame from the hub, the others waiting in the outbox, as
    /// far as the in-flight window allows: they go out in the same socket
    /// write, where one write each made a busy subscriber's write rate its
    /// delivery rate. The window counts only when a subscription is QoS
    /// 1: a QoS 0 subscriber's batch is bounded by the write batch alone.
    /// Returns how many were taken, and whether the outbox had passed half
    /// its bound (see `Receiver::take_into`).
    pub(super) fn deliver_waiting(&mut self) -> (usize, bool) {
        let window = if self.subscriptions.any_qos1() {
            usize::from(self.out_window).saturating_sub(self.inflight.len())
        } else {
            usize::MAX
        };
        let room = window.min(outbox::WRITE_BATCH - 1);
        if room == 0 {
            return (0, false);
        }
        let mut frames = Vec::new();
        let crowded = self.registration.outbox.take_into(&mut frames, room);
        for frame in &frames {
            self.deliver(frame);
        }
        (frames.len(), crowded)
    }

    /// A batch of `frames` was just queued for the socket: a busy
    /// subscriber waits before its next one (see `fanout::pacing`). One
    /// with a QoS 1 subscription does not: its PUBACKs already pace it,
    /// and a gap on top capped it at a window (32) per gap, below the
    /// rate a busy topic can reach.
    pub(super) fn wrote(&mut self, frames: usize, crowded: bool) {
        if frames < BUSY_BATCH || self.subscriptions.any_qos1() {
            self.pace = None;
            return;
        }
        let realtime = &self.state.realtime;
        let pace = self.pace.get_or_insert_with(|| {
            Box::new(Paced {
                busy: realtime.busy(),
                until: None,
            })
        });
        pace.until = pace
            .busy
            .wrote(frames, crowded)
            .map(|gap| Instant::now() + gap);
    }

    /// When a busy subscriber may write next, if it has to wait.
    pub(super) fn paced_until(&self) -> Option<Instant> {
        self.pace.as_ref().and_then(|pace| pace.until)
    }

    /// The session's timer fired at `now`: a wait that is over ends, and a
    /// subscriber that gathered nothing meanwhile is no longer busy.
    pub(super) fn pace_over(&mut self, now: Instant) {
        if self.paced_until().is_some_and(|at| at <= now) {
            if self.registration.outbox.is_empty() {
                self.pace = None;
            } else if let Some(pace) = &mut self.pace {
                pace.until = None;
            }
        }
    }

    /// Sends a topic's retained message: it says nothing of the session's
    /// position, which its (older) seq must not move back.
    pub(super) fn deliver_retained(&mut self, frame: &Frame) {
        self.publish_frame(frame, true);
    }

    fn publish_frame(&mut self, frame: &Frame, retain: bool) {
        let Some((topic, payload, qos)) = self.subscriptions.delivery(frame) else {
            return;
        };
        let pkid = if qos == 1 { self.next_pkid() } else { 0 };
        if qos == 1 {
            let seq = if retain { u64::MAX } else { frame.seq };
            self.inflight.insert(pkid, seq);
        }
        self.send(&Outbound::Publish(OutgoingPublish {
            topic,
            payload,
            qos,
            pkid,
            retain,
        }));
    }

    /// Queues the retained message of each custom topic a SUBSCRIBE
    /// named (the last one published with the retain flag, or the newest
    /// its `history` keeps if that is newer), if the subscriber may see it,
    /// judged as the hub judges a live message.
    async fn queue_retained(&mut self, subscribed: &Subscribed) {
        let viewer = Viewer::of(&self.principal);
        let now = clock::now_rfc3339();
        for (target, subscription) in &subscribed.added {
            let Target::Custom(topic) = target else {
                continue;
            };
            let store = self.state.store.clone();
            let name = subscription.topic.clone();
            let upto = subscribed.upto;
            let found =
                tokio::task::spawn_blocking(move || store.retained_message(&name, upto)).await;
            let message = match found {
                Ok(Ok(Some(message))) => message,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "mqtt: cannot read a retained message");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt: cannot read a retained message");
                    continue;
                }
            };
            let data: Map<String, Value> =
                serde_json::from_slice(&message.data).unwrap_or_default();
            if render::message_reaches(topic, &data, subscription, &viewer, &now) {
                self.retained.push_back(render::render_message(&message));
            }
        }
    }

    /// The next packet id not awaiting a PUBACK (never 0).
    pub(super) fn next_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&self.next_pkid) {
                return self.next_pkid;
            }
        }
    }
}

/// A 5.0 DISCONNECT reason for why the hub closed the connection.
fn disconnect_reason(close: Option<&Close>) -> DisconnectReasonCode {
    match close.map_or(1001, |c| c.code) {
        // The outbox overflowed: reconnect (a persistent session resumes).
        4008 => DisconnectReasonCode::QuotaExceeded,
        4001 => DisconnectReasonCode::NotAuthorized,
        4009 => DisconnectReasonCode::SessionTakenOver,
        _ => DisconnectReasonCode::ServerShuttingDown,
    }
}

impl Session {
    /// The PUBACK of a finished write (after it is durable), and a refusal
    /// told the way the client's version allows.
    pub(super) fn acknowledge(&mut self, done: Done) {
        let error = done.result.err();
        if let Some(pkid) = done.pkid {
            let refused = match (&error, self.version) {
                (Some(e), Version::V5) => {
                    Some((crate::mqtt::publish::reason(e), e.message.as_str(), e.code))
                }
                _ => None,
            };
            self.send(&Outbound::PubAck { pkid, refused });
        }
        let Some(error) = error else {
            return;
        };
        tracing::debug!(client = %self.client_id, code = error.code, "mqtt: write refused");
        let told = self.version == Version::V5 && done.pkid.is_some();
        if !told && self.errors_subscribed {
            let topic = errors_topic(&self.client_id);
            let Ok(payload) = serde_json::to_vec(&error.body()) else {
                return;
            };
            self.send(&Outbound::Publish(OutgoingPublish {
                topic: &topic,
                payload: &payload,
                qos: 0,
                pkid: 0,
                retain: false,
            }));
        }
    }
}
