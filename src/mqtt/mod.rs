//! MQTT 3.1.1 and 5.0 over TCP and over WebSocket (`/mqtt` on the HTTP
//! port), in the same process and runtime as HTTP
//! (docs/mqtt.md). A transport beside `http` (which mounts its `/mqtt`
//! route) and `realtime`: it authenticates with [`crate::auth`] and
//! writes through [`crate::services`], so rules, validation and
//! durability are the ones REST has.
//!
//! - [`codec`]: framing over the codec crate, one view of both versions;
//! - [`connection`]: one client's session (CONNECT, publishes in flight,
//!   keep-alive; deliveries in its `outgoing` half);
//! - [`publish`]: where a PUBLISH goes and how a refusal is told;
//! - [`filters`]: MQTT topic filters and the realtime topics they name;
//! - [`subscriptions`]: a client's filters as subscriptions of the
//!   realtime hub ([`crate::fanout`]), which renders what each may see,
//!   and a rendered frame as a PUBLISH;
//! - [`resume`]: persistent sessions, kept in the store and replayed from
//!   the change log;
//! - [`will`]: the message published when a client goes away unexpectedly;
//! - [`websocket`] and [`ws_io`]: the `/mqtt` route, and the upgraded
//!   socket as the byte stream a session reads.

pub mod codec;
pub mod connection;
pub mod filters;
pub mod publish;
pub mod publish_packet;
pub mod resume;
pub mod subscriptions;
pub mod websocket;
pub mod will;
pub mod ws_io;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::AppState;

/// How long connections get to finish their writes after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accepts clients until the server stops, then waits (with a deadline)
/// for every MQTT session, those over WebSocket too, which watch the same
/// signal and close themselves.
pub async fn serve(state: AppState, listener: TcpListener) {
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small acknowledgements must not wait for the
                    // peer's delayed ACK.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "mqtt: cannot set TCP_NODELAY");
                    }
                    let session = connection::run(state.clone(), stream, peer);
                    state.mqtt_sessions.spawn(session);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "mqtt: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = stopped(&mut shutdown) => break,
        }
    }
    drop(listener);
    finish(&state).await;
}

/// Waits, with a deadline, for the sessions still running once the
/// server stops (those over WebSocket even when no TCP listener runs).
pub async fn finish(state: &AppState) {
    state.mqtt_sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, state.mqtt_sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("mqtt sessions did not finish in time; closing them");
    }
}

/// Completes once the server is stopping.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stopped| *stopped).await;
}
