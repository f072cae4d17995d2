//! The client protocol (docs/realtime.md) for one WebSocket connection: every
//! request gets exactly one reply with its `id`, then (for a subscribe with
//! `since`) the replayed events.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::task::JoinHandle;

use crate::auth::{Checked, Principal};
use crate::error::{ApiError, ApiResult};
use crate::fanout::backfill;
use crate::fanout::replay::{Page, Replay};
use crate::fanout::{ConnId, Frame, Ops};
use crate::protocol::client::{Create, Publish, RecordRef, Subscribe, Update};
use crate::protocol::server::{ErrorReply, PresenceMember, Reply, ReplyBody, TopicNames};
use crate::protocol::{ClientMessage, Request, ServerMessage};
use crate::rules::Expr;
use crate::services::presence;
use crate::services::records::{self, UpdateKind};
use crate::services::topics::{self, NewTopic, Since};
use crate::state::AppState;
use crate::store::StoreError;
use crate::visibility::Viewer;

/// A request that could not even be parsed still gets an error reply.
pub fn bad_request(id: Option<&Value>, message: &str) -> Frame {
    error_frame(id, &ApiError::bad_request(message))
}

pub fn error_frame(id: Option<&Value>, error: &ApiError) -> Frame {
    Frame::control(&ServerMessage::Error(ErrorReply::new(id, error)))
}

/// The `ok` reply to the request `id`.
fn ok(id: Option<&Value>, body: ReplyBody) -> Vec<Frame> {
    vec![Frame::control(&ServerMessage::Ok(Reply { id, body }))]
}

/// The reply to a request whose write is under way.
pub type PendingReply = Pin<Box<dyn Future<Output = Vec<Frame>> + Send>>;

/// What [`Session::start`] made of a request.
pub enum Started {
    /// Its reply, now.
    Ready(Vec<Frame>),
    /// Its reply, once the writer answers.
    Queued(PendingReply),
    /// A request that needs the session to itself: handle it once every
    /// earlier reply is out.
    Turn(Request),
}

pub struct Session {
    pub state: AppState,
    pub conn: ConnId,
    /// Who the connection acts as, as of its last request: refreshed from
    /// `credential` before every request that reads or writes.
    pub principal: Principal,
    /// The token or key the connection authenticated with, its signature
    /// checked once (`None`: anonymous).
    credential: Option<Checked>,
    /// When the current access token expires (ms since the epoch).
    pub expires_ms: Option<i64>,
    /// Subscribed topics, with the cost of each one's filter.
    topics: HashMap<String, usize>,
    /// Replays still to send, oldest request first. Live events wait in the
    /// outbox until they are done, so each topic stays in seq order.
    replays: VecDeque<Replay>,
    /// The page being read, off the async workers. Kept here so that a
    /// `select!` that drops the waiting future loses nothing.
    reading: Option<JoinHandle<(Replay, Result<Page, StoreError>)>>,
}

impl Session {
    pub fn new(
        state: AppState,
        conn: ConnId,
        principal: Principal,
        credential: Option<Checked>,
        expires_ms: Option<i64>,
    ) -> Session {
        Session {
            state,
            conn,
            principal,
            credential,
            expires_ms,
            topics: HashMap::new(),
            replays: VecDeque::new(),
            reading: None,
        }
    }

    /// Whether replayed events are still to be sent.
    pub fn replaying(&self) -> bool {
        self.reading.is_some() || !self.replays.is_empty()
    }

    /// The next page of the oldest replay. Cancel-safe.
    ///
    /// `select!` builds this future on every turn of a connection's loop,
    /// replaying or not, and keeps it in the connection's task: the reading
    /// is boxed, allocated only when a replay is really read.
    pub async fn next_replay_page(&mut self) -> Vec<Frame> {
        Box::pin(self.read_replay_page()).await
    }

    async fn read_replay_page(&mut self) -> Vec<Frame> {
        let reading = match &mut self.reading {
            Some(reading) => reading,
            None => {
                let Some(mut replay) = self.replays.pop_front() else {
                    return Vec::new();
                };
                let store = self.state.store.clone();
                self.reading.insert(tokio::task::spawn_blocking(move || {
                    let page = replay.next_page(&store);
                    (replay, page)
                }))
            }
        };
        let joined = reading.await;
        self.reading = None;
        let (replay, page) = match joined {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "a replay page failed");
                return vec![error_frame(None, &ApiError::internal(e))];
            }
        };
        let page = match page {
            Ok(page) => page,
            Err(e) => return vec![error_frame(None, &ApiError::from(e))],
        };
        if !replay.done() {
            self.replays.push_front(replay);
        }
        for topic in page.ended {
            self.state
                .realtime
                .unsubscribe(self.conn, topic.clone())
                .await;
            self.topics.remove(&topic);
        }
        page.frames
    }

    /// The identity as it is now, as REST would see it for the same
    /// credential: a user moved to another tenant, or given other groups or
    /// roles, acts so from the next request; a disabled user, a revoked key
    /// or a signed-out session gets `unauthorized`.
    fn refresh_identity(&mut self) -> ApiResult<()> {
        if let Some(credential) = &self.credential {
            let (principal, _) = self.state.auth.authenticate_checked(credential)?;
            // An unchanged user keeps the copy the hub shares: replacing it
            // would keep two copies of the same user per connection.
            let unchanged = matches!(
                (&self.principal, &principal),
                (Principal::User(kept), Principal::User(fresh)) if kept == fresh
            );
            if !unchanged {
                self.principal = principal;
            }
        }
        Ok(())
    }

    /// Starts one request. A `publish` is checked and queued for the
    /// writer now, and its reply comes with the writer's answer, so the
    /// connection may read its next request meanwhile; any other request
    /// is handed back to be [`handle`](Self::handle)d once the replies
    /// before it are out.
    pub async fn start(&mut self, request: Request) -> Started {
        let Request { id, message } = request;
        let ClientMessage::Publish(Publish { topic, data }) = message else {
            return Started::Turn(Request { id, message });
        };
        if let Err(error) = self.refresh_identity() {
            return Started::Ready(vec![error_frame(id.as_ref(), &error)]);
        }
        match topics::enqueue_publish(&self.state, &self.principal, &topic, data).await {
            Ok(answer) => Started::Queued(published(id, answer)),
            Err(error) => Started::Ready(vec![error_frame(id.as_ref(), &error)]),
        }
    }

    /// Handles one request; the frames go out in order.
    pub async fn handle(&mut self, request: Request) -> Vec<Frame> {
        let Request { id, message } = request;
        let id = id.as_ref();
        match self.dispatch(id, message).await {
            Ok(frames) => frames,
            Err(error) => vec![error_frame(id, &error)],
        }
    }

    async fn dispatch(
        &mut self,
        id: Option<&Value>,
        message: ClientMessage,
    ) -> ApiResult<Vec<Frame>> {
        if message.acts_as_caller() {
            self.refresh_identity()?;
        }
        let (state, principal) = (&self.state, &self.principal);
        match message {
            ClientMessage::Ping {} => Ok(vec![Frame::control(&ServerMessage::Pong { id })]),
            ClientMessage::Subscribe(subscribe) => self.subscribe(id, subscribe).await,
            ClientMessage::Unsubscribe(names) => {
                let names = topics::topic_names(names.topic.as_deref(), names.topics.as_deref())?;
                for name in &names {
                    if self
                        .state
                        .realtime
                        .unsubscribe(self.conn, name.clone())
                        .await
                    {
                        self.topics.remove(name);
                    }
                }
                let topics = TopicNames::of(&names);
                Ok(ok(id, ReplyBody::Unsubscribed { topics }))
            }
            ClientMessage::Publish(Publish { topic, data }) => {
                let answer = topics::enqueue_publish(state, principal, &topic, data).await?;
                Ok(published(id.cloned(), answer).await)
            }
            ClientMessage::Topics {} => {
                let topics = topics::list_topics(state, principal);
                Ok(ok(id, ReplyBody::Topics { topics: &topics }))
            }
            ClientMessage::CreateTopic(new) => {
                let new = NewTopic {
                    name: new.topic,
                    publish: new.publish,
                    subscribe: new.subscribe,
                    history: new.history,
                    presence: new.presence,
                };
                let topic = topics::create_topic(state, principal, new).await?;
                let topic = &topic.def.name;
                Ok(ok(id, ReplyBody::Topic { topic }))
            }
            ClientMessage::DeleteTopic { topic } => {
                topics::delete_topic(state, principal, &topic).await?;
                Ok(ok(id, ReplyBody::Topic { topic: &topic }))
            }
            ClientMessage::Presence { topic } => {
                let snapshot = presence::presence(state, principal, &topic).await?;
                let members: Option<Vec<PresenceMember>> = snapshot
                    .members
                    .as_ref()
                    .map(|list| list.iter().map(|(conn, m)| m.wire(*conn)).collect());
                let presence = members.as_deref();
                let count = snapshot.count;
                Ok(ok(id, ReplyBody::Presence { presence, count }))
            }
            ClientMessage::Auth { token } => {
                let checked = self.state.auth.check(&token)?;
                let (principal, expires_ms) = self.state.auth.authenticate_checked(&checked)?;
                let sign_in = self.state.auth.sign_in_of(&token);
                self.principal = principal.clone();
                self.credential = Some(checked);
                self.expires_ms = expires_ms;
                self.state.realtime.set_identity(self.conn, principal);
                let realtime = &self.state.realtime;
                realtime.set_sign_in(self.conn, sign_in, &self.state.auth);
                let user = self.principal.user().map(|u| u.public_json());
                Ok(ok(
                    id,
                    ReplyBody::Auth {
                        user: user.as_ref(),
                    },
                ))
            }
            // The record actions call the records service REST calls too,
            // so the access checks and what a viewer sees are the same code.
            ClientMessage::List(list) => {
                let params = records::ListParams {
                    filter: list.filter,
                    sort: list.sort,
                    limit: list.limit,
                    cursor: list.cursor,
                    fields: list.fields,
                    total: None,
                };
                let page = records::list(state, principal, &list.collection, params).await?;
                Ok(ok(id, ReplyBody::Page(&page)))
            }
            ClientMessage::Get(RecordRef { collection, record }) => {
                let record = records::get(state, principal, &collection, &record).await?;
                Ok(ok(id, ReplyBody::Record { record: &record }))
            }
            ClientMessage::Create(Create { collection, data }) => {
                let data = Value::Object(data.unwrap_or_default());
                let record =
                    records::create(state, principal, &collection, vec![data], false).await?;
                Ok(ok(id, ReplyBody::Record { record: &record }))
            }
            ClientMessage::Update(Update {
                collection,
                record,
                data,
            }) => {
                let patch = data.unwrap_or_else(|| Value::Object(Map::new()));
                let kind = UpdateKind::Merge;
                let record =
                    records::update(state, principal, &collection, &record, None, patch, kind)
                        .await?;
                Ok(ok(id, ReplyBody::Record { record: &record }))
            }
            ClientMessage::Delete(RecordRef { collection, record }) => {
                records::delete(state, principal, &collection, &record, None).await?;
                Ok(ok(id, ReplyBody::Done {}))
            }
        }
    }

    async fn subscribe(&mut self, id: Option<&Value>, request: Subscribe) -> ApiResult<Vec<Frame>> {
        let names = topics::topic_names(
            request.names.topic.as_deref(),
            request.names.topics.as_deref(),
        )?;
        let ops = Ops::parse(&request.ops).map_err(ApiError::bad_request)?;
        let filter = parse_filter(request.filter.as_deref())?;
        let cost = filter.as_ref().map_or(0, |f| f.cost());
        let kept: usize = self
            .topics
            .iter()
            .filter(|(name, _)| !names.contains(name))
            .map(|(_, cost)| cost)
            .sum();
        topics::check_filter_budget(kept + cost * names.len())?;
        let max = self.state.live.get().max_subscriptions;
        let new = names
            .iter()
            .filter(|n| !self.topics.contains_key(*n))
            .count();
        if self.topics.len() + new > max {
            return Err(ApiError::too_many_subscriptions(max));
        }
        let since = request.since.map(|seq| Since {
            seq,
            epoch: request.epoch,
        });
        let current = self.state.realtime.released_seq().await;
        // Everything is checked before anything is subscribed.
        let mut subscribed = Vec::with_capacity(names.len());
        for name in &names {
            let target = topics::resolve_for_subscribe(&self.state, &self.principal, name)?;
            if let Some(since) = &since {
                topics::check_since(&self.state, &target, name, since, current)?;
            }
            let mut subscription = target.subscription(name, ops, filter.clone());
            subscription.aggregate = topics::bucket_spec(
                &target,
                request.aggregate.as_ref(),
                &Viewer::of(&self.principal),
            )?;
            subscribed.push((target, subscription));
        }
        let subscriptions = subscribed.iter().map(|(_, s)| s.clone()).collect();
        let upto = self
            .state
            .realtime
            .subscribe(self.conn, subscriptions)
            .await;
        // Bucket subscriptions start from the stored readings of their
        // open buckets, even when made again (the hub starts them over).
        backfill::start(
            &self.state.realtime,
            &self.state.store,
            self.conn,
            &Viewer::of(&self.principal),
            &subscribed,
            since.as_ref().map(|s| s.seq),
            upto,
        );
        // A topic already subscribed gets its new ops and filter but no
        // replay: what it missed was delivered live, and a replay would
        // send it twice.
        subscribed.retain(|(_, s)| !self.topics.contains_key(&s.topic));
        self.topics
            .extend(names.iter().map(|name| (name.clone(), cost)));
        let epoch = self.state.store.epoch();
        let reply = ReplyBody::Subscribed {
            topics: TopicNames::of(&names),
            seq: upto,
            epoch: &epoch,
        };
        let frames = ok(id, reply);
        if let Some(since) = since {
            let replay = Replay::new(subscribed, Viewer::of(&self.principal), since.seq, upto);
            self.replays.push_back(replay);
        }
        Ok(frames)
    }
}

/// The reply to a publish, once the writer has answered.
fn published(
    id: Option<Value>,
    answer: impl Future<Output = ApiResult<u64>> + Send + 'static,
) -> PendingReply {
    Box::pin(async move {
        match answer.await {
            Ok(seq) => ok(id.as_ref(), ReplyBody::Published { seq }),
            Err(error) => vec![error_frame(id.as_ref(), &error)],
        }
    })
}

/// A filter given on connect (SSE) or subscribe.
pub fn parse_filter(text: Option<&str>) -> ApiResult<Option<Arc<Expr>>> {
    Ok(records::parse_filter(text)?.map(Arc::new))
}
