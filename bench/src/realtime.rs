//! The realtime benchmark: fan-out of record changes to many subscribers,
//! custom-topic publish fan-out, and memory per idle connection, against
//! pulsebase (WebSocket, and SSE for memory) and PocketBase (SSE).
//!
//! Every write carries its index `n` and the generator's clock `sent` (µs);
//! every subscriber keeps a bitset of the `n` it received, so missed and
//! duplicate events are counted exactly, and latency is arrival − sent on
//! one clock. Writes are paced open-loop at the offered rate by a few
//! keep-alive HTTP connections; a server that cannot keep up shows as fewer
//! writes done, not as a slower schedule.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::task::{JoinSet, LocalSet};

use crate::procs::{self, CpuSnapshot, CpuUse, Server, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::wire::{Sse, StampFinder, Ws};
use crate::{load, mib, ms, thousands, Args};

/// Writer connections: enough that one slow answer does not hold back the
/// schedule at 1000 writes/s.
const WRITERS: usize = 32;
/// Subscriber accounts; each serves `subscribers / USERS` connections (user
/// creation hashes a password, too slow to do a thousand times per run).
const USERS: usize = 10;
const USER_PASSWORD: &str = "bench-password-1";
/// Connections set up at once.
const SETUP_PARALLEL: usize = 64;
/// How long to wait after the last write for the last events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
const HIST_MAX_US: u64 = 120_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Pulsebase,
    PocketBase,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Pulsebase => "pulsebase",
            Peer::PocketBase => "pocketbase",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Record creates at `rate`/s, each an event for every subscriber.
    Fanout { subscribers: usize, rate: u32 },
    /// Custom-topic messages at `rate`/s (`history: 0`).
    Publish { subscribers: usize, rate: u32 },
    /// `connections` subscribed, idle connections: memory per connection.
    Idle {
        transport: Transport,
        connections: usize,
    },
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub peer: Peer,
    pub kind: Kind,
}

impl Scenario {
    pub fn name(&self) -> String {
        let kind = match self.kind {
            Kind::Fanout { subscribers, rate } => format!("fanout/s{subscribers}/r{rate}"),
            Kind::Publish { subscribers, rate } => format!("publish/s{subscribers}/r{rate}"),
            Kind::Idle {
                transport,
                connections,
            } => format!(
                "idle/{}/c{connections}",
                match transport {
                    Transport::Ws => "ws",
                    Transport::Sse => "sse",
                }
            ),
        };
        format!("{}/{kind}", self.peer.label())
    }

    fn transport(&self) -> Transport {
        match (self.peer, self.kind) {
            (_, Kind::Idle { transport, .. }) => transport,
            (Peer::Pulsebase, _) => Transport::Ws,
            (Peer::PocketBase, _) => Transport::Sse,
        }
    }
}

/// Fan-out at S = 0 (the write path alone), 100 and 1000 × R = 100 and
/// 1000; publish at 1000 subscribers; 10k idle connections. PocketBase has
/// no custom topics and no WebSocket, so it runs fan-out and idle SSE.
pub fn all_scenarios(peers: bool) -> Vec<Scenario> {
    let mut out = Vec::new();
    let fanouts = [(100, 100), (100, 1000), (1000, 100), (1000, 1000)];
    let pulsebase = |kind| Scenario {
        peer: Peer::Pulsebase,
        kind,
    };
    out.push(pulsebase(Kind::Fanout {
        subscribers: 0,
        rate: 1000,
    }));
    for (subscribers, rate) in fanouts {
        out.push(pulsebase(Kind::Fanout { subscribers, rate }));
    }
    for rate in [1000, 5000] {
        out.push(pulsebase(Kind::Publish {
            subscribers: 1000,
            rate,
        }));
    }
    for transport in [Transport::Ws, Transport::Sse] {
        out.push(pulsebase(Kind::Idle {
            transport,
            connections: 10_000,
        }));
    }
    if peers {
        let pocketbase = |kind| Scenario {
            peer: Peer::PocketBase,
            kind,
        };
        for (subscribers, rate) in fanouts {
            out.push(pocketbase(Kind::Fanout { subscribers, rate }));
        }
        out.push(pocketbase(Kind::Idle {
            transport: Transport::Sse,
            connections: 10_000,
        }));
    }
    out
}

/// What one fan-out or publish scenario measured.
pub struct Flow {
    pub subscribers: usize,
    pub rate: u32,
    pub writes_done: u64,
    pub writes_acked: u64,
    pub write_errors: u64,
    pub first_error: Option<String>,
    pub write_p50_us: u64,
    pub write_p99_us: u64,
    pub deliveries: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub missed: u64,
    pub duplicates: u64,
    pub closed: usize,
    pub close_reasons: Vec<String>,
    pub drain: Duration,
    pub events_per_read: f64,
}

pub struct Memory {
    pub connections: usize,
    pub opened: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

impl Memory {
    pub fn per_connection_kib(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 / self.opened.max(1) as f64
    }
}

pub enum Measured {
    Flow(Flow),
    Memory(Memory),
}

pub struct Outcome {
    pub scenario: Scenario,
    pub measured: Measured,
    pub duration: Duration,
    pub rss_kib: Option<u64>,
    pub cpu: CpuUse,
}

impl Outcome {
    pub fn other_cpu(&self) -> f64 {
        self.cpu.other_pct
    }
}

/// A server under test, signed in, with the collection (or topic) and the
/// subscriber accounts in place.
struct Stage {
    server: Server,
    addr: SocketAddr,
    /// Authorization header value for the writer.
    writer_auth: String,
    /// Tokens for the subscriber accounts.
    tokens: Vec<String>,
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let dir = procs::fresh_dir(data_root, &sc.name())?;
    let local = LocalSet::new();
    local.block_on(rt, async {
        let stage = match sc.peer {
            Peer::Pulsebase => {
                let server = procs::start_pulsebase(server_bin, dir, "sync", args.flush_ms, 1000)?;
                stage_pulsebase(server, sc).await?
            }
            Peer::PocketBase => {
                let Some(pb) = &args.pocketbase else {
                    bail!("PocketBase binary not available (pass --pocketbase)");
                };
                let server = procs::start_pocketbase(pb, dir)?;
                stage_pocketbase(server).await?
            }
        };
        match sc.kind {
            Kind::Idle { connections, .. } => idle(stage, sc, connections, hz).await,
            Kind::Fanout { subscribers, rate } | Kind::Publish { subscribers, rate } => {
                flow(stage, args, sc, subscribers, rate, hz).await
            }
        }
    })
}

async fn stage_pulsebase(server: Server, sc: Scenario) -> anyhow::Result<Stage> {
    let addr = server.addr;
    let admin = format!(
        "Bearer {}",
        load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?
    );
    // The view rule is checked per subscriber per event, in the hub.
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&admin),
        Some(json!({
            "name": "readings",
            "fields": {
                "device": {"type": "string", "required": true},
                "temp": {"type": "number"},
                "n": {"type": "integer"},
                "sent": {"type": "integer"}
            },
            "rules": {"create": "@user != null", "list": "@user != null", "view": "@user != null"}
        })),
    )
    .await?;
    if let Kind::Publish { .. } = sc.kind {
        load::request_ok(
            addr,
            Method::POST,
            "/api/topics",
            Some(&admin),
            Some(json!({"name": "bench", "history": 0,
                        "subscribe": "@user != null", "publish": "@user != null"})),
        )
        .await?;
    }
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("sub{i}@example.com");
        load::request_ok(
            addr,
            Method::POST,
            "/api/users",
            Some(&admin),
            Some(json!({"email": email, "password": USER_PASSWORD})),
        )
        .await?;
        tokens.push(load::pulsebase_token(addr, &email, USER_PASSWORD).await?);
    }
    Ok(Stage {
        server,
        addr,
        writer_auth: admin,
        tokens,
    })
}

async fn stage_pocketbase(server: Server) -> anyhow::Result<Stage> {
    let addr = server.addr;
    let admin = load::pocketbase_token(addr, "_superusers", ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let rule = "@request.auth.id != ''";
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&admin),
        Some(json!({
            "name": "readings",
            "type": "base",
            "fields": [
                {"name": "device", "type": "text", "required": true},
                {"name": "temp", "type": "number"},
                {"name": "n", "type": "number", "onlyInt": true},
                {"name": "sent", "type": "number", "onlyInt": true}
            ],
            "createRule": rule,
            "listRule": rule,
            "viewRule": rule
        })),
    )
    .await?;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("sub{i}@example.com");
        load::request_ok(
            addr,
            Method::POST,
            "/api/collections/users/records",
            Some(&admin),
            Some(json!({"email": email, "password": USER_PASSWORD, "passwordConfirm": USER_PASSWORD})),
        )
        .await?;
        tokens.push(load::pocketbase_token(addr, "users", &email, USER_PASSWORD).await?);
    }
    Ok(Stage {
        server,
        addr,
        writer_auth: admin,
        tokens,
    })
}

fn string_field(answer: &Value, key: &str) -> anyhow::Result<String> {
    Ok(answer[key]
        .as_str()
        .with_context(|| format!("answer has no {key}: {answer}"))?
        .to_owned())
}

/// One subscribed connection, either kind.
enum Client {
    Ws(Ws),
    Sse(Sse),
}

/// Opens subscriber `index` and subscribes it to `topic`. `poster` is a
/// keep-alive connection for PocketBase's subscribe POST.
async fn subscribe(
    stage_addr: SocketAddr,
    peer: Peer,
    transport: Transport,
    token: &str,
    topic: &str,
    buffer: usize,
    poster: &mut Option<SendRequest<Full<Bytes>>>,
) -> anyhow::Result<Client> {
    match (peer, transport) {
        (Peer::Pulsebase, Transport::Ws) => {
            let mut ws = Ws::connect(stage_addr, Some(token), buffer).await?;
            let welcome = ws.next_text().await?;
            anyhow::ensure!(
                contains(&welcome, br#""type":"welcome""#),
                "expected welcome, got {}",
                String::from_utf8_lossy(&welcome)
            );
            ws.send_text(&format!(
                r#"{{"id":"s","action":"subscribe","topic":"{topic}"}}"#
            ))
            .await?;
            loop {
                let reply = ws.next_text().await?;
                if contains(&reply, br#""type":"ok""#) {
                    return Ok(Client::Ws(ws));
                }
                if contains(&reply, br#""type":"error""#) {
                    bail!("subscribe refused: {}", String::from_utf8_lossy(&reply));
                }
            }
        }
        (Peer::Pulsebase, Transport::Sse) => {
            let sse = Sse::open(
                stage_addr,
                &format!("/api/realtime/sse?topic={topic}"),
                Some(&format!("Bearer {token}")),
            )
            .await?;
            Ok(Client::Sse(sse))
        }
        (Peer::PocketBase, Transport::Sse) => {
            let mut sse = Sse::open(stage_addr, "/api/realtime", None).await?;
            let connect = sse.next_event().await?;
            let text = String::from_utf8_lossy(&connect);
            let data = text
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .context("PB_CONNECT has no data")?;
            let client_id = string_field(&serde_json::from_str(data.trim())?, "clientId")?;
            let sender = match poster {
                Some(s) => s,
                None => poster.insert(load::connect(stage_addr).await?),
            };
            let body = json!({"clientId": client_id, "subscriptions": [format!("{topic}/*")]});
            let request = Request::post("/api/realtime")
                .header(HOST, stage_addr.to_string())
                .header(AUTHORIZATION, token)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let answer = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(
                status.is_success(),
                "PocketBase subscribe -> {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            Ok(Client::Sse(sse))
        }
        (Peer::PocketBase, Transport::Ws) => bail!("PocketBase has no WebSocket realtime"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Opens `count` subscribers, `SETUP_PARALLEL` at a time.
async fn open_subscribers(
    stage: &Stage,
    sc: Scenario,
    count: usize,
    topic: &str,
    buffer: usize,
) -> anyhow::Result<Vec<Client>> {
    let mut set = JoinSet::new();
    let lanes = SETUP_PARALLEL.min(count.max(1));
    for lane in 0..lanes {
        let addr = stage.addr;
        let tokens = stage.tokens.clone();
        let topic = topic.to_owned();
        set.spawn_local(async move {
            let mut poster = None;
            let mut mine = Vec::new();
            for index in (lane..count).step_by(lanes) {
                let token = &tokens[index % tokens.len()];
                let client = subscribe(
                    addr,
                    sc.peer,
                    sc.transport(),
                    token,
                    &topic,
                    buffer,
                    &mut poster,
                )
                .await
                .with_context(|| format!("subscriber {index}"))?;
                mine.push((index, client));
            }
            anyhow::Ok(mine)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(lane) = set.join_next().await {
        all.extend(lane??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, c)| c).collect())
}

async fn idle(
    mut stage: Stage,
    sc: Scenario,
    connections: usize,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let pid = stage.server.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = procs::rss_kib(pid).context("cannot read the server's RSS")?;
    let a = CpuSnapshot::take(pid);
    let started = Instant::now();
    let clients = open_subscribers(&stage, sc, connections, "readings", 2048).await?;
    // Let allocations settle (lazy buffers, the allocator's caches).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after_kib = procs::rss_kib(pid).context("cannot read the server's RSS")?;
    let b = CpuSnapshot::take(pid);
    let opened = clients.len();
    drop(clients);
    stage.server.stop();
    Ok(Outcome {
        scenario: sc,
        measured: Measured::Memory(Memory {
            connections,
            opened,
            rss_before_kib,
            rss_after_kib,
        }),
        duration: started.elapsed(),
        rss_kib: Some(rss_after_kib),
        cpu: procs::cpu_use(&a, &b, hz),
    })
}

/// Per-subscriber record of what arrived.
struct Inbox {
    bits: Vec<u64>,
    received: u64,
    duplicates: u64,
    closed: Option<String>,
}

struct Tally {
    epoch: Instant,
    measure_from_us: u64,
    end_us: u64,
    capacity: u64,
    acked: Vec<u64>,
    acked_count: u64,
    writes_done: u64,
    write_errors: u64,
    first_error: Option<String>,
    write_hist: Histogram<u64>,
    hist: Histogram<u64>,
    max_us: u64,
    deliveries: u64,
    /// Socket reads that brought events, and the events they brought: how
    /// many frames the server put into one write, roughly.
    reads: u64,
    events: u64,
    inboxes: Vec<Inbox>,
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

fn set_bit(bits: &mut [u64], n: u64) -> bool {
    let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    !was
}

impl Tally {
    /// Room for write indexes below `capacity`, for `subscribers` inboxes.
    fn new(
        epoch: Instant,
        measure_from_us: u64,
        end_us: u64,
        capacity: u64,
        subscribers: usize,
    ) -> Tally {
        let words = capacity.div_ceil(64) as usize;
        Tally {
            epoch,
            measure_from_us,
            end_us,
            capacity,
            acked: vec![0; words],
            acked_count: 0,
            writes_done: 0,
            write_errors: 0,
            first_error: None,
            write_hist: new_hist(),
            hist: new_hist(),
            max_us: 0,
            deliveries: 0,
            reads: 0,
            events: 0,
            inboxes: (0..subscribers)
                .map(|_| Inbox {
                    bits: vec![0; words],
                    received: 0,
                    duplicates: 0,
                    closed: None,
                })
                .collect(),
        }
    }

    fn since_epoch_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn arrived(&mut self, sub: usize, n: u64, sent_us: u64, now_us: u64) {
        if n >= self.capacity {
            return;
        }
        let inbox = &mut self.inboxes[sub];
        if set_bit(&mut inbox.bits, n) {
            inbox.received += 1;
        } else {
            inbox.duplicates += 1;
        }
        if now_us >= self.measure_from_us && now_us < self.end_us {
            let latency = now_us.saturating_sub(sent_us).max(1);
            self.hist.saturating_record(latency);
            self.max_us = self.max_us.max(latency);
            self.deliveries += 1;
        }
    }

    fn missed(&self) -> u64 {
        self.inboxes
            .iter()
            .map(|inbox| {
                self.acked
                    .iter()
                    .zip(&inbox.bits)
                    .map(|(a, b)| u64::from((a & !b).count_ones()))
                    .sum::<u64>()
            })
            .sum()
    }
}

async fn flow(
    mut stage: Stage,
    args: &Args,
    sc: Scenario,
    subscribers: usize,
    rate: u32,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let (topic, path) = match sc.kind {
        Kind::Publish { .. } => ("bench", "/api/topics/bench/messages"),
        _ => ("readings", "/api/collections/readings/records"),
    };
    let clients = open_subscribers(&stage, sc, subscribers, topic, 64 * 1024).await?;
    let pid = stage.server.pid();
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let epoch = Instant::now();
    let measure_from = epoch + warmup;
    let end = measure_from + duration;
    let capacity = (f64::from(rate) * (warmup + duration).as_secs_f64()).ceil() as u64 + 64;
    let tally = Rc::new(RefCell::new(Tally::new(
        epoch,
        warmup.as_micros() as u64,
        (warmup + duration).as_micros() as u64,
        capacity,
        subscribers,
    )));

    let finder = Rc::new(StampFinder::new());
    let mut readers = JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        readers.spawn_local(read_events(
            index,
            client,
            Rc::clone(&tally),
            Rc::clone(&finder),
        ));
    }

    let next = Rc::new(Cell::new(0u64));
    let mut writers = JoinSet::new();
    for _ in 0..WRITERS {
        let sender = load::connect(stage.addr).await?;
        writers.spawn_local(write_paced(
            sender,
            stage.addr,
            path,
            stage.writer_auth.clone(),
            matches!(sc.kind, Kind::Publish { .. }),
            rate,
            Rc::clone(&next),
            Rc::clone(&tally),
            end,
        ));
    }
    let sampler = tokio::task::spawn_local(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let a = CpuSnapshot::take(pid);
        tokio::time::sleep_until(end.into()).await;
        let b = CpuSnapshot::take(pid);
        (a, b, procs::rss_kib(pid))
    });
    while writers.join_next().await.is_some() {}
    let (a, b, rss_kib) = sampler.await?;

    // Wait for the events of the last writes.
    let drain_started = Instant::now();
    loop {
        let done = {
            let t = tally.borrow();
            t.inboxes
                .iter()
                .all(|i| i.closed.is_some() || i.received >= t.acked_count)
        };
        if done || drain_started.elapsed() > DRAIN_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = drain_started.elapsed();
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    stage.server.stop();

    let t = tally.borrow();
    let q = |h: &Histogram<u64>, q: f64, max: u64| h.value_at_quantile(q).min(max.max(1));
    let write_max = t.write_hist.max();
    let mut close_reasons: Vec<String> =
        t.inboxes.iter().filter_map(|i| i.closed.clone()).collect();
    let closed = close_reasons.len();
    close_reasons.sort();
    close_reasons.dedup();
    Ok(Outcome {
        scenario: sc,
        measured: Measured::Flow(Flow {
            subscribers,
            rate,
            writes_done: t.writes_done,
            writes_acked: t.acked_count,
            write_errors: t.write_errors,
            first_error: t.first_error.clone(),
            write_p50_us: q(&t.write_hist, 0.50, write_max),
            write_p99_us: q(&t.write_hist, 0.99, write_max),
            deliveries: t.deliveries,
            p50_us: q(&t.hist, 0.50, t.max_us),
            p99_us: q(&t.hist, 0.99, t.max_us),
            max_us: t.max_us,
            missed: t.missed(),
            duplicates: t.inboxes.iter().map(|i| i.duplicates).sum(),
            closed,
            close_reasons,
            drain,
            events_per_read: t.events as f64 / t.reads.max(1) as f64,
        }),
        duration,
        rss_kib,
        cpu: procs::cpu_use(&a, &b, hz),
    })
}

async fn read_events(
    index: usize,
    mut client: Client,
    tally: Rc<RefCell<Tally>>,
    finder: Rc<StampFinder>,
) {
    let closed = loop {
        let more = match &mut client {
            Client::Ws(ws) => ws.fill().await,
            Client::Sse(sse) => sse.fill().await,
        };
        match more {
            Ok(true) => {}
            Ok(false) => break "connection closed by the server".to_owned(),
            Err(e) => break format!("read failed: {e}"),
        }
        let walked = {
            let mut t = tally.borrow_mut();
            let now_us = t.since_epoch_us();
            let events_before = t.events;
            let mut arrive = |event: &[u8]| {
                if let Some(stamp) = finder.find(event) {
                    t.events += 1;
                    t.arrived(index, stamp.n, stamp.sent_us, now_us);
                }
            };
            let walked = match &mut client {
                Client::Ws(ws) => ws.drain(&mut arrive),
                Client::Sse(sse) => {
                    sse.drain(&mut arrive);
                    Ok(())
                }
            };
            if t.events > events_before {
                t.reads += 1;
            }
            walked
        };
        if let Err(e) = walked {
            break format!("bad frame: {e}");
        }
        if let Client::Ws(ws) = &mut client {
            if let Some((code, reason)) = &ws.closed {
                break format!("close {code} {reason}");
            }
            if ws.answer_pings().await.is_err() {
                break "cannot answer a ping".to_owned();
            }
        }
    };
    tally.borrow_mut().inboxes[index].closed = Some(closed);
}

#[allow(clippy::too_many_arguments)]
async fn write_paced(
    mut sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    path: &'static str,
    auth: String,
    publish: bool,
    rate: u32,
    next: Rc<Cell<u64>>,
    tally: Rc<RefCell<Tally>>,
    end: Instant,
) {
    let host = HeaderValue::from_str(&addr.to_string()).expect("address is a valid header");
    let auth = HeaderValue::from_str(&auth).expect("token is a valid header");
    let json = HeaderValue::from_static("application/json");
    let epoch = tally.borrow().epoch;
    loop {
        let n = next.get();
        next.set(n + 1);
        let due = epoch + Duration::from_secs_f64(n as f64 / f64::from(rate));
        // A server that fell behind does not get the rest of the schedule
        // after the window: the run ends on time either way.
        if due >= end || Instant::now() >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent_us = epoch.elapsed().as_micros() as u64;
        let body = if publish {
            format!(r#"{{"data":{{"n":{n},"sent":{sent_us}}}}}"#)
        } else {
            format!(
                r#"{{"device":"gw-{}","temp":21.5,"n":{n},"sent":{sent_us}}}"#,
                n % 16
            )
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, host.clone())
            .header(AUTHORIZATION, auth.clone())
            .header(CONTENT_TYPE, json.clone())
            .body(Full::new(Bytes::from(body)))
            .expect("valid request");
        let outcome = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(
                status.is_success(),
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
            anyhow::Ok(())
        }
        .await;
        let mut t = tally.borrow_mut();
        let done_us = t.since_epoch_us();
        match outcome {
            Ok(()) => {
                if n < t.capacity && set_bit(&mut t.acked, n) {
                    t.acked_count += 1;
                }
                if done_us >= t.measure_from_us && done_us < t.end_us {
                    t.writes_done += 1;
                    t.write_hist
                        .saturating_record(done_us.saturating_sub(sent_us).max(1));
                }
            }
            Err(e) => {
                t.write_errors += 1;
                if t.first_error.is_none() {
                    t.first_error = Some(format!("{e:#}"));
                }
                if sender.is_closed() {
                    break;
                }
            }
        }
    }
}

pub fn print_line(o: &Outcome) {
    match &o.measured {
        Measured::Flow(f) => eprintln!(
            "    writes {:>6.0}/s ({} acked in all)  deliveries {:>9.0}/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  missed {}  dup {}  closed {}  events/read {:.2}  drained in {:.1} s  write p99 {:.2} ms  cpu srv {:.0}% gen {:.0}% other {:.0}%",
            f.writes_done as f64 / o.duration.as_secs_f64(),
            f.writes_acked,
            f.deliveries as f64 / o.duration.as_secs_f64(),
            ms(f.p50_us),
            ms(f.p99_us),
            ms(f.max_us),
            f.missed,
            f.duplicates,
            f.closed,
            f.events_per_read,
            f.drain.as_secs_f64(),
            ms(f.write_p99_us),
            o.cpu.server_pct,
            o.cpu.bench_pct,
            o.cpu.other_pct,
        ),
        Measured::Memory(m) => eprintln!(
            "    {} of {} connections open; RSS {} -> {} = {:.1} KiB per connection",
            m.opened,
            m.connections,
            mib(m.rss_before_kib),
            mib(m.rss_after_kib),
            m.per_connection_kib()
        ),
    }
}

/// The run counts as failed when writes failed or events went missing for
/// subscribers the server did not close on purpose.
pub fn errors(o: &Outcome) -> u64 {
    match &o.measured {
        Measured::Flow(f) => f.write_errors,
        Measured::Memory(m) => (m.connections - m.opened) as u64,
    }
}

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let mut md = String::new();
    let flows: Vec<(&Outcome, &Flow)> = outcomes
        .iter()
        .filter_map(|o| match &o.measured {
            Measured::Flow(f) => Some((o, f)),
            Measured::Memory(_) => None,
        })
        .collect();
    let memories: Vec<(&Outcome, &Memory)> = outcomes
        .iter()
        .filter_map(|o| match &o.measured {
            Measured::Memory(m) => Some((o, m)),
            Measured::Flow(_) => None,
        })
        .collect();
    let mark = |o: &Outcome| {
        if o.other_cpu() > args.max_other {
            format!("{} †", o.scenario.name())
        } else {
            o.scenario.name()
        }
    };

    if !flows.is_empty() {
        let _ = writeln!(
            md,
            "### Fan-out\n\n\
             Each scenario: fresh server and data dir; S subscribers connected and subscribed \
             first (pulsebase: WebSocket, PocketBase: SSE; {USERS} user accounts shared by the \
             subscribers, every event checked against the view rule `@user != null` per \
             subscriber); then {WRITERS} keep-alive HTTP connections write at the offered \
             rate R, paced open-loop, for {} s warm-up + {} s measured. `fanout` writes single \
             records (`POST /api/collections/readings/records`, sync durability: the event \
             leaves after the fsync); `publish` posts messages to a custom topic with \
             `history: 0` (`POST /api/topics/bench/messages`). Latency is from the moment the \
             write was sent to the moment the event was read by the subscriber, on one clock. \
             Deliveries/s counts events read during the measured window. Missed = events of \
             acknowledged writes that a subscriber never received (after waiting up to {} s), \
             summed over subscribers; a subscriber the server closed counts its losses here \
             and under \"closed\".\n",
            args.warmup,
            args.duration,
            DRAIN_TIMEOUT.as_secs()
        );
        let _ = writeln!(
            md,
            "| scenario | S | R offered | writes/s done | write p50 ms | write p99 ms | deliveries/s | p50 ms | p99 ms | max ms | missed | duplicates | closed | server RSS | server CPU | generator CPU | other CPU |"
        );
        let _ = writeln!(
            md,
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for (o, f) in &flows {
            let secs = o.duration.as_secs_f64();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.0} % | {:.0} % | {:.0} % |",
                mark(o),
                f.subscribers,
                thousands(f64::from(f.rate)),
                thousands(f.writes_done as f64 / secs),
                ms(f.write_p50_us),
                ms(f.write_p99_us),
                thousands(f.deliveries as f64 / secs),
                ms(f.p50_us),
                ms(f.p99_us),
                ms(f.max_us),
                thousands(f.missed as f64),
                thousands(f.duplicates as f64),
                f.closed,
                o.rss_kib.map(mib).unwrap_or_else(|| "?".into()),
                o.cpu.server_pct,
                o.cpu.bench_pct,
                o.cpu.other_pct,
            );
        }
        let notes: Vec<String> = flows
            .iter()
            .filter(|(_, f)| f.closed > 0 || f.first_error.is_some())
            .map(|(o, f)| {
                let mut parts = Vec::new();
                if f.closed > 0 {
                    parts.push(format!("closed: {}", f.close_reasons.join("; ")));
                }
                if let Some(e) = &f.first_error {
                    parts.push(format!(
                        "{} write error(s), first: {}",
                        f.write_errors,
                        e.replace('`', "'")
                    ));
                }
                format!("- `{}`: {}", o.scenario.name(), parts.join("; "))
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\n{}", notes.join("\n"));
        }
    }

    if !memories.is_empty() {
        let _ = writeln!(
            md,
            "\n### Memory per idle connection\n\n\
             The server's RSS one second after setup, then again 3 s after N connections \
             were opened and subscribed to `readings` (pulsebase WebSocket: the `subscribe` \
             action; SSE: `?topic=readings`; PocketBase: SSE plus its subscribe POST). \
             Per connection = difference / connections opened.\n"
        );
        let _ = writeln!(
            md,
            "| scenario | connections opened | RSS before | RSS after | KiB per connection |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for (o, m) in &memories {
            let _ = writeln!(
                md,
                "| {} | {} of {} | {} | {} | {:.1} |",
                mark(o),
                thousands(m.opened as f64),
                thousands(m.connections as f64),
                mib(m.rss_before_kib),
                mib(m.rss_after_kib),
                m.per_connection_kib()
            );
        }
    }
    for (name, err) in failures {
        let _ = writeln!(md, "\n- `{name}` failed: {}", err.replace('`', "'"));
    }
    if outcomes.iter().any(|o| o.other_cpu() > args.max_other) {
        let _ = writeln!(
            md,
            "\n† disturbed: other processes used more than {:.0} % of a core during the window.",
            args.max_other
        );
    }
    ratios(&mut md, &flows, &memories);
    aims(&mut md, &flows, &memories);
    md
}

fn ratios(md: &mut String, flows: &[(&Outcome, &Flow)], memories: &[(&Outcome, &Memory)]) {
    let peer_flows: Vec<_> = flows
        .iter()
        .filter(|(o, _)| o.scenario.peer == Peer::PocketBase)
        .collect();
    let peer_memory: Vec<_> = memories
        .iter()
        .filter(|(o, _)| o.scenario.peer == Peer::PocketBase)
        .collect();
    if peer_flows.is_empty() && peer_memory.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### pulsebase vs PocketBase, same run\n");
    if !peer_flows.is_empty() {
        let _ = writeln!(
            md,
            "| workload | writes/s PB → pulsebase | ratio | deliveries/s PB → pulsebase | ratio | p99 ms PB → pulsebase | PB p99 / pulsebase p99 |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|");
        for (pb_o, pb) in peer_flows {
            let Some((o, f)) = flows.iter().find(|(o, f)| {
                o.scenario.peer == Peer::Pulsebase
                    && matches!(o.scenario.kind, Kind::Fanout { .. })
                    && f.subscribers == pb.subscribers
                    && f.rate == pb.rate
            }) else {
                continue;
            };
            let per_s = |o: &Outcome, x: u64| x as f64 / o.duration.as_secs_f64();
            let (pw, w) = (per_s(pb_o, pb.writes_done), per_s(o, f.writes_done));
            let (pd, d) = (per_s(pb_o, pb.deliveries), per_s(o, f.deliveries));
            let _ = writeln!(
                md,
                "| s{}/r{} | {} → {} | {:.1}× | {} → {} | {:.1}× | {:.2} → {:.2} | {:.1}× |",
                f.subscribers,
                f.rate,
                thousands(pw),
                thousands(w),
                w / pw.max(1e-9),
                thousands(pd),
                thousands(d),
                d / pd.max(1e-9),
                ms(pb.p99_us),
                ms(f.p99_us),
                pb.p99_us as f64 / f.p99_us.max(1) as f64,
            );
        }
    }
    for (_, pb) in peer_memory {
        for (o, m) in memories
            .iter()
            .filter(|(o, _)| o.scenario.peer == Peer::Pulsebase)
        {
            let _ = writeln!(
                md,
                "\nIdle memory: PocketBase SSE {:.1} KiB per connection vs {} {:.1} KiB: {:.1}× less.",
                pb.per_connection_kib(),
                o.scenario.name(),
                m.per_connection_kib(),
                pb.per_connection_kib() / m.per_connection_kib().max(1e-9)
            );
        }
    }
}

fn aims(md: &mut String, flows: &[(&Outcome, &Flow)], memories: &[(&Outcome, &Memory)]) {
    let ours = |kind: &dyn Fn(&Kind) -> bool| {
        flows
            .iter()
            .find(|(o, _)| o.scenario.peer == Peer::Pulsebase && kind(&o.scenario.kind))
    };
    let mut rows = Vec::new();
    if let Some((o, f)) = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 1000,
            rate: 1000,
        }
    }) {
        let d = f.deliveries as f64 / o.duration.as_secs_f64();
        rows.push(format!(
            "| ≥ 518,000 deliveries/s at 1000 subscribers × 1000 writes/s (2× TrailBase's 259k) | {} | {} |",
            thousands(d),
            yes(d >= 518_000.0)
        ));
        rows.push(format!(
            "| nothing lost at 1000 × 1000 (missed, duplicates) | {} missed, {} duplicates | {} |",
            thousands(f.missed as f64),
            thousands(f.duplicates as f64),
            yes(f.missed == 0 && f.duplicates == 0)
        ));
    }
    if let Some((_, f)) = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 100,
            rate: 1000,
        }
    }) {
        rows.push(format!(
            "| p99 ≤ 5 ms at 100 subscribers × 1000 writes/s | {:.2} ms | {} |",
            ms(f.p99_us),
            yes(f.p99_us <= 5_000)
        ));
    }
    let alone = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 0,
            rate: 1000,
        }
    });
    let loaded = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 1000,
            rate: 1000,
        }
    });
    if let (Some((ao, a)), Some((lo, l))) = (alone, loaded) {
        rows.push(format!(
            "| writes do not wait for fan-out: 1000 writes/s keep their schedule with 1000 subscribers (≥ 95 % of the rate without subscribers); write p50 with vs without | {} vs {} writes/s; p50 {:.2} vs {:.2} ms | {} |",
            thousands(l.writes_done as f64 / lo.duration.as_secs_f64()),
            thousands(a.writes_done as f64 / ao.duration.as_secs_f64()),
            ms(l.write_p50_us),
            ms(a.write_p50_us),
            yes(l.writes_done as f64 >= a.writes_done as f64 * 0.95)
        ));
    }
    for (_, m) in memories.iter().filter(|(o, _)| {
        o.scenario.peer == Peer::Pulsebase
            && matches!(
                o.scenario.kind,
                Kind::Idle {
                    transport: Transport::Ws,
                    ..
                }
            )
    }) {
        rows.push(format!(
            "| ≤ 8 KiB per idle WebSocket ({} connections) | {:.1} KiB | {} |",
            thousands(m.opened as f64),
            m.per_connection_kib(),
            yes(m.per_connection_kib() <= 8.0)
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Aims\n\n| aim | measured | met |\n|---|--:|:-:|");
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
}

fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_counts_acknowledged_writes_a_subscriber_lacks() {
        let mut tally = Tally::new(Instant::now(), 0, u64::MAX, 128, 2);
        for n in [1, 70, 100] {
            set_bit(&mut tally.acked, n);
        }
        tally.arrived(0, 1, 0, 10);
        tally.arrived(0, 70, 0, 10);
        tally.arrived(0, 70, 0, 10);
        tally.arrived(1, 100, 0, 10);
        // An event for a write never acknowledged is not a miss elsewhere.
        tally.arrived(1, 5, 0, 10);
        assert_eq!(tally.missed(), 1 + 2);
        assert_eq!(tally.inboxes[0].duplicates, 1);
        assert_eq!(tally.deliveries, 5);
    }
}
