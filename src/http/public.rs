//! The app's own files (`public`), served at `/` beside the API: content
//! types from the extension, ETags for cheap revalidation, `index.html`
//! for a directory, and with `public_spa` for any path that names no file.
//!
//! Nothing outside the directory is ever served: a path with `..`, `.` or
//! an encoded slash or backslash in a segment is refused, dot files are
//! not served, and a file reached through a symlink must still lie inside
//! the directory once the link is resolved.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::error::ApiError;
use super::AppState;

/// `GET /`: the app's index when `public` is set, else the admin UI.
pub async fn root(State(state): State<AppState>, request: Request) -> Response {
    if state.settings.web.public.is_none() {
        return super::assets::to_admin().await.into_response();
    }
    fallback(State(state), request).await
}

/// Every path no route took: a file of `public`, or the API's 404.
pub async fn fallback(State(state): State<AppState>, request: Request) -> Response {
    let web = &state.settings.web;
    let Some(dir) = &web.public else {
        return favicon_or_not_found(&request);
    };
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "static files are only read (GET, HEAD)",
        )
        .into_response();
    }
    let relative = match relative_path(request.uri().path()) {
        Ok(relative) => relative,
        Err(refusal) => return refusal.into_response(),
    };
    let found = match find(dir, &relative).await {
        Some(found) => Some(found),
        None if web.public_spa => find(dir, Path::new("index.html")).await,
        None => None,
    };
    match found {
        Some((file, metadata)) => send(&file, &metadata, request.headers()).await,
        None => favicon_or_not_found(&request),
    }
}

/// Browsers ask every site for `/favicon.ico`: the admin UI's icon unless
/// `public` has one of its own.
fn favicon_or_not_found(request: &Request) -> Response {
    if request.uri().path() == "/favicon.ico" {
        return super::assets::admin_icon(request.headers());
    }
    not_found()
}

fn not_found() -> Response {
    ApiError::not_found("no such endpoint or file").into_response()
}

/// The request path as a path inside `public`, each segment
/// percent-decoded and checked on its own (so `%2F` cannot make one).
fn relative_path(path: &str) -> Result<PathBuf, ApiError> {
    let mut relative = PathBuf::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let decoded = super::percent_decode(raw);
        let Ok(segment) = std::str::from_utf8(&decoded) else {
            return Err(ApiError::bad_request("the path is not valid UTF-8"));
        };
        if segment == "." || segment == ".." || segment.contains(['/', '\\', '\0']) {
            return Err(ApiError::bad_request(
                "a path may not climb out of the site (., .., or an encoded slash)",
            ));
        }
        if segment.starts_with('.') {
            // .git, .env and the like are never part of a site.
            return Err(ApiError::not_found("no such endpoint or file"));
        }
        relative.push(segment);
    }
    Ok(relative)
}

/// The file at `relative` (a directory's `index.html`), if it exists and,
/// once symlinks are resolved, is still inside `dir`.
async fn find(dir: &Path, relative: &Path) -> Option<(PathBuf, std::fs::Metadata)> {
    let root = tokio::fs::canonicalize(dir).await.ok()?;
    let mut path = tokio::fs::canonicalize(root.join(relative)).await.ok()?;
    if !path.starts_with(&root) {
        tracing::debug!(path = %path.display(), "public: a link leads out of the directory");
        return None;
    }
    let mut metadata = tokio::fs::metadata(&path).await.ok()?;
    if metadata.is_dir() {
        path = tokio::fs::canonicalize(path.join("index.html"))
            .await
            .ok()?;
        if !path.starts_with(&root) {
            return None;
        }
        metadata = tokio::fs::metadata(&path).await.ok()?;
    }
    metadata.is_file().then_some((path, metadata))
}

/// A weak validator from size and modification time: a changed file gets
/// a new one without the server reading it.
fn etag(metadata: &std::fs::Metadata) -> String {
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("W/\"{:x}-{:x}\"", metadata.len(), modified)
}

fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let text = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
        || mime.suffix().is_some_and(|s| s == "json" || s == "xml");
    if text {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

async fn send(path: &Path, metadata: &std::fs::Metadata, headers: &HeaderMap) -> Response {
    let etag = etag(metadata);
    let mut response = if super::assets::is_fresh(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let file = match tokio::fs::File::open(path).await {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "public: cannot open a file");
                return not_found();
            }
        };
        // Streamed: a large file costs a buffer, not its size, on a small box.
        let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
        let h = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&content_type(path)) {
            h.insert(CONTENT_TYPE, value);
        }
        h.insert(CONTENT_LENGTH, HeaderValue::from(metadata.len()));
        response
    };
    super::assets::revalidated(&mut response, &etag);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_site() {
        assert_eq!(relative_path("/").unwrap(), PathBuf::new());
        assert_eq!(
            relative_path("/app//js/main%20v2.js").unwrap(),
            PathBuf::from("app/js/main v2.js")
        );
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a%2Fb",
            "/a%5cb",
            "/./x",
            "/a%00",
        ] {
            let refused = relative_path(bad).unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let hidden = relative_path("/.git/config").unwrap_err();
        assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn text_types_say_their_charset() {
        assert_eq!(
            content_type(Path::new("a.html")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("a.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("a")), "application/octet-stream");
    }
}
