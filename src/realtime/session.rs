//! The client protocol (docs/realtime.md) for one WebSocket connection: every
//! request gets exactly one reply with its `id`, then (for a subscribe with
//! `since`) the replayed events.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::fanout::replay::{Page, Replay};
use crate::fanout::{ConnId, Frame, Ops};
use crate::rules::Expr;
use crate::services::records::{self, UpdateKind};
use crate::services::topics::{self, NewTopic, Since};
use crate::state::AppState;
use crate::store::StoreError;
use crate::visibility::Viewer;

/// A client request. Unknown fields are ignored so newer clients still work.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub id: Option<Value>,
    pub action: String,
    pub topic: Option<String>,
    pub topics: Option<Vec<String>>,
    #[serde(default)]
    pub ops: Vec<String>,
    pub filter: Option<String>,
    pub since: Option<u64>,
    /// The epoch `since` belongs to, as `welcome` gave it.
    pub epoch: Option<String>,
    pub data: Option<Value>,
    pub token: Option<String>,
    pub history: Option<u32>,
    pub publish: Option<String>,
    pub subscribe: Option<String>,
    pub collection: Option<String>,
    pub record: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub fields: Option<String>,
}

/// A bad request that could not even be parsed still gets an error reply.
pub fn bad_request(id: Option<Value>, message: &str) -> Frame {
    error_frame(id, &ApiError::bad_request(message))
}

pub fn error_frame(id: Option<Value>, error: &ApiError) -> Frame {
    let mut body = json!({
        "type": "error",
        "id": id,
        "code": error.code,
        "message": error.message,
    });
    if let Some(details) = &error.details {
        body["details"] = details.clone();
    }
    Frame::control(&body)
}

pub struct Session {
    pub state: AppState,
    pub conn: ConnId,
    /// Who the connection acts as, as of its last request: refreshed from
    /// `credential` before every request that reads or writes.
    pub principal: Principal,
    /// The token or key the connection authenticated with (`None`:
    /// anonymous).
    credential: Option<String>,
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
        credential: Option<String>,
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
    pub async fn next_replay_page(&mut self) -> Vec<Frame> {
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
            let (principal, _) = self.state.auth.authenticate_until(credential)?;
            self.principal = principal;
        }
        Ok(())
    }

    /// Handles one request; the frames go out in order.
    pub async fn handle(&mut self, request: Request) -> Vec<Frame> {
        let id = request.id.clone();
        match self.dispatch(request).await {
            Ok(frames) => frames,
            Err(error) => vec![error_frame(id, &error)],
        }
    }

    async fn dispatch(&mut self, request: Request) -> ApiResult<Vec<Frame>> {
        let id = request.id.clone();
        let ok = |mut body: Value| {
            body["type"] = json!("ok");
            body["id"] = id.clone().unwrap_or(Value::Null);
            vec![Frame::control(&body)]
        };
        if !matches!(request.action.as_str(), "ping" | "auth" | "unsubscribe") {
            self.refresh_identity()?;
        }
        match request.action.as_str() {
            "ping" => Ok(vec![Frame::control(&json!({"type": "pong", "id": id}))]),
            "subscribe" => self.subscribe(request).await,
            "unsubscribe" => {
                let names =
                    topics::topic_names(request.topic.as_deref(), request.topics.as_deref())?;
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
                Ok(ok(topic_field(&names)))
            }
            "publish" => {
                let name = request
                    .topic
                    .ok_or_else(|| ApiError::bad_request("publish needs a topic"))?;
                let data = request.data.unwrap_or(Value::Null);
                let seq = topics::publish(&self.state, &self.principal, &name, data).await?;
                Ok(ok(json!({"seq": seq})))
            }
            "topics" => Ok(ok(
                json!({"topics": topics::list_topics(&self.state, &self.principal)}),
            )),
            "create_topic" => {
                let name = request
                    .topic
                    .ok_or_else(|| ApiError::bad_request("create_topic needs a topic"))?;
                let new = NewTopic {
                    name,
                    publish: request.publish,
                    subscribe: request.subscribe,
                    history: request.history.unwrap_or(0),
                };
                let topic = topics::create_topic(&self.state, &self.principal, new).await?;
                Ok(ok(json!({"topic": topic.def.name})))
            }
            "delete_topic" => {
                let name = request
                    .topic
                    .ok_or_else(|| ApiError::bad_request("delete_topic needs a topic"))?;
                topics::delete_topic(&self.state, &self.principal, &name).await?;
                Ok(ok(json!({"topic": name})))
            }
            "auth" => {
                let token = request
                    .token
                    .ok_or_else(|| ApiError::bad_request("auth needs a token"))?;
                let (principal, expires_ms) = self.state.auth.authenticate_until(&token)?;
                let sign_in = self.state.auth.sign_in_of(&token);
                self.principal = principal.clone();
                self.credential = Some(token);
                self.expires_ms = expires_ms;
                self.state.realtime.set_identity(self.conn, principal);
                let realtime = &self.state.realtime;
                realtime.set_sign_in(self.conn, sign_in, &self.state.auth);
                let user = self.principal.user().map(|u| u.public_json());
                Ok(ok(json!({"user": user})))
            }
            "list" | "get" | "create" | "update" | "delete" => self.records(request).await,
            other => Err(ApiError::bad_request(format!("unknown action {other:?}"))),
        }
    }

    async fn subscribe(&mut self, request: Request) -> ApiResult<Vec<Frame>> {
        let names = topics::topic_names(request.topic.as_deref(), request.topics.as_deref())?;
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
            epoch: request.epoch.clone(),
        });
        let current = self.state.realtime.released_seq().await;
        // Everything is checked before anything is subscribed.
        let mut subscribed = Vec::with_capacity(names.len());
        for name in &names {
            let target = topics::resolve_for_subscribe(&self.state, &self.principal, name)?;
            if let Some(since) = &since {
                topics::check_since(&self.state, &target, name, since, current)?;
            }
            let subscription = target.subscription(name, ops, filter.clone());
            subscribed.push((target, subscription));
        }
        let subscriptions = subscribed.iter().map(|(_, s)| s.clone()).collect();
        let upto = self
            .state
            .realtime
            .subscribe(self.conn, subscriptions)
            .await;
        // A topic already subscribed gets its new ops and filter but no
        // replay: what it missed was delivered live, and a replay would
        // send it twice.
        subscribed.retain(|(_, s)| !self.topics.contains_key(&s.topic));
        self.topics
            .extend(names.iter().map(|name| (name.clone(), cost)));
        let mut reply = topic_field(&names);
        reply["type"] = json!("ok");
        reply["id"] = request.id.clone().unwrap_or(Value::Null);
        reply["seq"] = json!(upto);
        reply["epoch"] = json!(self.state.store.epoch());
        let frames = vec![Frame::control(&reply)];
        if let Some(since) = since {
            let replay = Replay::new(subscribed, Viewer::of(&self.principal), since.seq, upto);
            self.replays.push_back(replay);
        }
        Ok(frames)
    }

    /// list/get/create/update/delete: the records service REST calls too,
    /// so the access checks and what a viewer sees are the same code.
    async fn records(&mut self, request: Request) -> ApiResult<Vec<Frame>> {
        let id = request.id.clone().unwrap_or(Value::Null);
        let (state, principal) = (&self.state, &self.principal);
        let collection = request
            .collection
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("name the collection"))?;
        let record_id = || {
            request
                .record
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("name the record"))
        };
        let body = match request.action.as_str() {
            "list" => {
                let params = records::ListParams {
                    filter: request.filter.clone(),
                    sort: request.sort.clone(),
                    limit: request.limit,
                    cursor: request.cursor.clone(),
                    fields: request.fields.clone(),
                };
                records::list(state, principal, collection, params).await?
            }
            "get" => {
                let record = records::get(state, principal, collection, record_id()?).await?;
                json!({"record": record})
            }
            "create" => {
                let data = request.data.clone().unwrap_or(json!({}));
                if !data.is_object() {
                    return Err(ApiError::bad_request("data must be an object"));
                }
                let record =
                    records::create(state, principal, collection, vec![data], false).await?;
                json!({"record": record})
            }
            "update" => {
                let data = request.data.clone().unwrap_or(json!({}));
                let record = records::update(
                    state,
                    principal,
                    collection,
                    record_id()?,
                    None,
                    data,
                    UpdateKind::Merge,
                )
                .await?;
                json!({"record": record})
            }
            _ => {
                records::delete(state, principal, collection, record_id()?, None).await?;
                json!({})
            }
        };
        let mut body = body;
        body["type"] = json!("ok");
        body["id"] = id;
        Ok(vec![Frame::control(&body)])
    }
}

fn topic_field(names: &[String]) -> Value {
    if let [one] = names {
        json!({"topic": one})
    } else {
        json!({"topics": names})
    }
}

/// A filter given on connect (SSE) or subscribe.
pub fn parse_filter(text: Option<&str>) -> ApiResult<Option<Arc<Expr>>> {
    Ok(records::parse_filter(text)?.map(Arc::new))
}
