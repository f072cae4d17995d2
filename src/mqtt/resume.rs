//! Persistent sessions: a client that connects with clean session off
//! (3.1.1) or a session expiry above 0 (5.0) has its filters and its
//! position in the change log saved in the store
//! ([`crate::store::mqtt_sessions`]). When it comes back, even after a
//! crash of the server, its filters are subscribed again and what it
//! missed is replayed from the change log with the machinery of a
//! WebSocket `since` ([`Replay`]), then delivery goes on live.
//!
//! The position is the last seq up to which every delivery was written
//! and, at QoS 1, acknowledged. It is saved durably with every SUBSCRIBE
//! and UNSUBSCRIBE, and otherwise at most once per [`SAVE_EVERY`] and when
//! the connection ends, without a flush of its own: after a crash a client
//! may get again what came since the last flush, never less.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::{Filter, Hello, Version};
use super::subscriptions::{Props, Subscriptions};
use crate::auth::Principal;
use crate::clock;
use crate::fanout::replay::{Page, Replay};
use crate::fanout::{ConnId, Frame};
use crate::services::topics::{self, Since};
use crate::state::AppState;
use crate::store::mqtt_sessions::MqttSession;
use crate::store::{Store, StoreError};
use crate::visibility::Viewer;

/// How often a moving position is saved, at most.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// What this connection keeps of its session.
pub struct Keeper {
    /// `None`: a clean session, nothing kept.
    expiry: Option<Option<u32>>,
    client_id: String,
    principal: Option<String>,
    epoch: String,
    /// The position last saved, and when.
    saved: u64,
    saved_at: Instant,
}

/// A session taken up: the replay of what it missed.
pub struct Resumed {
    pub replay: Option<Replay>,
    /// Where the client's position starts.
    pub position: u64,
}

impl Keeper {
    /// Whether the CONNECT asks for a persistent session, and for how long
    /// it outlives the connection (`None` inside: until cleaned).
    pub fn new(state: &AppState, hello: &Hello, version: Version, principal: &Principal) -> Self {
        let expiry = match version {
            Version::V311 => (!hello.clean_start).then_some(None),
            Version::V5 => match hello.session_expiry {
                Some(0) | None => None,
                Some(u32::MAX) => Some(None),
                Some(seconds) => Some(Some(seconds)),
            },
        };
        Keeper {
            expiry,
            client_id: hello.client_id.clone(),
            principal: principal.id(),
            epoch: state.store.epoch(),
            saved: 0,
            saved_at: Instant::now(),
        }
    }

    pub fn persistent(&self) -> bool {
        self.expiry.is_some() && !self.client_id.is_empty()
    }

    /// Takes up the stored session if there is one for this client id,
    /// principal and change log, still within its expiry; a clean start
    /// or a session that is not persistent forgets it. Subscribes its
    /// filters again (those the rules still allow) and answers the replay
    /// of what it missed; `None` when there was no session to take up.
    pub async fn take_up(
        &mut self,
        state: &AppState,
        hello: &Hello,
        principal: &Principal,
        conn: ConnId,
        subscriptions: &mut Subscriptions,
    ) -> Result<Option<Resumed>, StoreError> {
        let store = state.store.clone();
        let client_id = self.client_id.clone();
        if client_id.is_empty() {
            return Ok(None);
        }
        let found = blocking(&store, move |s| s.mqtt_session(&client_id)).await?;
        let usable = found.filter(|session| {
            !hello.clean_start
                && self.persistent()
                && session.principal == self.principal
                && session.epoch == self.epoch
                && !session.expired(clock::now_ms())
        });
        let Some(session) = usable else {
            let client_id = self.client_id.clone();
            blocking(&store, move |s| s.delete_mqtt_session(&client_id)).await?;
            return Ok(None);
        };
        let requested: Vec<(Filter, Props)> = session
            .filters
            .iter()
            .map(|f| {
                let filter = Filter {
                    path: f.path.clone(),
                    qos: f.qos,
                };
                let props = Props {
                    filter: f.filter.clone(),
                    ops: f.ops.clone(),
                };
                (filter, props)
            })
            .collect();
        let subscribed = subscriptions
            .subscribe(state, principal, conn, &requested)
            .await;
        let since = Since {
            seq: session.seq,
            epoch: Some(session.epoch.clone()),
        };
        // A topic whose history no longer reaches back (the log was
        // trimmed past the position, a custom topic keeps none) goes on
        // live only.
        let replayed: Vec<_> = subscribed
            .added
            .into_iter()
            .filter(|(target, s)| {
                topics::check_since(state, target, &s.topic, &since, subscribed.upto).is_ok()
            })
            .collect();
        let replay = (!replayed.is_empty()).then(|| {
            Replay::new(
                replayed,
                Viewer::of(principal),
                session.seq,
                subscribed.upto,
            )
        });
        self.saved = session.seq;
        Ok(Some(Resumed {
            replay,
            position: session.seq,
        }))
    }

    /// Saves the filters and position (durably: after a SUBSCRIBE or
    /// UNSUBSCRIBE, and at the end of the connection).
    pub async fn save(
        &mut self,
        state: &AppState,
        subscriptions: &Subscriptions,
        position: u64,
        durable: bool,
    ) {
        let Some(expiry_s) = self.expiry else {
            return;
        };
        if self.client_id.is_empty() {
            return;
        }
        let session = MqttSession {
            principal: self.principal.clone(),
            filters: subscriptions.stored(),
            seq: position,
            epoch: self.epoch.clone(),
            saved_ms: clock::now_ms(),
            expiry_s,
        };
        let client_id = self.client_id.clone();
        let saved = blocking(&state.store, move |s| {
            s.put_mqtt_session(&client_id, &session, durable)
        })
        .await;
        // A failed save is tried again after SAVE_EVERY, not at once.
        self.saved_at = Instant::now();
        match saved {
            Ok(()) => self.saved = position,
            Err(e) => {
                tracing::warn!(client = %self.client_id, error = %e, "mqtt: cannot save a session")
            }
        }
    }

    /// When the position should next be saved, if it moved.
    pub fn next_save(&self, position: u64) -> Option<Instant> {
        (self.expiry.is_some() && position != self.saved).then(|| self.saved_at + SAVE_EVERY)
    }
}

/// Store work off the async workers.
async fn blocking<T: Send + 'static>(
    store: &Store,
    work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || work(&store))
        .await
        .map_err(|e| StoreError::Corrupt(format!("a store task failed: {e}")))?
}

/// A replay being sent: pages read off the async workers, their frames
/// handed out one at a time as the in-flight window allows.
#[derive(Default)]
pub struct Replaying {
    replay: Option<Replay>,
    /// The page being read. Kept here so that a `select!` that drops the
    /// waiting future loses nothing.
    reading: Option<JoinHandle<(Replay, Result<Page, StoreError>)>>,
    frames: VecDeque<Frame>,
}

impl Replaying {
    pub fn start(replay: Option<Replay>) -> Replaying {
        Replaying {
            replay,
            ..Replaying::default()
        }
    }

    /// Whether frames are still to come from the log (live ones wait).
    pub fn active(&self) -> bool {
        self.replay.is_some() || self.reading.is_some() || !self.frames.is_empty()
    }

    /// Whether a page must be read before the next frame.
    pub fn needs_page(&self) -> bool {
        self.frames.is_empty() && (self.replay.is_some() || self.reading.is_some())
    }

    pub fn next_frame(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Reads the next page; answers the topics it ended. Cancel-safe.
    pub async fn read_page(&mut self, store: &Store) -> Result<Vec<String>, StoreError> {
        let reading = match &mut self.reading {
            Some(reading) => reading,
            None => {
                let Some(mut replay) = self.replay.take() else {
                    return Ok(Vec::new());
                };
                let store = store.clone();
                self.reading.insert(tokio::task::spawn_blocking(move || {
                    let page = replay.next_page(&store);
                    (replay, page)
                }))
            }
        };
        let joined = reading.await;
        self.reading = None;
        let (replay, page) =
            joined.map_err(|e| StoreError::Corrupt(format!("a replay page failed: {e}")))?;
        let page = page?;
        if !replay.done() {
            self.replay = Some(replay);
        }
        self.frames.extend(page.frames);
        Ok(page.ended)
    }
}
