//! The WebSocket opening handshake (RFC 6455 §4.2) for `GET /api/realtime`.
//!
//! Served here rather than by axum's `WebSocketUpgrade`, which builds the
//! socket over hyper's connection itself: the realtime connection needs
//! its own stream under tungstenite ([`Coalescing`]) to write a batch of
//! deliveries at once.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::socket::Coalescing;
use crate::error::ApiError;

/// A realtime WebSocket over the upgraded HTTP connection.
pub type WebSocket = WebSocketStream<Coalescing<TokioIo<hyper::upgrade::Upgraded>>>;

/// A request that asks to become a WebSocket.
pub struct Upgrade {
    key: HeaderValue,
    /// The subprotocols the client offered, in its order.
    offered: Vec<HeaderValue>,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Upgrade, ApiError> {
        let not_an_upgrade =
            || ApiError::bad_request("expected a WebSocket upgrade (or use /api/realtime/sse)");
        let headers = &parts.headers;
        let is_upgrade = parts.version <= Version::HTTP_11
            && parts.method == Method::GET
            && header_has_token(headers, header::CONNECTION, "upgrade")
            && header_is(headers, header::UPGRADE, "websocket")
            && header_is(headers, header::SEC_WEBSOCKET_VERSION, "13");
        if !is_upgrade {
            return Err(not_an_upgrade());
        }
        let key = one_valid_key(headers)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(not_an_upgrade)?;
        let offered = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderValue::from_bytes(name.trim_ascii()).ok())
            .collect();
        Ok(Upgrade {
            key,
            offered,
            on_upgrade,
        })
    }
}

impl Upgrade {
    /// The subprotocols the client offered.
    pub fn offered(&self) -> impl Iterator<Item = &HeaderValue> {
        self.offered.iter()
    }

    /// Answers 101 (with `protocol` when the client offered it) and, once
    /// hyper hands the connection over, calls `serve` with the socket.
    pub fn accept<F>(self, protocol: &'static str, config: WebSocketConfig, serve: F) -> Response
    where
        F: FnOnce(WebSocket) + Send + 'static,
    {
        let Upgrade {
            key,
            offered,
            on_upgrade,
        } = self;
        tokio::spawn(async move {
            // Fails only when the client went away before the switch.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let stream = Coalescing::new(TokioIo::new(upgraded));
            serve(WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await);
        });
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key(key.as_bytes()));
        if offered.iter().any(|name| name == protocol) {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        response
    }
}

/// `Sec-WebSocket-Key` must be one base64 value of 16 bytes (RFC 6455
/// §4.2.1).
fn one_valid_key(headers: &HeaderMap) -> Result<HeaderValue, ApiError> {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    match (keys.next(), keys.next()) {
        (Some(key), None)
            if STANDARD
                .decode(key.as_bytes())
                .is_ok_and(|bytes| bytes.len() == 16) =>
        {
            Ok(key.clone())
        }
        _ => Err(ApiError::bad_request(
            "Sec-WebSocket-Key must be one base64-encoded 16-byte value",
        )),
    }
}

/// `Sec-WebSocket-Accept`: base64 of SHA-1 over the key and the RFC's GUID.
fn accept_key(key: &[u8]) -> HeaderValue {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use sha1::{Digest as _, Sha1};
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    // Base64 is always a valid header value.
    HeaderValue::from_str(&STANDARD.encode(sha1.finalize()))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn header_is(headers: &HeaderMap, name: header::HeaderName, expected: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(expected.as_bytes()))
}

/// `Connection` is a comma-separated list (`keep-alive, Upgrade`).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
