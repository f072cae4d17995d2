//! The embedded web files over HTTP: the JavaScript client at `/sdk/` and
//! the admin UI at `/admin/`, with ETags and security headers.

use super::error::ApiError;
use crate::assets;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// `GET /sdk/{*path}`: the JavaScript client. `pulsebase.mjs` is the same
/// file under the name Node always loads as an ES module, whatever the
/// `type` in the package.json of the project it is downloaded into.
pub async fn sdk(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let path = if path == "pulsebase.mjs" {
        "pulsebase.js"
    } else {
        &path
    };
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

/// The admin UI's icon, also answered at `/favicon.ico`.
pub fn admin_icon(headers: &HeaderMap) -> Response {
    serve("admin/favicon.svg", headers)
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
    let Some(file) = assets::get(path) else {
        return ApiError::not_found("no such file").into_response();
    };
    let etag = file.etag;
    let mut response = if is_fresh(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = file.data.into_owned().into_response();
        if let Ok(value) = HeaderValue::from_str(&file.content_type) {
            response.headers_mut().insert(CONTENT_TYPE, value);
        }
        response
    };
    revalidated(&mut response, &etag);
    response
}

/// Whether the client's copy (`If-None-Match`) is the one tagged `etag`.
pub(super) fn is_fresh(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag))
}

/// Tags a file's answer and has browsers revalidate it every time (a 304
/// is cheap), so a changed file is seen at once although its URL is not.
pub(super) fn revalidated(response: &mut Response, etag: &str) {
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(ETAG, value);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
}
