//! A connection whose first request opens an SSE stream is served here
//! rather than by hyper. hyper keeps an 8 KiB read buffer and an 8 KiB
//! write buffer for as long as an HTTP/1 connection lives (a page of each
//! touched, 8 KiB together): more than all the rest of an idle stream.
//! The request still goes through the same router (credentials, CORS,
//! limits, the SSE handler); only reading its head and writing its answer
//! are done here, and nothing is kept between events but the stream.
//!
//! The first request line is peeked, not read, so any other connection is
//! handed to hyper whole. The stream's connection closes when the stream
//! ends (a reconnecting client opens a new one, as it would anyway).

use std::io::{IoSlice, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::ConnectInfo;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use axum::response::IntoResponse as _;
use axum::Router;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower::ServiceExt as _;

use crate::error::ApiError;
use crate::peer::{finish_in_time, write_in_time};

/// The start of a request line that opens a stream.
const SSE_REQUEST: &[u8] = b"GET /api/realtime/sse";
/// The most a request head may take, as hyper allows.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;
/// How long the rest of a request head is waited for.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request line that came in pieces is waited for, in steps.
const PEEK_STEP: Duration = Duration::from_millis(2);
const PEEK_STEPS: usize = 500;

/// Whether the connection's first request opens an SSE stream. Peeked:
/// nothing is consumed. A request line still incomplete after a second is
/// left to hyper, which serves streams too, only with its buffers.
pub async fn opens_sse(stream: &TcpStream) -> bool {
    let mut line = [0u8; SSE_REQUEST.len() + 1];
    for _ in 0..PEEK_STEPS {
        let seen = match stream.peek(&mut line).await {
            Ok(0) | Err(_) => return false,
            Ok(seen) => seen,
        };
        if seen == line.len() {
            // `/api/realtime/sse?...` or `/api/realtime/sse HTTP/1.1`, not
            // a longer path that starts the same.
            return line.starts_with(SSE_REQUEST) && matches!(line[SSE_REQUEST.len()], b'?' | b' ');
        }
        if !SSE_REQUEST.starts_with(&line[..seen]) {
            return false;
        }
        // `peek` returns at once while any byte is waiting: wait for more.
        tokio::time::sleep(PEEK_STEP).await;
    }
    false
}

/// Reads the request, answers it through `app`, and streams the answer
/// until it ends or the client goes away.
pub async fn serve(mut io: TcpStream, peer: SocketAddr, app: Router) {
    let read = tokio::time::timeout(HEAD_TIMEOUT, read_request(&mut io, peer)).await;
    let (request, version) = match read {
        Ok(Ok(Some(read))) => read,
        Ok(Ok(None)) | Err(_) => return,
        Ok(Err(refusal)) => {
            let _ = answer(&mut io, refusal.into_response(), Version::HTTP_11).await;
            return;
        }
    };
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    if let Err(error) = answer(&mut io, response, version).await {
        tracing::trace!(%error, "an SSE connection ended with an error");
    }
    let _ = io.shutdown().await;
}

/// The request head, read and parsed; `None` if the client left first.
async fn read_request(
    io: &mut TcpStream,
    peer: SocketAddr,
) -> Result<Option<(Request<Body>, Version)>, ApiError> {
    let mut head = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let read = io.read(&mut chunk).await.unwrap_or(0);
        if read == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..read]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => return to_request(&parsed, peer).map(Some),
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(ApiError::bad_request("the request head is too large"))
            }
            Err(e) => return Err(ApiError::bad_request(format!("unreadable request: {e}"))),
        }
    }
}

fn to_request(
    parsed: &httparse::Request<'_, '_>,
    peer: SocketAddr,
) -> Result<(Request<Body>, Version), ApiError> {
    let unreadable = |what: &str| ApiError::bad_request(format!("unreadable request {what}"));
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| unreadable("method"))?;
    let uri: Uri = parsed
        .path
        .unwrap_or("")
        .parse()
        .map_err(|_| unreadable("target"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    for header in parsed.headers.iter() {
        let name =
            HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| unreadable("header"))?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| unreadable("header"))?;
        request.headers_mut().append(name, value);
    }
    request.extensions_mut().insert(ConnectInfo(peer));
    Ok((request, version))
}

/// Writes the answer's head, then its body as it comes: chunked for an
/// HTTP/1.1 client when its length is not known, else as is (HTTP/1.0
/// reads to the end). Stops when the client closes its side.
async fn answer(
    io: &mut TcpStream,
    response: Response<Body>,
    version: Version,
) -> std::io::Result<()> {
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let chunked = length.is_none() && version == Version::HTTP_11;
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(if version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if [CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING].contains(name) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    // What hyper adds to every answer.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    head.extend_from_slice(format!("date: {date}\r\n").as_bytes());
    if let Some(length) = length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    } else if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    write_in_time(io, &head).await?;
    drop(head);

    let mut body = body.into_data_stream();
    loop {
        // Bytes from the client after its request are not read as another
        // request: the connection closes with the stream. A read of 0 means
        // the client went away, and the stream with it.
        let mut scrap = [0u8; 64];
        let data = tokio::select! {
            data = body.next() => data,
            read = io.read(&mut scrap) => match read {
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => continue,
            },
        };
        match data {
            Some(Ok(data)) if data.is_empty() => {}
            Some(Ok(data)) if chunked => write_chunk(io, &data).await?,
            Some(Ok(data)) => write_in_time(io, &data).await?,
            Some(Err(error)) => return Err(std::io::Error::other(error)),
            None => {
                if chunked {
                    write_in_time(io, b"0\r\n\r\n").await?;
                }
                return Ok(());
            }
        }
    }
}

/// One chunk of a chunked body: its size line, the data and the line's
/// end in one vectored write, so that a batch of events is not copied
/// again to be framed (a copy was a tenth of the CPU of a thousand busy
/// streams).
async fn write_chunk(
    io: &mut (impl tokio::io::AsyncWrite + Unpin),
    data: &[u8],
) -> std::io::Result<()> {
    const LINE: usize = 20;
    let mut line = [0u8; LINE];
    let line_len = {
        let mut rest = &mut line[..];
        write!(rest, "{:x}\r\n", data.len())?;
        LINE - rest.len()
    };
    let mut parts = [
        IoSlice::new(&line[..line_len]),
        IoSlice::new(data),
        IoSlice::new(b"\r\n"),
    ];
    let mut parts = &mut parts[..];
    let written = std::pin::pin!(async move {
        while !parts.is_empty() {
            let written = io.write_vectored(parts).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut parts, written);
        }
        Ok(())
    });
    finish_in_time(written).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_written_in_pieces_arrives_framed_and_whole() {
        // A pipe of 7 bytes takes a few bytes of one slice per write, so
        // every slice is cut and resumed (the way a full socket buffer
        // cuts a vectored write).
        let (mut server, mut client) = tokio::io::duplex(7);
        let data = vec![b'e'; 300];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.map(|_| got)
        });
        write_chunk(&mut server, &data).await.expect("written");
        write_chunk(&mut server, b"x").await.expect("written");
        drop(server);
        let got = reader.await.expect("joined").expect("read");
        let mut expected = b"12c\r\n".to_vec();
        expected.extend_from_slice(&data);
        expected.extend_from_slice(b"\r\n1\r\nx\r\n");
        assert_eq!(got, expected);
    }
}
