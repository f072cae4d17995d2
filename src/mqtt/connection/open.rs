//! Taking up a connection: the caps, the CONNECT and its credential,
//! the CONNACK, and a stored session taken up, before the session is
//! served.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{max_packet, read_some, Session, CONNECT_TIMEOUT, OUT_WINDOW, REFUSAL_TIMEOUT, WINDOW};
use crate::auth::{AuthError, Principal};
use crate::mqtt::codec::{Framer, Hello, Inbound, Outbound, Refusal};
use crate::mqtt::resume::Keeper;
use crate::mqtt::subscriptions::{Registration, Subscriptions};
use crate::peer::write_in_time;
use crate::state::AppState;

/// A client whose CONNECT was accepted and answered.
pub(super) struct Opened<S> {
    pub(super) session: Session,
    pub(super) stream: S,
    pub(super) framer: Framer,
    pub(super) buf: BytesMut,
    pub(super) keep_alive: Option<Duration>,
    pub(super) expires: Option<Instant>,
}

impl<S> Opened<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    /// Serves the connection it opened.
    pub(super) fn serve(self) -> impl Future<Output = ()> + Send {
        let session = self.session;
        session.serve(
            self.stream,
            self.framer,
            self.buf,
            self.keep_alive,
            self.expires,
        )
    }
}

/// Reads and checks the CONNECT, answers it, and takes up the session;
/// `None` when the client was refused or went away.
pub(super) async fn open<S>(state: AppState, mut stream: S, peer: SocketAddr) -> Option<Opened<S>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max_packet = max_packet(&state);
    // The same caps as WebSocket and SSE connections, counted together,
    // and taken before the CONNECT: a connection that never sends one
    // holds a place meanwhile. One refused gets a short while to say
    // which version it speaks, to be told so in its words.
    let limits = state.live.get();
    let admitted = state.realtime.connections.acquire(
        peer.ip(),
        limits.max_connections,
        limits.max_connections_per_ip,
    );
    let wait = if admitted.is_ok() {
        CONNECT_TIMEOUT
    } else {
        REFUSAL_TIMEOUT
    };
    let mut framer = Framer::new(max_packet);
    let mut buf = BytesMut::new();
    let hello =
        match tokio::time::timeout(wait, read_hello(&mut stream, &mut buf, &mut framer)).await {
            Ok(Ok(hello)) => hello,
            Ok(Err(why)) => {
                tracing::debug!(%peer, %why, "mqtt: no CONNECT");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "mqtt: no CONNECT in time");
                return None;
            }
        };
    let version = framer.version()?;
    let assigned = hello.client_id.is_empty();
    let client_id = if assigned {
        format!("pulsebase-{}", crate::ids::generate())
    } else {
        hello.client_id.clone()
    };
    let found = admitted
        .map_err(|_| Refusal::Unavailable)
        .and_then(|slot| Ok((slot, authenticate(&state, &hello)?)));
    let (slot, (principal, expires_ms)) = match found {
        Ok(found) => found,
        Err(refusal) => {
            let mut out = BytesMut::new();
            let refused = Outbound::ConnAck {
                refusal: Some(refusal),
                session_present: false,
                receive_maximum: WINDOW,
                max_packet,
                assigned_id: None,
            };
            if refused.encode(version, &mut out).is_ok() {
                let _ = write_in_time(&mut stream, &out).await;
            }
            tracing::debug!(%peer, ?refusal, "mqtt: CONNECT refused");
            return None;
        }
    };
    let credential = hello
        .password
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let sign_in = credential.as_deref().and_then(|c| state.auth.sign_in_of(c));
    let registration = Registration::connect(&state, &principal, sign_in, &client_id);
    let out_window = hello
        .receive_maximum
        .unwrap_or(OUT_WINDOW)
        .clamp(1, OUT_WINDOW);
    let keeper = Keeper::new(&state, &hello, version, &principal);
    let mut session = Session {
        keeper: Some(Box::new(keeper)),
        replaying: None,
        delivered: 0,
        retained: Default::default(),
        // Before any filter is resolved, so no creation goes unheard.
        topics_created: state.store.topics().watch_created(),
        pace: None,
        credential,
        checked: Instant::now(),
        _slot: slot,
        state,
        principal,
        peer,
        version,
        client_id,
        errors_subscribed: false,
        will: hello.will.clone().map(Box::new),
        out: BytesMut::new(),
        pending: None,
        publishes_in_flight: 0,
        run: None,
        registration,
        subscriptions: Subscriptions::default(),
        inflight: std::collections::BTreeMap::new(),
        next_pkid: 0,
        out_window,
    };
    // Boxed, as the other rare steps below: a task is as large as its
    // largest await, and an idle connection should pay only for waiting.
    let session_present = Box::pin(session.take_up(&hello)).await;
    let assigned_id = assigned.then(|| session.client_id.clone());
    session.send(&Outbound::ConnAck {
        refusal: None,
        session_present,
        receive_maximum: WINDOW,
        max_packet,
        assigned_id: assigned_id.as_deref(),
    });
    let keep_alive =
        (hello.keep_alive > 0).then(|| Duration::from_millis(u64::from(hello.keep_alive) * 1500));
    // An expiry too far to represent is never.
    let expires = expires_ms.and_then(|ms| {
        let left = ms.saturating_sub(crate::clock::now_ms()).max(0);
        Instant::now().checked_add(Duration::from_millis(left as u64))
    });
    Some(Opened {
        session,
        stream,
        framer,
        buf,
        keep_alive,
        expires,
    })
}

/// Reads until the CONNECT is whole.
async fn read_hello(
    stream: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
    framer: &mut Framer,
) -> Result<Hello, String> {
    loop {
        match framer.next(buf) {
            Ok(Some(Inbound::Connect(hello))) => return Ok(hello),
            Ok(Some(_)) => return Err("the first packet must be CONNECT".into()),
            Ok(None) => {}
            Err(e) => return Err(format!("{e:?}")),
        }
        match read_some(stream, buf).await {
            Ok(0) => return Err("closed".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The CONNECT password as an API key or access token, checked by the
/// same code as an HTTP `Authorization` header.
fn authenticate(state: &AppState, hello: &Hello) -> Result<(Principal, Option<i64>), Refusal> {
    match hello.password.as_deref().map(str::trim) {
        None | Some("") if state.settings.mqtt_anonymous => Ok((Principal::Anonymous, None)),
        None | Some("") => Err(Refusal::NotAuthorized),
        Some(credential) => state
            .auth
            .authenticate_until(credential)
            .map_err(|e| match e {
                AuthError::InvalidToken | AuthError::Expired | AuthError::RefreshReused => {
                    Refusal::BadCredentials
                }
                other => {
                    tracing::warn!(error = %other, "mqtt: cannot check a CONNECT");
                    Refusal::Unavailable
                }
            }),
    }
}
