//! The realtime benchmark: fan-out of record changes to many subscribers,
//! custom-topic publish fan-out (paced, at the highest rate delivered
//! without loss, and in one burst), and memory per idle connection, against
//! pulsebase (WebSocket, and SSE for memory), PocketBase (SSE), and NATS and
//! Redis pub/sub (their own protocols over TCP).
//!
//! Every write carries its index `n` and the generator's clock `sent` (µs);
//! every subscriber keeps a bitset of the `n` it received, so missed and
//! duplicate events are counted exactly, and latency is arrival − sent on
//! one clock. Writes are paced open-loop at the offered rate by a few
//! keep-alive HTTP connections; a server that cannot keep up shows as fewer
//! writes done, not as a slower schedule.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::task::LocalSet;

use crate::procs::{self, CpuUse, Server};
use crate::Args;

mod broker_wire;
mod brokers;
mod flow;
mod publish_one;
mod report;
mod report_brokers;
mod rush;
mod stage;
mod writers;

use flow::*;
pub use report::{errors, markdown, print_line};
use stage::*;

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
    Nats,
    Redis,
}

impl Peer {
    fn label(self) -> &'static str {
        match self {
            Peer::Pulsebase => "pulsebase",
            Peer::PocketBase => "pocketbase",
            Peer::Nats => "nats",
            Peer::Redis => "redis",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws,
    Sse,
    /// A broker's own protocol on a plain TCP connection (NATS, Redis).
    Tcp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Record creates at `rate`/s, each an event for every subscriber.
    Fanout { subscribers: usize, rate: u32 },
    /// The same, with pulsebase's subscribers on SSE
    /// (`/api/realtime/sse`) instead of WebSocket.
    SseFanout { subscribers: usize, rate: u32 },
    /// Custom-topic messages at `rate`/s (`history: 0`). For NATS and
    /// Redis, `Fanout` and `Publish` both publish to one subject/channel.
    Publish { subscribers: usize, rate: u32 },
    /// The highest custom-topic rate delivered without loss: one publisher
    /// keeps `rush::WINDOW` messages in flight until every subscriber has
    /// read them.
    PublishMax { subscribers: usize },
    /// One publisher sends `messages` as fast as it can write them.
    Burst { subscribers: usize, messages: u32 },
    /// One WebSocket connection publishing to a `history: 0` topic as fast
    /// as it is answered, `window` publishes in flight, no subscriber.
    PublishOne { window: usize },
    /// Fan-out of readings written to a series collection (run by the
    /// series suite, not listed here). `routed`: each subscriber filters
    /// to one source (`device = "gw-K"`), as a dashboard of one device
    /// does, instead of taking every reading.
    SeriesFanout {
        subscribers: usize,
        rate: u32,
        routed: bool,
    },
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
            Kind::SseFanout { subscribers, rate } => {
                format!("sse-fanout/s{subscribers}/r{rate}")
            }
            Kind::Publish { subscribers, rate } => format!("publish/s{subscribers}/r{rate}"),
            Kind::PublishMax { subscribers } => format!("publish/s{subscribers}/max"),
            Kind::Burst {
                subscribers,
                messages,
            } => format!("burst/s{subscribers}/n{messages}"),
            Kind::PublishOne { window } => format!("publish-one/w{window}"),
            Kind::SeriesFanout {
                subscribers,
                rate,
                routed,
            } => {
                let by = if routed { "-by-device" } else { "" };
                format!("series-fanout{by}/s{subscribers}/r{rate}")
            }
            Kind::Idle {
                transport,
                connections,
            } => format!(
                "idle/{}/c{connections}",
                match transport {
                    Transport::Ws => "ws",
                    Transport::Sse => "sse",
                    Transport::Tcp => "tcp",
                }
            ),
        };
        format!("{}/{kind}", self.peer.label())
    }

    fn transport(&self) -> Transport {
        match (self.peer, self.kind) {
            (_, Kind::Idle { transport, .. }) => transport,
            (_, Kind::SseFanout { .. }) => Transport::Sse,
            (Peer::Pulsebase, _) => Transport::Ws,
            (Peer::PocketBase, _) => Transport::Sse,
            (Peer::Nats | Peer::Redis, _) => Transport::Tcp,
        }
    }
}

/// Twice the 1000 × 1000 fan-out's rate: at 1000 × 1000 exactly a million
/// deliveries a second are offered, so whether a server can go past a
/// million shows only above it.
pub(crate) const HEADROOM: Kind = Kind::Fanout {
    subscribers: 1000,
    rate: 2000,
};

/// Fan-out at S = 0 (the write path alone), 100 and 1000 × R = 100 and
/// 1000, 1000 × 2000 ([`HEADROOM`]) and 1000 × 1000 on SSE; publish at 100 and 1000
/// subscribers, at the highest lossless rate and in a burst; 10k idle
/// connections. PocketBase has no custom topics and no WebSocket, so it
/// runs fan-out and idle SSE; NATS and Redis run the publish workloads,
/// the 1000 × 1000 and 1000 × 2000 fan-outs as publishes, and idle.
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
    out.push(pulsebase(HEADROOM));
    out.push(pulsebase(Kind::SseFanout {
        subscribers: 1000,
        rate: 1000,
    }));
    for rate in [1000, 5000] {
        out.push(pulsebase(Kind::Publish {
            subscribers: 1000,
            rate,
        }));
    }
    let brokered = [
        Kind::PublishMax { subscribers: 100 },
        Kind::Publish {
            subscribers: 100,
            rate: 1000,
        },
        Kind::Burst {
            subscribers: 100,
            messages: 2000,
        },
    ];
    out.extend(brokered.map(pulsebase));
    for window in [1, 64] {
        out.push(pulsebase(Kind::PublishOne { window }));
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
        for peer in [Peer::Nats, Peer::Redis] {
            let fanout = Kind::Fanout {
                subscribers: 1000,
                rate: 1000,
            };
            let idle = Kind::Idle {
                transport: Transport::Tcp,
                connections: 10_000,
            };
            for kind in brokered.into_iter().chain([fanout, HEADROOM, idle]) {
                out.push(Scenario { peer, kind });
            }
        }
    }
    out
}

/// Where the broker peers come from (run.sh fetches NATS into target/nats).
#[derive(clap::Args, Debug, Clone)]
pub struct BrokerArgs {
    /// realtime suite with --peers: the `nats-server` binary.
    #[arg(long, default_value = "target/nats/nats-server")]
    pub nats: PathBuf,
    /// realtime suite with --peers: the `redis-server` binary.
    #[arg(long, default_value = "/usr/bin/redis-server")]
    pub redis: PathBuf,
}

/// A 64-byte JSON message carrying its index and send time, padded with a
/// string so every peer carries the same bytes.
pub(crate) fn payload64(n: u64, sent_us: u64) -> Vec<u8> {
    let mut out = format!(r#"{{"n":{n},"sent":{sent_us},"p":""#).into_bytes();
    let pad = 64usize.saturating_sub(out.len() + 2);
    out.extend(std::iter::repeat_n(b'x', pad));
    out.extend_from_slice(b"\"}");
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
                // Every subscriber comes from 127.0.0.1: the per-address cap
                // (1000) would refuse the idle scenario's 10,000.
                let caps = [
                    ("PULSEBASE_MAX_CONNECTIONS", "1000000"),
                    ("PULSEBASE_MAX_CONNECTIONS_PER_IP", "1000000"),
                ];
                let server = procs::start_pulsebase_env(
                    server_bin,
                    dir,
                    "sync",
                    args.flush_ms,
                    1000,
                    &caps,
                )?;
                stage_pulsebase(server, sc).await?
            }
            Peer::PocketBase => {
                let Some(pb) = &args.pocketbase else {
                    bail!("PocketBase binary not available (pass --pocketbase)");
                };
                let server = procs::start_pocketbase(pb, dir)?;
                stage_pocketbase(server).await?
            }
            Peer::Nats => stage_broker(brokers::start_nats(&args.brokers.nats, dir)?),
            Peer::Redis => stage_broker(brokers::start_redis(&args.brokers.redis, dir)?),
        };
        match sc.kind {
            Kind::Idle { connections, .. } => idle(stage, sc, connections, hz).await,
            Kind::PublishOne { window } => {
                publish_one::publish_one(stage, args, sc, window, hz).await
            }
            Kind::PublishMax { subscribers } => {
                rush::rush(stage, args, sc, subscribers, None, hz).await
            }
            Kind::Burst {
                subscribers,
                messages,
            } => rush::rush(stage, args, sc, subscribers, Some(messages), hz).await,
            Kind::Fanout { subscribers, rate }
            | Kind::SseFanout { subscribers, rate }
            | Kind::Publish { subscribers, rate }
            | Kind::SeriesFanout {
                subscribers, rate, ..
            } => flow(stage, args, sc, subscribers, rate, hz).await,
        }
    })
}
