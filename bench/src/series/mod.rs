//! The series suite (`--suite series`): ingest into a series collection in
//! three shapes, the same batches into a records collection and PocketBase,
//! peak memory with a small cache, disk per reading, `latest` over 10,000
//! series, an aggregate against DuckDB, and fan-out while ingesting.
//!
//! The timed ingest reuses the ingest suite's closed loop and /proc
//! sampling (`ingest::measure`); the fan-out reuses the realtime suite's
//! subscribers and exact tally. This module holds the scenario list and
//! the run loop; `throughput.rs` the ingest scenarios, `stored.rs` disk and
//! `latest`, `aggregate.rs` the aggregate and DuckDB, `report.rs` the
//! RESULTS.md section with the aims.

use std::path::{Path, PathBuf};

use hyper::Method;
use serde_json::json;

use crate::procs::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::{ingest, load, realtime, Args};

mod aggregate;
mod data;
mod report;
mod stored;
mod throughput;

use data::Shape;

/// Options of the series suite.
#[derive(clap::Args, Debug, Clone)]
pub struct SeriesArgs {
    /// series suite: readings written before the data dir is measured (the
    /// disk aim is stated for 10,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub series_readings: u64,
    /// series suite: readings (100 series over one day) the aggregate runs
    /// over (the aim is stated for 10,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    pub series_agg_readings: u64,
    /// series suite: the Python that has DuckDB, for the aggregate
    /// comparison (run.sh installs one into target/duckdb).
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
    /// series suite: WebSocket subscribers in the fan-out scenario.
    #[arg(long, default_value_t = 1000)]
    pub fanout_subscribers: usize,
    /// series suite: readings per second written during the fan-out.
    #[arg(long, default_value_t = 10_000)]
    pub fanout_rate: u32,
}

/// Where the timed batches go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    Series,
    /// The ingest suite's records collection: the path before series.
    Records,
    PocketBase,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Ingest {
        sink: Sink,
        shape: Shape,
        per_request: usize,
        clients: usize,
        /// `PULSEBASE_CACHE_MB` for the server, when set.
        cache_mb: Option<u32>,
    },
    Disk {
        pocketbase: bool,
    },
    Latest {
        devices: u32,
    },
    Aggregate,
    Fanout {
        subscribers: usize,
        rate: u32,
        routed: bool,
    },
}

/// The cache setting the memory scenario runs with.
pub const SMALL_CACHE_MB: u32 = 8;
/// Series in the `latest` scenario, and readings written per series.
const LATEST_DEVICES: u32 = 10_000;
const LATEST_ROUNDS: u64 = 10;

impl Scenario {
    pub fn name(&self) -> String {
        match *self {
            Scenario::Ingest {
                sink,
                shape,
                per_request,
                clients,
                cache_mb,
            } => {
                let prefix = match (sink, cache_mb) {
                    (Sink::Series, Some(mb)) => format!("memory/cache{mb}"),
                    (Sink::Series, None) => "ingest".into(),
                    (Sink::Records, _) => "records".into(),
                    (Sink::PocketBase, _) => "pocketbase".into(),
                };
                format!("{prefix}/{}{per_request}/c{clients}", shape.label())
            }
            Scenario::Disk { pocketbase } => {
                format!(
                    "disk/{}",
                    if pocketbase {
                        "pocketbase"
                    } else {
                        "pulsebase"
                    }
                )
            }
            Scenario::Latest { devices } => format!("latest/d{devices}"),
            Scenario::Aggregate => "aggregate".into(),
            Scenario::Fanout {
                subscribers,
                rate,
                routed,
            } => {
                let by = if routed { "-by-device" } else { "" };
                format!("fanout{by}/s{subscribers}/r{rate}")
            }
        }
    }
}

pub fn all_scenarios(args: &Args) -> Vec<Scenario> {
    let series = |shape, per_request, clients| Scenario::Ingest {
        sink: Sink::Series,
        shape,
        per_request,
        clients,
        cache_mb: None,
    };
    let mut out = vec![
        series(Shape::Json, 1000, 4),
        series(Shape::Json, 1000, 8),
        series(Shape::Json, 1000, 16),
        series(Shape::Json, 100, 16),
        series(Shape::Ndjson, 1000, 8),
        series(Shape::Line, 1000, 8),
        Scenario::Ingest {
            sink: Sink::Records,
            shape: Shape::Json,
            per_request: 1000,
            clients: 8,
            cache_mb: None,
        },
    ];
    if args.peers {
        out.push(Scenario::Ingest {
            sink: Sink::PocketBase,
            shape: Shape::PocketBase,
            per_request: 1000,
            clients: 8,
            cache_mb: None,
        });
    }
    // The memory aim holds at the ingest aim's rate with 4 to 16 clients:
    // the fewest that reach it, and the default 8.
    for clients in [4, 8] {
        out.push(Scenario::Ingest {
            sink: Sink::Series,
            shape: Shape::Json,
            per_request: 1000,
            clients,
            cache_mb: Some(SMALL_CACHE_MB),
        });
    }
    out.push(Scenario::Disk { pocketbase: false });
    if args.peers {
        out.push(Scenario::Disk { pocketbase: true });
    }
    out.push(Scenario::Latest {
        devices: LATEST_DEVICES,
    });
    out.push(Scenario::Aggregate);
    for routed in [false, true] {
        out.push(Scenario::Fanout {
            subscribers: args.series.fanout_subscribers,
            rate: args.series.fanout_rate,
            routed,
        });
    }
    out
}

/// What a scenario measured.
pub enum Outcome {
    Ingest(Scenario, ingest::Outcome),
    Disk(stored::Disk),
    Latest(stored::Latest),
    Aggregate(aggregate::Aggregate),
    Fanout(realtime::Outcome),
}

impl Outcome {
    /// CPU of other processes during the timed part (only the ingest and
    /// fan-out scenarios sample it; the others are not retried).
    fn other_cpu(&self) -> f64 {
        match self {
            Outcome::Ingest(_, o) => o.cpu.other_pct,
            Outcome::Fanout(o) => o.other_cpu(),
            _ => 0.0,
        }
    }

    fn errors(&self) -> u64 {
        match self {
            Outcome::Ingest(_, o) => o.errors,
            Outcome::Fanout(o) => realtime::errors(o),
            _ => 0,
        }
    }
}

fn print_line(o: &Outcome) {
    match o {
        Outcome::Ingest(_, o) => ingest::print_line(o),
        Outcome::Fanout(o) => realtime::print_line(o),
        Outcome::Disk(d) => eprintln!("    {}", d.summary()),
        Outcome::Latest(l) => eprintln!("    {}", l.summary()),
        Outcome::Aggregate(a) => eprintln!("    {}", a.summary()),
    }
}

pub fn suite(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    (server_bin, data_root, hz): (&Path, &Path, u64),
    chosen: &[bool],
    announce: &mut impl FnMut(&str),
    failures: &mut Vec<(String, String)>,
) -> (String, u64) {
    let mut outcomes = Vec::new();
    for (sc, _) in all_scenarios(args)
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| **c)
    {
        announce(&sc.name());
        let attempt = || -> anyhow::Result<Outcome> {
            Ok(match sc {
                Scenario::Ingest { .. } => Outcome::Ingest(
                    sc,
                    throughput::run(rt, args, server_bin, data_root, sc, hz)?,
                ),
                Scenario::Disk { pocketbase } => {
                    Outcome::Disk(stored::disk(rt, args, server_bin, data_root, pocketbase)?)
                }
                Scenario::Latest { devices } => {
                    Outcome::Latest(stored::latest(rt, args, server_bin, data_root, devices)?)
                }
                Scenario::Aggregate => {
                    Outcome::Aggregate(aggregate::run(rt, args, server_bin, data_root)?)
                }
                Scenario::Fanout {
                    subscribers,
                    rate,
                    routed,
                } => {
                    let sc = realtime::Scenario {
                        peer: realtime::Peer::Pulsebase,
                        kind: realtime::Kind::SeriesFanout {
                            subscribers,
                            rate,
                            routed,
                        },
                    };
                    Outcome::Fanout(realtime::run(rt, args, server_bin, data_root, sc, hz)?)
                }
            })
        };
        match crate::with_retries(
            args,
            attempt,
            Outcome::other_cpu,
            Outcome::errors,
            print_line,
        ) {
            Ok((o, _)) => outcomes.push(o),
            Err(e) => failures.push((sc.name(), e)),
        }
    }
    let errors = outcomes.iter().map(Outcome::errors).sum();
    (report::markdown(args, &outcomes, failures), errors)
}

/// Signs in as the admin and creates the `readings` series collection;
/// returns the admin token (without a scheme: the JSON routes take it as
/// `Bearer`, line protocol as `Token`).
async fn create_series(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let token = load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&format!("Bearer {token}")),
        Some(json!({
            "name": "readings",
            "kind": "series",
            "series": "device",
            "time": "ts",
            "fields": {
                "device": {"type": "string", "required": true},
                "site": {"type": "string"},
                "temp": {"type": "number"},
                "humidity": {"type": "number"},
                "ts": {"type": "datetime"}
            },
            "rules": {
                "list": "@user != null",
                "view": "@user != null",
                "create": "@user != null"
            }
        })),
    )
    .await?;
    Ok(token)
}

/// The load target for a shape: line protocol authenticates InfluxDB's way.
fn target(addr: std::net::SocketAddr, token: &str, shape: Shape) -> load::Target {
    let scheme = if shape == Shape::Line {
        "Token"
    } else {
        "Bearer"
    };
    load::Target {
        addr,
        path: shape.path().into(),
        auth: format!("{scheme} {token}"),
        content_type: shape.content_type(),
    }
}

/// Writes `total` readings from `readings` in batches of 1000 over a few
/// connections, `CHUNK` batches at a time so 10 million readings never sit
/// in memory at once; hands each chunk's readings to `also` (the DuckDB
/// CSV). Returns the seconds it took.
async fn write_readings(
    target: load::Target,
    mut readings: data::Readings,
    total: u64,
    shape: Shape,
    mut also: impl FnMut(&[data::Reading]) -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    const BATCH: u64 = 1000;
    const CHUNK: u64 = 200;
    let target = std::sync::Arc::new(target);
    let started = std::time::Instant::now();
    let mut left = total;
    while left > 0 {
        let mut bodies = Vec::new();
        while left > 0 && (bodies.len() as u64) < CHUNK {
            let n = left.min(BATCH);
            let batch = readings.take(n as usize);
            also(&batch)?;
            bodies.push(shape.body(&batch));
            left -= n;
        }
        load::send_all(std::sync::Arc::clone(&target), bodies.into(), 4).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}
