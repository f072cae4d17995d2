//! `GET /api/realtime`: the WebSocket transport.
//!
//! One task per connection, one loop: it reads client requests, writes
//! outbox frames, sends heartbeats and pings, and closes on a server-side
//! reason (slow consumer, revoked identity, expired token, shutdown).

use std::collections::VecDeque;
use std::future::Future as _;
use std::net::SocketAddr;
use std::task::{ready, Poll};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use futures_util::{FutureExt as _, SinkExt, StreamExt as _};
use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;
use tokio::time::{Instant, MissedTickBehavior};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes};

use super::session::{self, PendingReply, Session, Started};
use super::socket;
use super::upgrade::{Upgrade, WebSocket};
use crate::auth::{Auth, Checked, Principal};
use crate::clock;
use crate::error::{ApiError, ApiResult};
use crate::fanout::outbox::{self, CloseSignal};
use crate::fanout::{Close, ConnHandle, Frame, Transport};
use crate::limits::RateLimit;
use crate::limits::Slot;
use crate::peer::WRITE_TIMEOUT;
use crate::protocol::server::{ConnectionName, Welcome};
use crate::protocol::{Rejected, Request, ServerMessage};
use crate::services::credentials::{client_ip, header_credentials, one_credential};
use crate::state::AppState;

pub const SUBPROTOCOL: &str = "pulsebase.v1";
const BEARER_PROTOCOL_PREFIX: &str = "bearer.";
/// How long a closed connection waits for the client's close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Publishes one connection may have waiting for the writer before it
/// stops reading: enough to fill write groups, few enough that a client
/// cannot queue unbounded work.
const MAX_PENDING: usize = 256;
/// Kept small: most connections are idle most of the time, and each
/// buffer is allocated per connection (tungstenite's default is 128 KiB).
/// The read buffer is also the most read from the socket at once; clients
/// send small requests, and a larger message grows the buffer to fit.
const READ_BUFFER: usize = 512;

#[derive(Debug, Deserialize)]
pub struct ConnectParams {
    pub token: Option<String>,
}

/// The credential of a realtime request: `Authorization`/`X-Api-Key`,
/// `?token=`, or (WebSocket only) a `bearer.<token>` subprotocol. Each one
/// presented counts (see [`one_credential`]).
pub fn credential<'a>(
    auth: &Auth,
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    protocols: impl Iterator<Item = &'a HeaderValue>,
) -> ApiResult<Option<String>> {
    let mut presented = header_credentials(headers)?;
    presented.extend(query.filter(|t| !t.is_empty()));
    for value in protocols {
        let Ok(text) = value.to_str() else { continue };
        presented.extend(
            text.split(',')
                .filter_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL_PREFIX)),
        );
    }
    Ok(one_credential(auth, &presented)?.map(str::to_owned))
}

pub async fn websocket(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Query<ConnectParams>, QueryRejection>,
    upgrade: Result<Upgrade, ApiError>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    crate::services::credentials::check_websocket_origin(&state, &headers)?;
    let protocols: Vec<HeaderValue> = upgrade
        .as_ref()
        .map(|u| u.offered().cloned().collect())
        .unwrap_or_default();
    let token = credential(
        &state.auth,
        &headers,
        params.token.as_deref(),
        protocols.iter(),
    )?;
    // A bad token is refused before the upgrade, as a plain 401.
    let sign_in = token.as_deref().and_then(|t| state.auth.sign_in_of(t));
    // The signature is checked once; each request re-checks the rest.
    let token = token.map(|t| state.auth.check(&t)).transpose()?;
    let (principal, expires_ms) = match &token {
        Some(checked) => state.auth.authenticate_checked(checked)?,
        None => (Principal::Anonymous, None),
    };
    let upgrade = upgrade?;
    let settings = state.live.get();
    let slot = state.realtime.connections.acquire(
        client_ip(&state, peer, &headers),
        settings.max_connections,
        settings.max_connections_per_ip,
    )?;
    // Frames go through to the socket's own batching (`Coalescing`) at
    // once: tungstenite's write buffer would be kept by every connection.
    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_message_bytes))
        .max_frame_size(Some(settings.max_message_bytes))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0);
    Ok(upgrade.accept(SUBPROTOCOL, config, move |socket| {
        let connections = state.realtime_runtime.clone();
        connections.spawn(run(
            state, socket, principal, token, expires_ms, sign_in, slot,
        ));
    }))
}

/// A plain function returning the connection's future, not an `async fn`:
/// an `async fn` keeps its arguments twice in its state (as arguments and
/// as the locals they move into), and this state is what every idle
/// connection costs.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would hold the socket twice"
)]
fn run(
    state: AppState,
    mut socket: WebSocket,
    principal: Principal,
    token: Option<Checked>,
    expires_ms: Option<i64>,
    sign_in: Option<String>,
    // Held for as long as the connection is open.
    slot: Slot,
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        serve(state, &mut socket, principal, token, expires_ms, sign_in).await;
        drop(slot);
    }
}

async fn serve(
    state: AppState,
    socket: &mut WebSocket,
    principal: Principal,
    token: Option<Checked>,
    expires_ms: Option<i64>,
    sign_in: Option<String>,
) {
    let settings = state.live.get();
    let conn = state.realtime.next_conn_id();
    let (outbox_tx, mut outbox) = state.realtime.outbox();
    let closed = outbox.close_signal();
    state.realtime.connect(ConnHandle {
        id: conn,
        transport: Transport::WebSocket,
        client_id: None,
        principal: principal.clone(),
        sign_in: sign_in.clone(),
        outbox: outbox_tx,
    });
    state
        .realtime
        .close_if_signed_out(&state.auth, sign_in.as_deref());
    let mut session = Session::new(state.clone(), conn, principal, token, expires_ms);
    let mut rate = RateLimit::new(settings.message_rate);
    let heartbeat = settings.heartbeat;
    let mut ticker = tokio::time::interval_at(Instant::now() + heartbeat, heartbeat);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // Publishes queued for the writer whose replies are still to come, in
    // request order: the connection reads on meanwhile, so a client
    // streaming messages has many in one write group instead of one per
    // round trip.
    let mut pending: VecDeque<PendingReply> = VecDeque::new();
    // Built once and polled across iterations: a future made afresh on each
    // turn of the loop would register a timer or a waiter every time, and
    // with thousands of busy connections that cost shows.
    let mut close_requested = std::pin::pin!(close_signal(&closed));
    let mut expires_at = session.expires_ms;
    let mut pace = state.realtime.pace();
    let mut expiry = std::pin::pin!(tokio::time::sleep_until(expiry_instant(expires_at)));

    let seq = state.realtime.released_seq().await;
    // Boxed, like every write but the hot ones below: the state of an
    // inline `write` would stay in every idle connection's task.
    let mut close = if Box::pin(write(socket, [welcome(&session, heartbeat, seq)])).await {
        None
    } else {
        Some(Close::going_away())
    };

    while close.is_none() {
        if session.expires_ms != expires_at {
            expires_at = session.expires_ms;
            expiry.as_mut().reset(expiry_instant(expires_at));
        }
        tokio::select! {
            biased;
            reason = &mut close_requested => close = Some(reason),
            () = &mut expiry, if expires_at.is_some() => {
                close = Some(Close::unauthorized("token_expired", "the access token expired; reconnect with a fresh one"));
            }
            // Replayed events go before live ones, which wait in the outbox
            // meanwhile (a replay too long for the outbox ends in 4008, and
            // the client resumes from where it got to).
            page = session.next_replay_page(), if session.replaying() => {
                if !write(socket, page).await {
                    break;
                }
            }
            // A busy connection lets its next batch gather (see
            // `fanout::pacing`); the outbox holds and bounds it meanwhile.
            () = pace.ready(), if pace.waiting() => {
                if outbox.is_empty() {
                    pace.went_quiet();
                }
            }
            frame = outbox.recv(), if !session.replaying() && !pace.waiting() => {
                let Some(first) = frame else { break };
                let mut frames = vec![first];
                let crowded = outbox.take_into(&mut frames, outbox::WRITE_BATCH);
                pace.wrote(frames.len(), crowded);
                // A peer that stops reading blocks the write; the hub then
                // closes it as a slow consumer, which must win the race.
                tokio::select! {
                    written = write(socket, frames) => if !written { break },
                    reason = &mut close_requested => close = Some(reason),
                }
            }
            incoming = socket.next(), if pending.len() < MAX_PENDING => {
                last_heard = Instant::now();
                match incoming {
                    None => break,
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite has queued the echo of the client's
                        // close frame (same code). Its flush hands the echo
                        // to the stream and then reports the connection
                        // closed without flushing the stream, so that is
                        // flushed here; dropping the socket then ends the
                        // TCP connection.
                        let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                            let _ = socket.flush().await;
                            socket.get_mut().flush().await
                        })
                        .await;
                        break;
                    }
                    Some(Err(error)) => match close_for(error) {
                        Some(reason) => close = Some(reason),
                        None => break,
                    },
                    Some(Ok(Message::Text(text))) => {
                        let limit = state.live.get().message_rate;
                        let started = if rate.allow(limit) {
                            // Boxed: requests are rare next to idle time, and
                            // inline, their state would make every idle
                            // connection's task several KiB larger.
                            Box::pin(start_text(&mut session, &text)).await
                        } else {
                            let id = Request::id_of(&text);
                            let error = ApiError::rate_limited(
                                format!("at most {limit} messages per second"),
                                1,
                            );
                            Started::Ready(vec![session::error_frame(id.as_ref(), &error)])
                        };
                        let frames = match started {
                            Started::Queued(reply) => {
                                pending.push_back(reply);
                                continue;
                            }
                            // Replies go out in request order.
                            Started::Ready(frames) if !pending.is_empty() => {
                                pending.push_back(Box::pin(std::future::ready(frames)));
                                continue;
                            }
                            Started::Ready(frames) => frames,
                            Started::Turn(request) => {
                                if !Box::pin(flush_replies(socket, &mut pending)).await {
                                    break;
                                }
                                Box::pin(session.handle(request)).await
                            }
                        };
                        if !write(socket, frames).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let frames = [session::bad_request(None, "send JSON text frames")];
                        if !Box::pin(write(socket, frames)).await {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
            // After reading: a client streaming requests has the replies
            // that are ready by the time it pauses (or `MAX_PENDING` is
            // reached) written together, rather than one write per reply.
            frames = next_replies(&mut pending) => {
                if !write(socket, frames).await {
                    break;
                }
            }
            _ = ticker.tick() => {
                if last_heard.elapsed() > heartbeat * 2 + Duration::from_secs(5) {
                    tracing::debug!(conn, "peer stopped answering pings");
                    break;
                }
                if !Box::pin(heartbeat_and_ping(socket)).await {
                    break;
                }
            }
        }
    }
    state.realtime.disconnect(conn);
    if let Some(close) = close {
        Box::pin(close_with(socket, close)).await;
    }
}

/// Sends a heartbeat event and a ping; false if the socket failed.
async fn heartbeat_and_ping(socket: &mut WebSocket) -> bool {
    let ts = clock::now_rfc3339();
    let beat = Frame::control(&ServerMessage::Heartbeat { ts: &ts });
    write(socket, [beat]).await && send_timed(socket, Message::Ping(Default::default())).await
}

/// Closes with the server's reason and waits a while for the client's
/// close frame.
async fn close_with(socket: &mut WebSocket, close: Close) {
    if let Some(last) = close.last {
        let _ = write(socket, [last]).await;
    }
    let frame = CloseFrame {
        code: CloseCode::from(close.code),
        reason: Utf8Bytes::from_static(close.reason),
    };
    if send_timed(socket, Message::Close(Some(frame))).await {
        // Finish the closing handshake: dropping the socket while the
        // client's data is still unread makes the kernel send a reset,
        // and a reset throws away what the client has not read yet,
        // close frame included.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// The first frame. Built apart so that the user's JSON is gone once it
/// is written, not kept in the connection's task for as long as it lives.
fn welcome(session: &Session, heartbeat: Duration, seq: u64) -> Frame {
    let user = session.principal.user().map(|u| u.public_json());
    let epoch = session.state.store.epoch();
    Frame::control(&ServerMessage::Welcome(Welcome {
        connection: ConnectionName(session.conn),
        user: user.as_ref(),
        heartbeat: heartbeat.as_secs(),
        seq,
        epoch: &epoch,
    }))
}

async fn start_text(session: &mut Session, text: &str) -> Started {
    match Request::parse(text) {
        Ok(request) => session.start(request).await,
        Err(Rejected { id, message }) => {
            Started::Ready(vec![session::bad_request(id.as_ref(), &message)])
        }
    }
}

/// The reply at the head of `pending` once it is ready, with the ready
/// ones after it; never, if there is none. Cancel-safe: replies stay
/// queued until they are returned.
async fn next_replies(pending: &mut VecDeque<PendingReply>) -> Vec<Frame> {
    let Some(reply) = pending.front_mut() else {
        return std::future::pending().await;
    };
    let mut frames = reply.await;
    pending.pop_front();
    // The replies after it that are ready already go in the same write.
    while let Some(reply) = pending.front_mut() {
        let Some(more) = reply.now_or_never() else {
            break;
        };
        frames.extend(more);
        pending.pop_front();
    }
    frames
}

/// Writes every pending reply, in order; false if the socket failed.
async fn flush_replies(socket: &mut WebSocket, pending: &mut VecDeque<PendingReply>) -> bool {
    while let Some(reply) = pending.pop_front() {
        if !write(socket, reply.await).await {
            return false;
        }
    }
    true
}

fn expiry_instant(expires_ms: Option<i64>) -> Instant {
    let left = expires_ms.map_or(0, |at| (at - clock::now_ms()).max(0));
    Instant::now() + Duration::from_millis(left as u64)
}

/// Why the server wants this connection gone: the hub's reason (slow
/// consumer, revoked identity, shutdown).
async fn close_signal(closed: &CloseSignal) -> Close {
    closed.closed().await.unwrap_or_else(Close::going_away)
}

/// Writes frames and flushes once; false when the peer is gone or stuck.
async fn write<F: AsRef<Frame>>(
    socket: &mut WebSocket,
    frames: impl IntoIterator<Item = F>,
) -> bool {
    // Polled by hand rather than as `feed(..).await`s in an async block:
    // between polls this keeps only the iterator, and this future's state
    // is part of every connection's task (a write is where an idle
    // connection waits most, after `select!`).
    let mut frames = frames.into_iter();
    let mut work = std::pin::pin!(std::future::poll_fn(move |cx| {
        // A frame tungstenite could not hand over whole (a pong, say) goes
        // first; the deliveries are framed beside it, not through it (see
        // `socket`).
        ready!(socket.poll_ready_unpin(cx)).map_err(std::io::Error::other)?;
        let stream = socket.get_mut();
        loop {
            ready!(stream.poll_room(cx))?;
            match frames.next() {
                Some(frame) => {
                    // The frames of a batch are mostly alike (one message
                    // to many, or many of one kind), so the first one
                    // gathered into an empty buffer foretells the rest.
                    let text = frame.as_ref().text.as_bytes();
                    let left = frames.size_hint().0 + 1;
                    stream.expect((text.len() + socket::MAX_HEADER).saturating_mul(left));
                    stream.gather_text(text);
                }
                None => return tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(stream), cx),
            }
        }
    }));
    // Almost every write fits the socket buffer and finishes at the first
    // poll; only one that has to wait pays for a timer.
    match std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await {
        Poll::Ready(result) => result.is_ok(),
        Poll::Pending => matches!(tokio::time::timeout(WRITE_TIMEOUT, work).await, Ok(Ok(()))),
    }
}

async fn send_timed(socket: &mut WebSocket, message: Message) -> bool {
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await,
        Ok(Ok(()))
    )
}

/// The close a broken client frame calls for, when the connection can
/// still say why: 1009 for a message over the limit, 1007 for a text
/// message that is not UTF-8 (RFC 6455 §7.4.1). Anything else (a reset, a
/// protocol error tungstenite already answered) just ends it.
fn close_for(error: tungstenite::Error) -> Option<Close> {
    let (code, reason) = match error {
        tungstenite::Error::Capacity(_) => (1009, "message too big"),
        tungstenite::Error::Utf8(_) => (1007, "text frames must be UTF-8"),
        _ => return None,
    };
    Some(Close {
        code,
        reason,
        last: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, E, G, H, R>(_: &impl FnOnce(A, B, C, D, E, G, H) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn an_idle_connection_task_stays_small() {
        // The whole state of a connection's task, allocated for every open
        // WebSocket (it was 3.3 KiB when every write's state was inline).
        // tokio adds about 110 bytes and rounds to 128 with that alignment:
        // up to 1936 bytes the task is 2 KiB, which mimalloc serves as is;
        // past it mimalloc over-allocates to align it, to 2.5 KiB. It was
        // 2,120 bytes while it held a waiter on the shutdown flag.
        let size = returned_size(&run);
        assert!(size <= 1936, "the connection's future is {size} bytes");
    }
}
