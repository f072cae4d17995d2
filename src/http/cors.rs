//! Cross-origin calls from browsers (`cors_origins`): the API, the SSE
//! stream and the JavaScript client answer pages of allowed origins,
//! preflights included. No credentials mode: sign-in hands the page a
//! bearer token, and no cookie is ever read, so allowing `*` lets no other
//! site act with a visitor's session.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::web::CorsOrigins;
use crate::protocol::requests::CLIENT_HEADER;

/// How long a browser may reuse a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        // Checked at start (`config::web`), so none is dropped here.
        CorsOrigins::Only(list) => {
            AllowOrigin::list(list.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        }
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
            // API keys may also come this way, as for any other client.
            HeaderName::from_static("x-api-key"),
            // The admin UI marks its requests, should it be served from
            // another origin than the API's.
            HeaderName::from_static(CLIENT_HEADER),
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER])
        .max_age(PREFLIGHT_MAX_AGE)
}
