//! Reading who a request says it is from its headers, and where it comes
//! from: shared by REST and the realtime endpoints, so every path refuses
//! the same credentials the same way.

use std::net::{IpAddr, SocketAddr};

use axum::http::header::{self, AUTHORIZATION};
use axum::http::{HeaderMap, HeaderValue};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Browsers apply no CORS to WebSocket handshakes, so with a list of
/// `cors_origins` a handshake from a page of another origin is refused
/// here (realtime and MQTT WebSockets alike).
pub fn check_websocket_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let origin = text(header::ORIGIN);
    if state
        .settings
        .web
        .cors_origins
        .allow_websocket(origin, text(header::HOST))
    {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "origin {} is not in cors_origins",
        origin.unwrap_or_default()
    )))
}

/// The address a client is counted by (sign-in throttling, realtime
/// connection caps, publish rates). Behind a reverse proxy every peer is
/// the proxy, so with `trust_proxy` the last `X-Forwarded-For` entry (the
/// one the proxy itself appended) is used; a client cannot forge that one,
/// only the entries before it.
pub fn client_ip(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if state.settings.trust_proxy {
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .and_then(|entry| entry.trim().parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

/// Every credential the headers present: each `Authorization: Bearer` (or
/// `Token`) and
/// each `X-Api-Key`. An `Authorization` of another scheme is 401: it cannot
/// be ignored, or a caller would act as someone it did not mean to be.
pub fn header_credentials(headers: &HeaderMap) -> Result<Vec<&str>, ApiError> {
    let mut credentials = Vec::new();
    for value in headers.get_all(AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        // `Token` is InfluxDB's scheme: its agents and client libraries
        // send the API key that way.
        let token = text
            .strip_prefix("Bearer ")
            .or_else(|| text.strip_prefix("bearer "))
            .or_else(|| text.strip_prefix("Token "))
            .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?;
        credentials.push(token.trim());
    }
    for value in headers.get_all("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("malformed X-Api-Key header"))?;
        credentials.push(key.trim());
    }
    Ok(credentials)
}

/// The one credential among those presented (the same one may come twice),
/// or `None`. Different ones are checked first, so an invalid one is 401
/// whatever else came with it; different valid ones are 400: the server
/// will not guess which identity was meant.
pub fn one_credential<'a>(auth: &Auth, presented: &[&'a str]) -> Result<Option<&'a str>, ApiError> {
    let mut distinct: Vec<&str> = presented.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() > 1 {
        for credential in &distinct {
            auth.authenticate(credential)?;
        }
        return Err(ApiError::bad_request(
            "more than one credential (Authorization, X-Api-Key, token, subprotocol): send one",
        ));
    }
    Ok(distinct.first().copied())
}
