//! The drop benchmark: write latency while a large collection is dropped.
//!
//! Each run starts a fresh server (sync durability), loads `big` with
//! `--records` records in arrays of 10,000, creates `small`, and writes
//! single records to `small` open-loop at `--rate` per second over
//! `--writers` keep-alive connections that share one schedule (write `n` is
//! due at `n / rate`). After the warm-up and `--baseline` seconds it sends
//! `DELETE /api/collections/big` and keeps writing until the purge is over.
//!
//! Every write is kept as a sample (due, sent, answered, ok) and the windows
//! are cut afterwards by due time. Latency is measured from the due time, so
//! a write that had to wait for a free connection behind a stalled one
//! counts its wait (no coordinated omission); the time from sending is kept
//! as "service time".
//!
//! When is the purge over? The old server purges inside the DELETE, so its
//! answer marks the end. A server that purges in chunks answers first and
//! purges afterwards, on its writer thread; the end is then read from that
//! thread's CPU time (/proc, sampled every 200 ms): the last interval after
//! the DELETE in which it was busier than max(3 × its baseline, 20 %). The
//! drop window runs from the DELETE to the later of the two. The report in
//! `drop_report.rs` also gives a fixed window (`--drop-window` seconds after
//! the DELETE) that does not depend on this estimate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{json, Value};

use crate::procs::{self, CpuSnapshot, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::reindex::Job;
use crate::{load, Args};

pub use crate::drop_report::{markdown, print_line};

/// Records per load request (the server's default `max_batch`).
const LOAD_BATCH: u64 = 10_000;
/// Load requests in flight: one is being committed while the next arrives.
const LOAD_CONNECTIONS: usize = 2;
/// How often the writer thread's CPU time is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// A purge counts as over once the writer thread has been quiet this long.
const QUIET_AFTER_PURGE: Duration = Duration::from_secs(3);
/// A write not answered within this is counted as failed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// The writer thread's name as /proc shows it (comm is cut at 15 bytes).
const WRITER_THREAD: &str = "pulsebase-write";

/// Options of the drop suite (`--suite drop`).
#[derive(clap::Args, Debug, Clone)]
pub struct DropArgs {
    /// drop suite: records loaded into `big` before it is dropped.
    #[arg(long, default_value_t = 1_000_000)]
    pub records: u64,
    /// drop suite: single creates per second to `small`, paced open-loop.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// drop suite: keep-alive connections sharing the write schedule.
    #[arg(long, default_value_t = 6)]
    pub writers: usize,
    /// drop suite: seconds of writes measured before the DELETE (after --warmup).
    #[arg(long, default_value_t = 5.0)]
    pub baseline: f64,
    /// drop suite: seconds to keep writing after the DELETE; longer while
    /// the purge still runs, up to --max-after.
    #[arg(long, default_value_t = 20.0)]
    pub after: f64,
    /// drop suite: upper bound on the writing after the DELETE, seconds.
    #[arg(long, default_value_t = 90.0)]
    pub max_after: f64,
    /// drop suite: length of the fixed window after the DELETE, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drop_window: f64,
    /// drop suite: runs per binary (alternating before, after, before, ...).
    #[arg(long, default_value_t = 2)]
    pub runs: usize,
    /// drop suite: a second pulsebase binary, measured as "before" and
    /// compared with --server ("after").
    #[arg(long)]
    pub before: Option<PathBuf>,
    /// drop suite: how the report names the --before binary (e.g. its commit).
    #[arg(long, default_value = "before")]
    pub before_label: String,
    /// drop suite: how the report names the --server binary (e.g. its commit).
    #[arg(long, default_value = "after")]
    pub server_label: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Before,
    After,
}

#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub binary: Binary,
    pub run: usize,
}

impl Scenario {
    pub fn name(&self) -> String {
        let which = match self.binary {
            Binary::Before => "before",
            Binary::After => "after",
        };
        format!("{which}/run{}", self.run)
    }
}

/// Runs alternate between the binaries: before/run1, after/run1, before/run2, …
pub fn all_scenarios(d: &DropArgs) -> Vec<Scenario> {
    let mut out = Vec::new();
    for run in 1..=d.runs {
        if d.before.is_some() {
            out.push(Scenario {
                binary: Binary::Before,
                run,
            });
        }
        out.push(Scenario {
            binary: Binary::After,
            run,
        });
    }
    out
}

/// One write to `small`; times in µs since the writers' epoch.
#[derive(Clone, Copy)]
pub struct Sample {
    pub due_us: u64,
    pub sent_us: u64,
    pub done_us: u64,
    pub ok: bool,
}

pub struct Outcome {
    pub scenario: Scenario,
    pub loaded: u64,
    pub load_secs: f64,
    pub samples: Vec<Sample>,
    pub first_error: Option<String>,
    /// Window edges, µs since the writers' epoch.
    pub measure_from_us: u64,
    pub delete_sent_us: u64,
    pub delete_done_us: u64,
    pub delete_result: String,
    /// Last sampled interval in which the writer thread was busy (µs).
    pub busy_end_us: Option<u64>,
    pub purge_end_us: u64,
    /// The purge still looked busy when --max-after ran out.
    pub purge_unfinished: bool,
    pub stop_us: u64,
    pub writer_base_pct: f64,
    /// (µs since epoch at the end of the interval, writer thread % of a core)
    pub writer_cpu: Vec<(u64, f64)>,
    pub cpu_baseline: procs::CpuUse,
    pub cpu_drop: procs::CpuUse,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub big_after: Value,
    pub rss_kib: Option<u64>,
}

impl Outcome {
    pub fn other_cpu(&self) -> f64 {
        self.cpu_baseline.other_pct.max(self.cpu_drop.other_pct)
    }

    pub fn failed(&self) -> u64 {
        self.samples.iter().filter(|s| !s.ok).count() as u64
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The head of `top -bn1` to the log: who else was using the machine.
pub(crate) fn log_top(when: &str) {
    let text = std::process::Command::new("top")
        .arg("-bn1")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("(top failed: {e})"));
    eprintln!("    top {when}:");
    for line in text.lines().take(15) {
        eprintln!("      {line}");
    }
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
    job: Job,
) -> anyhow::Result<Outcome> {
    let d = &args.drop;
    let binary = match sc.binary {
        Binary::Before => d.before.as_deref().context("no --before binary")?,
        Binary::After => server_bin,
    };
    log_top("before the run");
    let loadavg_start = loadavg();
    let dir = procs::fresh_dir(data_root, &format!("{}-{}", job.name(), sc.name()))?;
    let mut server = procs::start_pulsebase(binary, dir, "sync", args.flush_ms, 10_000)?;
    let addr = server.addr;
    let pid = server.pid();
    let mut out = rt.block_on(async {
        let auth = format!(
            "Bearer {}",
            load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?
        );
        create_collection(addr, &auth, "big").await?;
        let started = Instant::now();
        load_big(addr, &auth, d.records).await?;
        let load_secs = started.elapsed().as_secs_f64();
        let loaded = records_of(addr, &auth, "big").await?;
        anyhow::ensure!(
            loaded == d.records,
            "loaded {} records into big, the server counts {loaded}",
            d.records
        );
        eprintln!(
            "    loaded {} records in {load_secs:.1} s ({:.0} records/s)",
            d.records,
            d.records as f64 / load_secs
        );
        create_collection(addr, &auth, "small").await?;
        let mut out = write_and_drop(addr, &auth, args, pid, hz, job).await?;
        out.loaded = d.records;
        out.load_secs = load_secs;
        out.big_after = records_of(addr, &auth, "big").await?;
        anyhow::Ok(out)
    })?;
    out.scenario = sc;
    out.loadavg_start = loadavg_start;
    out.rss_kib = procs::rss_kib(pid);
    server.stop();
    out.loadavg_end = loadavg();
    log_top("after the run");
    Ok(out)
}

pub(crate) async fn create_collection(
    addr: SocketAddr,
    auth: &str,
    name: &str,
) -> anyhow::Result<()> {
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(auth),
        Some(json!({
            "name": name,
            "fields": {
                "device": {"type": "string", "required": true},
                "temp": {"type": "number"},
                "humidity": {"type": "number"},
                "seq": {"type": "integer"},
                "ts": {"type": "integer"}
            }
        })),
    )
    .await?;
    Ok(())
}

/// `records.<name>` of `GET /api/stats` (null once the collection is gone).
pub(crate) async fn records_of(addr: SocketAddr, auth: &str, name: &str) -> anyhow::Result<Value> {
    let stats = load::request_ok(addr, Method::GET, "/api/stats", Some(auth), None).await?;
    Ok(stats["records"][name].clone())
}

/// One reading of 74–80 bytes of JSON (79 on average over a million).
fn reading(seq: u64) -> String {
    format!(
        r#"{{"device":"gw-{:03}","temp":{}.{},"humidity":{}.{},"seq":{seq},"ts":{}}}"#,
        seq % 500,
        15 + seq % 15,
        seq % 10,
        30 + seq % 40,
        seq % 7,
        1_732_262_400_000 + seq
    )
}

/// Loads `big` in arrays of LOAD_BATCH, LOAD_CONNECTIONS requests at a time.
pub(crate) async fn load_big(addr: SocketAddr, auth: &str, records: u64) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..LOAD_CONNECTIONS {
        let mut sender = load::connect(addr).await?;
        let next = Arc::clone(&next);
        let auth = HeaderValue::from_str(auth)?;
        tasks.push(tokio::spawn(async move {
            loop {
                let from = next.fetch_add(LOAD_BATCH, Ordering::Relaxed);
                if from >= records {
                    return anyhow::Ok(());
                }
                let to = (from + LOAD_BATCH).min(records);
                let mut body = String::with_capacity((to - from) as usize * 90);
                body.push('[');
                for seq in from..to {
                    if seq > from {
                        body.push(',');
                    }
                    body.push_str(&reading(seq));
                }
                body.push(']');
                let request = post(addr, "/api/collections/big/records", &auth, body);
                let (status, answer) = load::send(&mut sender, request).await?;
                anyhow::ensure!(
                    status.is_success(),
                    "loading big: HTTP {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                );
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

fn post(addr: SocketAddr, path: &str, auth: &HeaderValue, body: String) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(
            HOST,
            HeaderValue::from_str(&addr.to_string()).expect("address is a valid header"),
        )
        .header(AUTHORIZATION, auth.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(Bytes::from(body)))
        .expect("valid request")
}

/// What one writer connection hands back.
pub(crate) struct Written {
    pub(crate) samples: Vec<Sample>,
    pub(crate) first_error: Option<String>,
}

/// One connection of the shared open-loop schedule; reconnects after a
/// transport error or a timeout.
pub(crate) async fn write_paced(
    addr: SocketAddr,
    auth: HeaderValue,
    rate: u32,
    epoch: Instant,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Written {
    let mut out = Written {
        samples: Vec::new(),
        first_error: None,
    };
    let us = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    let mut sender = load::connect(addr).await.ok();
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let due = epoch + Duration::from_secs_f64(n as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let sent = Instant::now();
        let result = match sender.as_mut() {
            Some(s) => {
                let request = post(addr, "/api/collections/small/records", &auth, reading(n));
                match tokio::time::timeout(WRITE_TIMEOUT, load::send(s, request)).await {
                    Ok(Ok((status, _))) if status.is_success() => Ok(()),
                    Ok(Ok((status, body))) => Err((
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                        false,
                    )),
                    Ok(Err(e)) => Err((format!("{e:#}"), true)),
                    Err(_) => Err((format!("no answer in {WRITE_TIMEOUT:?}"), true)),
                }
            }
            None => Err(("not connected".to_owned(), true)),
        };
        let done = Instant::now();
        out.samples.push(Sample {
            due_us: us(due),
            sent_us: us(sent),
            done_us: us(done),
            ok: result.is_ok(),
        });
        if let Err((e, reconnect)) = result {
            out.first_error.get_or_insert(e);
            if reconnect {
                sender = load::connect(addr).await.ok();
            }
        }
    }
    out
}

/// Writer-thread CPU ticks of the server.
fn writer_ticks(snap: &CpuSnapshot) -> u64 {
    snap.threads
        .iter()
        .filter(|(_, name, _)| name.starts_with(WRITER_THREAD))
        .map(|(_, _, ticks)| ticks)
        .sum()
}

/// The write schedule around the DELETE; see the module comment.
async fn write_and_drop(
    addr: SocketAddr,
    auth: &str,
    args: &Args,
    pid: u32,
    hz: u64,
    job: Job,
) -> anyhow::Result<Outcome> {
    let d = &args.drop;
    let secs = Duration::from_secs_f64;
    let epoch = Instant::now() + Duration::from_millis(200);
    let us = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..d.writers.max(1))
        .map(|_| {
            tokio::spawn(write_paced(
                addr,
                HeaderValue::from_str(auth).expect("token is a valid header"),
                d.rate.max(1),
                epoch,
                Arc::clone(&next),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let measure_from = epoch + secs(args.warmup);
    let delete_at = measure_from + secs(d.baseline);
    let mut snaps: Vec<(Instant, CpuSnapshot)> = Vec::new();
    let mut writer_cpu: Vec<(u64, f64)> = Vec::new();
    let mut tick = tokio::time::interval_at(epoch.into(), SAMPLE_EVERY);
    let mut delete: Option<(Instant, tokio::task::JoinHandle<(Instant, String)>)> = None;
    let mut delete_done: Option<(Instant, String)> = None;
    let (mut threshold, mut base_pct) = (f64::INFINITY, 0.0);
    let mut busy_end: Option<Instant> = None;
    let mut cpu_at_delete = None;
    let mut unfinished = false;
    let stop_at = loop {
        tick.tick().await;
        let now = Instant::now();
        let snap = CpuSnapshot::take(pid);
        if let Some((at, prev)) = snaps.last() {
            let dt = (now - *at).as_secs_f64().max(1e-3);
            let ticks = writer_ticks(&snap).saturating_sub(writer_ticks(prev));
            writer_cpu.push((us(now), ticks as f64 / hz as f64 / dt * 100.0));
        }
        snaps.push((now, snap));
        if delete.is_none() && now >= delete_at {
            // The baseline level of the writer thread sets the "busy" line.
            let base: Vec<f64> = writer_cpu
                .iter()
                .filter(|(t, _)| *t > us(measure_from))
                .map(|(_, p)| *p)
                .collect();
            base_pct = base.iter().sum::<f64>() / base.len().max(1) as f64;
            threshold = (3.0 * base_pct).max(20.0);
            cpu_at_delete = snaps.last().cloned();
            let auth = auth.to_owned();
            let (method, body) = job.request();
            let handle = tokio::spawn(async move {
                let r =
                    load::request(addr, method, "/api/collections/big", Some(&auth), body).await;
                let text = match r {
                    Ok((status, body)) if body.is_empty() => status.to_string(),
                    Ok((status, body)) => format!("{status}: {}", String::from_utf8_lossy(&body)),
                    Err(e) => format!("failed: {e:#}"),
                };
                (Instant::now(), text)
            });
            delete = Some((Instant::now(), handle));
        }
        let Some((delete_sent, handle)) = delete.as_mut() else {
            continue;
        };
        if writer_cpu.last().is_some_and(|(_, p)| *p > threshold) {
            busy_end = Some(now);
        }
        if delete_done.is_none() && handle.is_finished() {
            delete_done = Some(handle.await?);
        }
        let since_delete = now - *delete_sent;
        if since_delete >= secs(d.max_after) {
            unfinished =
                delete_done.is_none() || busy_end.is_some_and(|b| now - b < QUIET_AFTER_PURGE);
            break now;
        }
        if let Some((done, _)) = &delete_done {
            let last_busy = busy_end.map_or(*done, |b| b.max(*done));
            if since_delete >= secs(d.after) && now - last_busy >= QUIET_AFTER_PURGE {
                break now;
            }
        }
    };
    stop.store(true, Ordering::Relaxed);
    let delete_sent = delete.map_or(delete_at, |(sent, _)| sent);
    let mut samples = Vec::new();
    let mut first_error = None;
    for w in writers {
        let w = w.await?;
        samples.extend(w.samples);
        first_error = first_error.or(w.first_error);
    }
    samples.sort_by_key(|s| s.due_us);
    let (delete_done_at, delete_result) = match delete_done {
        Some(done) => done,
        None => (stop_at, "no answer before the run ended".to_owned()),
    };
    let purge_end = busy_end.map_or(delete_done_at, |b| b.max(delete_done_at));
    // CPU over the baseline and over the drop window, from the nearest samples.
    let near = |t: Instant| {
        snaps
            .iter()
            .min_by_key(|(at, _)| if *at > t { *at - t } else { t - *at })
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    };
    let at_delete = cpu_at_delete.map(|(_, s)| s).unwrap_or_default();
    let cpu_baseline = procs::cpu_use(&near(measure_from), &at_delete, hz);
    let cpu_drop = procs::cpu_use(&at_delete, &near(purge_end), hz);
    Ok(Outcome {
        scenario: Scenario {
            binary: Binary::After,
            run: 0,
        },
        loaded: 0,
        load_secs: 0.0,
        samples,
        first_error,
        measure_from_us: us(measure_from),
        delete_sent_us: us(delete_sent),
        delete_done_us: us(delete_done_at),
        delete_result,
        busy_end_us: busy_end.map(us),
        purge_end_us: us(purge_end),
        purge_unfinished: unfinished,
        stop_us: us(stop_at),
        writer_base_pct: base_pct,
        writer_cpu,
        cpu_baseline,
        cpu_drop,
        loadavg_start: String::new(),
        loadavg_end: String::new(),
        big_after: Value::Null,
        rss_kib: None,
    })
}
