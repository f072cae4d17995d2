//! `GET /mqtt`: MQTT over WebSocket on the HTTP port, served only when the
//! MQTT listener is on. After the upgrade the client is an MQTT client like
//! any other: the same session ([`super::connection::run`]) with the same
//! CONNECT credential, connection caps, keep-alive and limits as over TCP.

use std::net::SocketAddr;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{connection, ws_io};
use crate::error::ApiError;
use crate::services::credentials::client_ip;
use crate::state::AppState;

pub const PATH: &str = "/mqtt";
/// The subprotocols answered, in order of preference: `mqtt` is what the
/// MQTT standard names (3.1.1 and 5.0); some older 3.1.1 clients offer
/// `mqttv3.1` only.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Small, as for realtime WebSockets: most device connections are idle and
/// each buffer is allocated per connection.
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 4 * 1024;

/// The route when `mqtt` is on; nothing otherwise, so `/mqtt` is a 404.
pub fn routes(state: &AppState) -> Router<AppState> {
    if state.settings.mqtt.is_none() {
        return Router::new();
    }
    Router::new().route(PATH, get(upgrade_mqtt))
}

async fn upgrade_mqtt(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    crate::services::credentials::check_websocket_origin(&state, &headers)?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::bad_request("expected a WebSocket upgrade for MQTT over WebSocket")
    })?;
    // Counted against the per-address cap by the client's address, as a
    // realtime WebSocket is (behind a trusted proxy, the forwarded one).
    let peer = SocketAddr::new(client_ip(&state, peer, &headers), peer.port());
    // One message holds at most one packet's worth of bytes; the session's
    // framer enforces the packet limit itself.
    let max = connection::max_packet(&state);
    Ok(upgrade
        .protocols(SUBPROTOCOLS)
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            // Tracked as a TCP session is, so shutdown waits for it.
            let sessions = state.mqtt_sessions.clone();
            sessions.track_future(connection::run(state, ws_io::byte_stream(socket), peer))
        })
        .into_response())
}
