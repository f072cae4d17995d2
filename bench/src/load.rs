//! The HTTP side: a one-off request helper for setup, and the closed-loop
//! load itself (one keep-alive HTTP/1.1 connection per simulated client,
//! each client sending its next request as soon as the previous answer has
//! been read in full).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Highest latency the histogram tracks, in microseconds (values above are
/// clamped; `max` is tracked separately and exactly).
const HIST_MAX_US: u64 = 120_000_000;

pub async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    anyhow::ensure!(
        addr.ip().is_loopback(),
        "refusing to send traffic to {addr}: only loopback targets are allowed"
    );
    let stream = crate::wire::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on a fresh connection; returns the status and the body.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(addr).await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth);
    }
    let body = match body {
        Some(v) => {
            builder = builder.header(CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(&v)?)
        }
        None => Bytes::new(),
    };
    let resp = sender.send_request(builder.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// Like [`request`] but fails unless the status is 2xx; returns the JSON.
pub async fn request_ok(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let (status, bytes) = request(addr, method.clone(), path, auth, body).await?;
    if !(200..300).contains(&status) {
        bail!(
            "{method} {path} -> {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// One request on an open connection, waiting for it to be free first;
/// returns the status and the whole body.
pub async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// Like [`send`] but fails unless the status is 2xx; returns the body.
pub async fn send_ok(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<Bytes> {
    let (status, body) = send(sender, request).await?;
    anyhow::ensure!(
        status.is_success(),
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(body)
}

/// What the load hits.
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    pub auth: String,
    /// `application/json` for records; series ingest also takes NDJSON and
    /// line protocol.
    pub content_type: &'static str,
}

/// Timing of one run, all relative to one shared start.
#[derive(Clone, Copy)]
pub struct Window {
    pub measure_from: Instant,
    pub end: Instant,
}

pub struct LoadResult {
    pub hist: Histogram<u64>,
    pub max_us: u64,
    /// Successful requests completed inside the measured window.
    pub requests: u64,
    /// Non-2xx answers or transport errors, warm-up included.
    pub errors: u64,
    pub first_error: Option<String>,
    pub measured: Duration,
}

struct ClientResult {
    hist: Histogram<u64>,
    max_us: u64,
    requests: u64,
    errors: u64,
    first_error: Option<String>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

/// Runs `clients` closed-loop clients until `window.end`.
pub async fn run(
    target: Arc<Target>,
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
    window: Window,
) -> anyhow::Result<LoadResult> {
    // Connect everyone first so connection set-up is not part of the load.
    let mut senders = Vec::with_capacity(clients);
    for _ in 0..clients {
        senders.push(connect(target.addr).await?);
    }
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, sender)| {
            tokio::spawn(client(
                i,
                sender,
                Arc::clone(&target),
                Arc::clone(&bodies),
                window,
            ))
        })
        .collect();
    let mut total = LoadResult {
        hist: new_hist(),
        max_us: 0,
        requests: 0,
        errors: 0,
        first_error: None,
        measured: window.end - window.measure_from,
    };
    for h in handles {
        let r = h.await?;
        total.hist.add(&r.hist)?;
        total.max_us = total.max_us.max(r.max_us);
        total.requests += r.requests;
        total.errors += r.errors;
        if total.first_error.is_none() {
            total.first_error = r.first_error;
        }
    }
    Ok(total)
}

/// The headers every request to a target carries, built once per client.
struct Headers {
    host: HeaderValue,
    auth: HeaderValue,
    content_type: HeaderValue,
}

impl Headers {
    fn of(target: &Target) -> Headers {
        Headers {
            host: HeaderValue::from_str(&target.addr.to_string())
                .expect("address is a valid header"),
            auth: HeaderValue::from_str(&target.auth).expect("token is a valid header"),
            content_type: HeaderValue::from_static(target.content_type),
        }
    }

    fn post(&self, target: &Target, body: Bytes) -> Request<Full<Bytes>> {
        Request::builder()
            .method(Method::POST)
            .uri(target.path.as_str())
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.auth.clone())
            .header(CONTENT_TYPE, self.content_type.clone())
            .body(Full::new(body))
            .expect("valid request")
    }
}

/// Sends every body exactly once over `clients` keep-alive connections
/// (each takes the next unsent body when its previous answer is in): for
/// loading a known data set rather than measuring a rate. Fails on the
/// first non-2xx answer, since the data set would then be incomplete.
pub async fn send_all(
    target: Arc<Target>,
    bodies: Arc<Vec<Bytes>>,
    clients: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut sender = connect(target.addr).await?;
        let (target, bodies, next) = (Arc::clone(&target), Arc::clone(&bodies), Arc::clone(&next));
        handles.push(tokio::spawn(async move {
            let headers = Headers::of(&target);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                sender.ready().await?;
                let resp = sender
                    .send_request(headers.post(&target, body.clone()))
                    .await?;
                let status = resp.status();
                let answer = resp.into_body().collect().await?.to_bytes();
                if !status.is_success() {
                    bail!(
                        "POST {} -> {status}: {}",
                        target.path,
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

async fn client(
    index: usize,
    mut sender: SendRequest<Full<Bytes>>,
    target: Arc<Target>,
    bodies: Arc<Vec<Bytes>>,
    window: Window,
) -> ClientResult {
    let mut out = ClientResult {
        hist: new_hist(),
        max_us: 0,
        requests: 0,
        errors: 0,
        first_error: None,
    };
    let headers = Headers::of(&target);
    // Spread the clients over the body pool.
    let mut next = index.wrapping_mul(7919);
    loop {
        if Instant::now() >= window.end {
            break;
        }
        let body = bodies[next % bodies.len()].clone();
        next = next.wrapping_add(1);
        let req = headers.post(&target, body);
        if let Err(e) = sender.ready().await {
            out.errors += 1;
            out.first_error
                .get_or_insert_with(|| format!("connection lost: {e}"));
            break;
        }
        let started = Instant::now();
        let resp = match sender.send_request(req).await {
            Ok(resp) => resp,
            Err(e) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("request failed: {e}"));
                break;
            }
        };
        let status = resp.status();
        let mut body = resp.into_body();
        let ok = status.is_success();
        let mut error_body = Vec::new();
        let mut body_failed = None;
        // Read the whole answer; keep it only when it is an error.
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if !ok && error_body.len() < 4096 {
                        if let Some(data) = frame.data_ref() {
                            error_body.extend_from_slice(data);
                        }
                    }
                }
                Err(e) => {
                    body_failed = Some(e);
                    break;
                }
            }
        }
        let done = Instant::now();
        if let Some(e) = body_failed {
            out.errors += 1;
            out.first_error
                .get_or_insert_with(|| format!("reading the answer failed: {e}"));
            break;
        }
        if !ok {
            out.errors += 1;
            out.first_error.get_or_insert_with(|| {
                format!("HTTP {status}: {}", String::from_utf8_lossy(&error_body))
            });
            continue;
        }
        if done >= window.measure_from && done < window.end {
            let us = (done - started).as_micros().min(u128::from(u64::MAX)) as u64;
            out.hist.saturating_record(us.max(1));
            out.max_us = out.max_us.max(us);
            out.requests += 1;
        }
    }
    out
}

/// Signs in to pulsebase; returns the access token.
pub async fn pulsebase_token(
    addr: SocketAddr,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let answer = request_ok(
        addr,
        Method::POST,
        "/api/auth/signin",
        None,
        Some(serde_json::json!({"email": email, "password": password})),
    )
    .await?;
    token_of(&answer)
}

/// Signs in to a PocketBase auth collection (`_superusers`, `users`);
/// returns the token.
pub async fn pocketbase_token(
    addr: SocketAddr,
    collection: &str,
    identity: &str,
    password: &str,
) -> anyhow::Result<String> {
    let answer = request_ok(
        addr,
        Method::POST,
        &format!("/api/collections/{collection}/auth-with-password"),
        None,
        Some(serde_json::json!({"identity": identity, "password": password})),
    )
    .await?;
    token_of(&answer)
}

fn token_of(answer: &serde_json::Value) -> anyhow::Result<String> {
    Ok(answer["token"]
        .as_str()
        .with_context(|| format!("sign-in answer has no token: {answer}"))?
        .to_owned())
}
