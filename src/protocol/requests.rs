//! The request log as `GET /api/logs/requests` shows it: one entry per
//! HTTP request the server answered (docs/api.md, "Request log").

use serde::{Deserialize, Serialize};

/// The header a client names itself with. Only the admin UI's value means
/// anything: it lets the log page leave out the UI's own polling. Anyone
/// may send it, so it sorts entries for reading and proves nothing.
pub const CLIENT_HEADER: &str = "x-pulsebase-client";
/// [`CLIENT_HEADER`]'s value on every request the admin UI sends.
pub const ADMIN_UI_CLIENT: &str = "admin-ui";

/// One answered request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestEntry {
    /// When it arrived (RFC 3339 UTC, milliseconds).
    pub time: String,
    pub method: String,
    /// The path, and the query with the value of every parameter that could
    /// carry a secret replaced by `[redacted]`.
    pub path: String,
    pub status: u16,
    /// From arrival to the answer's head: for a WebSocket or SSE stream,
    /// the time to open it, not how long it stayed open.
    pub duration_ms: f64,
    /// The user or API key the request acted as, when it named one.
    pub actor: Option<String>,
    /// What a 4xx or 5xx answer said, in the API's error shape.
    pub error: Option<RequestError>,
    /// Sent by the admin UI: an API call with its `X-Pulsebase-Client:
    /// admin-ui` header, or a fetch of its files under `/admin`.
    pub admin_ui: bool,
}

/// `GET /api/logs/requests`: the entries that match, newest first, how
/// many the server keeps at most, and how many the `admin_ui` parameter
/// left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestLogPage {
    pub items: Vec<RequestEntry>,
    pub capacity: usize,
    /// Entries that match every other parameter but not `admin_ui` (0
    /// without it), before `limit`: what a page hides, it can say so.
    pub hidden: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestError {
    pub code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_entry_is_the_json_the_docs_show() {
        let shown = json!({
            "time": "2026-11-22T06:12:34.123Z", "method": "GET",
            "path": "/api/realtime/sse?topic=readings&token=[redacted]",
            "status": 400, "duration_ms": 0.412, "actor": "u_01",
            "error": {"code": "bad_request", "message": "filter: unexpected end at position 5"},
            "admin_ui": false
        });
        let entry: RequestEntry = serde_json::from_value(shown.clone()).unwrap();
        assert_eq!(
            entry.error.as_ref().map(|e| e.code.as_str()),
            Some("bad_request")
        );
        assert_eq!(serde_json::to_value(&entry).unwrap(), shown);
    }
}
