//! The request log over HTTP: a middleware that records every answered
//! request in the state's ring (`crate::request_log`), and
//! `GET /api/logs/requests` (admins) that reads it back.
//!
//! Nothing secret is recorded: no headers, no bodies, and of the query only
//! the values of parameters known to be harmless (`filter`, `sort`, ...);
//! any other value (`token`, `password`, whatever a client invents) is
//! replaced by `[redacted]`.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;

use super::error::{ApiResult, Refusal};
use super::extract::Admin;
use super::AppState;
use crate::protocol::requests::{
    RequestEntry, RequestError, RequestLogPage, ADMIN_UI_CLIENT, CLIENT_HEADER,
};
use crate::services::logs::{self, RequestLogParams};

pub const ROUTE: &str = "/api/logs/requests";

/// Query parameters whose values are kept: the API's own, none of which
/// carries a credential.
const HARMLESS: [&str; 26] = [
    "filter",
    "sort",
    "limit",
    "cursor",
    "fields",
    "total",
    "from",
    "to",
    "before",
    "group",
    "agg",
    "bucket",
    "fill",
    "topic",
    "topics",
    "ops",
    "since",
    "epoch",
    "aggregate",
    "precision",
    "org",
    "org_id",
    "return",
    "status",
    "prefix",
    "admin_ui",
];
/// A request line can be 64 KiB; the ring keeps a readable start of it.
const MAX_PATH_CHARS: usize = 1024;
const MAX_MESSAGE_CHARS: usize = 500;
const MAX_METHOD_CHARS: usize = 16;

/// Who a request acted as: set by the `Principal` extractor once it has
/// authenticated, so recording a request never authenticates it again.
#[derive(Debug, Clone, Default)]
pub struct Actor(Arc<OnceLock<String>>);

impl Actor {
    pub fn set(&self, id: String) {
        // The first principal of a request is the one it acts as.
        let _ = self.0.set(id);
    }

    fn get(&self) -> Option<String> {
        self.0.get().cloned()
    }
}

/// Records each request once its answer's head is ready: for a WebSocket
/// or an SSE stream that is when it opens, so a realtime connection
/// appears once. Reads of the log itself are left out, or a page that
/// refreshes it would fill it with itself.
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if request.uri().path() == ROUTE {
        return next.run(request).await;
    }
    let started = Instant::now();
    let time = crate::clock::now_rfc3339();
    let method = cut(request.method().as_str(), MAX_METHOD_CHARS);
    let path = loggable_path(request.uri());
    let admin_ui = from_admin_ui(&request);
    let actor = Actor::default();
    request.extensions_mut().insert(actor.clone());
    // Realtime handlers read their credential themselves (it may be in the
    // query or a subprotocol), without the extractor that fills `actor`.
    let realtime = is_realtime(request.uri().path()).then(|| {
        (
            request.headers().clone(),
            request.uri().query().map(str::to_owned),
        )
    });
    let response = next.run(request).await;
    let status = response.status();
    let opened = matches!(status, StatusCode::OK | StatusCode::SWITCHING_PROTOCOLS);
    let actor = actor.get().or_else(|| match realtime {
        Some((headers, query)) if opened => realtime_actor(&state, &headers, query.as_deref()),
        _ => None,
    });
    let error = response
        .extensions()
        .get::<Refusal>()
        .map(|refusal| RequestError {
            code: refusal.code.to_owned(),
            message: cut(&refusal.message, MAX_MESSAGE_CHARS),
        });
    state.requests.record(RequestEntry {
        time,
        method,
        path,
        status: status.as_u16(),
        duration_ms: started.elapsed().as_micros() as f64 / 1000.0,
        actor,
        error: error.filter(|_| status.is_client_error() || status.is_server_error()),
        admin_ui,
    });
    response
}

/// `GET /api/logs/requests?status=4xx&prefix=/api/&admin_ui=false&limit=100`
/// (admins).
pub async fn list_requests(
    State(state): State<AppState>,
    Admin(admin): Admin,
    params: Result<Query<RequestLogParams>, QueryRejection>,
) -> ApiResult<Json<RequestLogPage>> {
    let Query(params) = params?;
    Ok(Json(logs::requests(&state, &admin, params)?))
}

/// The admin UI's own requests: its API calls carry its header, and the
/// browser fetches its files (`/admin/...`), where no header can be added.
fn from_admin_ui(request: &Request) -> bool {
    let path = request.uri().path();
    path == "/admin"
        || path.starts_with("/admin/")
        || request
            .headers()
            .get_all(CLIENT_HEADER)
            .iter()
            .any(|value| {
                value
                    .as_bytes()
                    .eq_ignore_ascii_case(ADMIN_UI_CLIENT.as_bytes())
            })
}

fn is_realtime(path: &str) -> bool {
    path.starts_with("/api/realtime")
}

/// The id a realtime connection acts as, read the way its handler reads
/// it: once per connection, when it opened.
fn realtime_actor(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let token = query
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .and_then(|pairs| {
            pairs
                .into_iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v)
        });
    let protocols = headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter();
    let credential =
        crate::realtime::ws::credential(&state.auth, headers, token.as_deref(), protocols)
            .ok()??;
    state.auth.authenticate(&credential).ok()?.id()
}

/// The path, and the query with every value not known to be harmless
/// replaced, cut to a readable length.
fn loggable_path(uri: &Uri) -> String {
    let mut text = uri.path().to_owned();
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, value)) if HARMLESS.contains(&name) => format!("{name}={value}"),
                Some((name, _)) => format!("{name}=[redacted]"),
                None if HARMLESS.contains(&pair) => pair.to_owned(),
                None => "[redacted]".to_owned(),
            })
            .collect();
        text.push('?');
        text.push_str(&pairs.join("&"));
    }
    cut(&text, MAX_PATH_CHARS)
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(uri: &str) -> String {
        loggable_path(&uri.parse::<Uri>().unwrap())
    }

    #[test]
    fn secrets_in_the_query_are_redacted_and_the_rest_kept() {
        assert_eq!(
            path("/api/realtime/sse?topic=readings&token=eyJhbGc.x.y&filter=temp%20%3E%201"),
            "/api/realtime/sse?topic=readings&token=[redacted]&filter=temp%20%3E%201"
        );
        // Names a client invents are not trusted either, nor a bare word.
        assert_eq!(
            path("/x?api_key=pbk_1&password=p&eyJhbGc&total"),
            "/x?api_key=[redacted]&password=[redacted]&[redacted]&total"
        );
        assert_eq!(path("/api/health"), "/api/health");
    }

    #[test]
    fn long_paths_are_cut_on_a_character() {
        let long = format!("/{}", "é".repeat(2000));
        let kept = path(&format!("/{}", "%C3%A9".repeat(2000)));
        assert_eq!(kept.chars().count(), MAX_PATH_CHARS + 1);
        assert!(kept.ends_with('…'));
        assert_eq!(cut(&long, 3), "/éé…");
    }
}
