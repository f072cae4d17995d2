//! The web assets compiled into the binary: the JavaScript client at
//! `/sdk/` and the admin UI at `/admin/`. Files come from `web/` through
//! rust-embed, also in debug builds (`debug-embed`), so tests serve exactly
//! what a release binary would.

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use crate::http::error::ApiError;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

/// `GET /sdk/{*path}`: the JavaScript client.
pub async fn sdk(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("sdk/{path}"), &headers)
}

/// `GET /` and `GET /admin`: to the admin UI.
pub async fn to_admin() -> Redirect {
    Redirect::to("/admin/")
}

/// `GET /admin/`: the admin UI's page (it routes by `#/view` itself).
pub async fn admin_index(headers: HeaderMap) -> Response {
    admin_file("index.html", &headers)
}

/// `GET /admin/{*path}`: its scripts and styles.
pub async fn admin(Path(path): Path<String>, headers: HeaderMap) -> Response {
    admin_file(&path, &headers)
}

fn admin_file(path: &str, headers: &HeaderMap) -> Response {
    let mut response = serve(&format!("admin/{path}"), headers);
    // Only our own scripts, no framing (clickjacking). The API takes bearer
    // tokens, never cookies, so there is no CSRF to defend.
    let h = response.headers_mut();
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// One embedded file with its content type and an ETag. `no-cache` makes
/// browsers revalidate (a cheap 304), so an upgraded binary's files are
/// picked up at once although their URLs do not change.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Web::get(path) else {
        return ApiError::not_found("no such file").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mime = file.metadata.mimetype();
        let mut response = file.data.into_owned().into_response();
        if let Ok(value) = HeaderValue::from_str(&content_type(mime)) {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, value);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Text types say their charset; module scripts must be served as
/// JavaScript or browsers refuse them.
fn content_type(mime: &str) -> String {
    if mime.starts_with("text/")
        || mime == "application/javascript"
        || mime.ends_with("+json")
        || mime == "application/json"
    {
        let mime = if mime == "application/javascript" {
            "text/javascript"
        } else {
            mime
        };
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_embedded() {
        assert!(Web::get("sdk/pulsebase.js").is_some());
    }

    #[test]
    fn scripts_are_javascript_with_a_charset() {
        assert_eq!(
            content_type("application/javascript"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("text/css"), "text/css; charset=utf-8");
        assert_eq!(content_type("image/png"), "image/png");
    }
}
