//! `GET /api/realtime/sse`: the same events over Server-Sent Events, for
//! clients that cannot hold a WebSocket. Topics, `ops` and `filter` come in
//! the query; `Last-Event-ID` (or `?since=`) resumes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{self, Stream};
use tokio::time::{Instant, Sleep};

use super::{sse_event, ws};
use crate::auth::Principal;
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fanout::pacing::Pace;
use crate::fanout::replay::Replay;
use crate::fanout::{backfill, outbox};
use crate::fanout::{ConnHandle, ConnId, Frame, Ops, Realtime, Transport};
use crate::limits::Slot;
use crate::protocol::server::{Reply, ReplyBody, TopicNames};
use crate::protocol::ServerMessage;
use crate::services::credentials::client_ip;
use crate::services::topics::{self, Since};
use crate::state::AppState;
use crate::store::Store;
use crate::visibility::Viewer;

struct Params {
    topics: Vec<String>,
    ops: Vec<String>,
    filter: Option<String>,
    token: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
    aggregate: Option<serde_json::Value>,
}

fn parse_params(raw: Option<&str>) -> ApiResult<Params> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("query: {e}")))?;
    let mut params = Params {
        topics: Vec::new(),
        ops: Vec::new(),
        filter: None,
        token: None,
        since: None,
        epoch: None,
        aggregate: None,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "topic" => params.topics.extend(value.split(',').map(str::to_owned)),
            "ops" => params.ops.extend(value.split(',').map(str::to_owned)),
            "filter" => params.filter = Some(value),
            "token" => params.token = Some(value),
            "epoch" => params.epoch = Some(value),
            "aggregate" => {
                params.aggregate =
                    Some(serde_json::from_str(&value).map_err(|e| {
                        ApiError::bad_request(format!("aggregate must be JSON: {e}"))
                    })?)
            }
            "since" => {
                params.since = Some(
                    value
                        .parse()
                        .map_err(|_| ApiError::bad_request("since must be a seq"))?,
                )
            }
            _ => {}
        }
    }
    Ok(params)
}

/// Ends the connection in the hub when the stream is dropped (the client
/// went away, or the server stopped).
struct Registration {
    realtime: Realtime,
    conn: ConnId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.realtime.disconnect(self.conn);
    }
}

struct SseState {
    _registration: Registration,
    _slot: Slot,
    store: Store,
    /// The replay still to send, read a page at a time; live events wait
    /// in the outbox meanwhile.
    replay: Option<Replay>,
    /// The subscription's `ok`, sent before anything else.
    opening: Option<Bytes>,
    /// The rest of the page read last.
    replayed: VecDeque<Frame>,
    outbox: outbox::Receiver,
    /// A busy stream lets its next batch gather, as a WebSocket does (see
    /// `fanout::pacing`): without it, at 1000 streams × 1000 events/s
    /// every event was a write of its own.
    pace: Pace,
    closed: outbox::CloseSignal,
    heartbeat: tokio::time::Interval,
    /// When the token expires. Made once: a timer made afresh for each
    /// batch is registered and dropped tens of times a second.
    expiry: Option<Pin<Box<Sleep>>>,
    done: bool,
}

pub async fn sse(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = parse_params(raw.as_deref())?;
    let token = ws::credential(
        &state.auth,
        &headers,
        params.token.as_deref(),
        std::iter::empty(),
    )?;
    let (principal, expires_ms) = match &token {
        Some(token) => state.auth.authenticate_until(token)?,
        None => (Principal::Anonymous, None),
    };
    let sign_in = token.as_deref().and_then(|t| state.auth.sign_in_of(t));
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let since = last_event_id.or(params.since).map(|seq| Since {
        seq,
        epoch: params.epoch.clone(),
    });
    let names = topics::topic_names(None, Some(&params.topics))?;
    let ops = Ops::parse(&params.ops).map_err(ApiError::bad_request)?;
    let filter = super::session::parse_filter(params.filter.as_deref())?;
    topics::check_filter_budget(filter.as_ref().map_or(0, |f| f.cost()) * names.len())?;
    let settings = state.live.get();
    if names.len() > settings.max_subscriptions {
        return Err(ApiError::too_many_subscriptions(settings.max_subscriptions));
    }
    let current = state.realtime.released_seq().await;
    let mut subscribed = Vec::with_capacity(names.len());
    for name in &names {
        let target = topics::resolve_for_subscribe(&state, &principal, name)?;
        if let Some(since) = &since {
            topics::check_since(&state, &target, name, since, current)?;
        }
        let mut subscription = target.subscription(name, ops, filter.clone());
        subscription.aggregate =
            topics::bucket_spec(&target, params.aggregate.as_ref(), &Viewer::of(&principal))?;
        subscribed.push((target, subscription));
    }
    let slot = state.realtime.connections.acquire(
        client_ip(&state, peer, &headers),
        settings.max_connections,
        settings.max_connections_per_ip,
    )?;

    let conn = state.realtime.next_conn_id();
    let (outbox_tx, outbox) = state.realtime.outbox();
    let closed = outbox.close_signal();
    state.realtime.connect(ConnHandle {
        id: conn,
        transport: Transport::Sse,
        client_id: None,
        principal: principal.clone(),
        sign_in: sign_in.clone(),
        outbox: outbox_tx,
    });
    state
        .realtime
        .close_if_signed_out(&state.auth, sign_in.as_deref());
    let registration = Registration {
        realtime: state.realtime.clone(),
        conn,
    };
    // Every topic at one position, replayed in one pass in seq order: one
    // `Last-Event-ID` resumes them all.
    let subscriptions = subscribed.iter().map(|(_, s)| s.clone()).collect();
    let upto = state.realtime.subscribe(conn, subscriptions).await;
    backfill::start(
        &state.realtime,
        &state.store,
        conn,
        &Viewer::of(&principal),
        &subscribed,
        since.as_ref().map(|s| s.seq),
        upto,
    );
    let opening = opening(&state, &names, upto, since.as_ref());
    let replay =
        since.map(|since| Replay::new(subscribed, Viewer::of(&principal), since.seq, upto));
    let heartbeat = settings.heartbeat;
    let stream = SseState {
        opening: Some(opening),
        _registration: registration,
        _slot: slot,
        store: state.store.clone(),
        replay,
        replayed: VecDeque::new(),
        outbox,
        pace: state.realtime.pace(),
        closed,
        heartbeat: tokio::time::interval_at(Instant::now() + heartbeat, heartbeat),
        expiry: expires_ms.map(|at| {
            let left = Duration::from_millis((at - clock::now_ms()).max(0) as u64);
            Box::pin(tokio::time::sleep_until(Instant::now() + left))
        }),
        done: false,
    };
    let mut response = Response::new(Body::from_stream(events(stream)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The first event: the `ok` a WebSocket subscribe gets (the topics, where
/// live delivery starts, the log's epoch), with an `id` where a reconnect
/// resumes: the `since` being replayed, else where live delivery starts.
/// Without it a stream cut before its first event reconnected with no
/// `Last-Event-ID` and lost what happened while it was away.
fn opening(state: &AppState, names: &[String], upto: u64, since: Option<&Since>) -> Bytes {
    let epoch = state.store.epoch();
    let reply = ServerMessage::Ok(Reply {
        id: None,
        body: ReplyBody::Subscribed {
            topics: TopicNames::of(names),
            seq: upto,
            epoch: &epoch,
        },
    });
    let resume_from = since.map_or(upto, |since| since.seq);
    let mut out = Vec::new();
    sse_event::put(&mut out, reply.kind(), &reply.to_text(), Some(resume_from));
    out.into()
}

fn to_event(frame: &Frame) -> Bytes {
    sse_event::chunk(std::slice::from_ref(frame))
}

/// An error that ends the stream.
fn failed(error: &ApiError) -> Bytes {
    to_event(&super::session::error_frame(None, error))
}

/// The body: each item one chunk, one socket write.
fn events(state: SseState) -> impl Stream<Item = Result<Bytes, Infallible>> {
    stream::unfold(state, |mut s| async move {
        if s.done {
            return None;
        }
        if let Some(opening) = s.opening.take() {
            return Some((Ok(opening), s));
        }
        // Boxed: the replay's state would otherwise stay in every idle
        // stream's state long after the replay is over.
        if s.replay.is_some() || !s.replayed.is_empty() {
            if let Some(event) = Box::pin(next_replayed(&mut s)).await {
                return Some((Ok(event), s));
            }
        }
        loop {
            let event = tokio::select! {
                biased;
                close = s.closed.closed() => {
                    s.done = true;
                    match close.and_then(|c| c.last) {
                        Some(last) => to_event(&last),
                        None => return None,
                    }
                }
                () = expired(&mut s.expiry) => {
                    s.done = true;
                    let frame = Frame::control(&ServerMessage::Closing {
                        code: "token_expired",
                        message: "the access token expired; reconnect with a fresh one",
                    });
                    to_event(&frame)
                }
                () = s.pace.ready(), if s.pace.waiting() => {
                    if s.outbox.is_empty() {
                        s.pace.went_quiet();
                    }
                    continue;
                }
                frame = s.outbox.recv(), if !s.pace.waiting() => match frame {
                    Some(first) => {
                        let mut frames = vec![first];
                        let crowded = s.outbox.take_into(&mut frames, outbox::WRITE_BATCH);
                        s.pace.wrote(frames.len(), crowded);
                        sse_event::chunk(&frames)
                    }
                    None => return None,
                },
                _ = s.heartbeat.tick() => {
                    let ts = clock::now_rfc3339();
                    let beat = ServerMessage::Heartbeat { ts: &ts };
                    let mut out = Vec::new();
                    sse_event::put(&mut out, beat.kind(), &beat.to_text(), None);
                    Bytes::from(out)
                }
            };
            return Some((Ok(event), s));
        }
    })
}

/// The rest of the replay's page read last, as one chunk, reading the
/// replay a page at a time; `None` once it is over (live events follow).
async fn next_replayed(s: &mut SseState) -> Option<Bytes> {
    loop {
        if !s.replayed.is_empty() {
            let page = sse_event::chunk(s.replayed.make_contiguous());
            s.replayed.clear();
            return Some(page);
        }
        let mut replay = s.replay.take()?;
        let store = s.store.clone();
        let read = tokio::task::spawn_blocking(move || {
            let page = replay.next_page(&store);
            (replay, page)
        })
        .await;
        let (replay, page) = match read {
            Ok((replay, Ok(page))) => (replay, page),
            Ok((_, Err(e))) => return Some(failed(&ApiError::from(e))),
            Err(e) => return Some(failed(&ApiError::internal(e))),
        };
        if !replay.done() {
            s.replay = Some(replay);
        }
        for topic in page.ended {
            let registration = &s._registration;
            registration
                .realtime
                .unsubscribe(registration.conn, topic)
                .await;
        }
        s.replayed.extend(page.frames);
    }
}

async fn expired(expiry: &mut Option<Pin<Box<Sleep>>>) {
    match expiry {
        Some(sleep) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}
