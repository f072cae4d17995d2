//! The backup benchmark: write latency while `GET /api/backup` runs.
//!
//! The same shape as the drop suite (`drop.rs`), whose options it takes:
//! each run starts a fresh server (sync durability), loads `big` with
//! `--records` records, creates `small`, and writes single records to
//! `small` open-loop at `--rate` per second over `--writers` connections.
//! After the warm-up and `--baseline` seconds it downloads a backup (the
//! whole body, as `pulsebase backup --url` does) and keeps writing for
//! `--after` seconds once the download is complete.
//!
//! Windows, by due time: baseline (before the request; a write due before
//! it but answered after it was sent counts in the backup window: it was
//! in flight when the backup arrived), backup (request sent → body
//! received) and after.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hyper::header::HeaderValue;
use hyper::Method;

use crate::drop::{self, Binary, Sample, Scenario};
use crate::drop_report::{figures, Figures};
use crate::procs::{self, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::{load, ms, Args};

pub struct Outcome {
    pub scenario: Scenario,
    pub loaded: u64,
    pub samples: Vec<Sample>,
    pub first_error: Option<String>,
    pub measure_from_us: u64,
    pub backup_sent_us: u64,
    pub backup_done_us: u64,
    pub backup_result: String,
    pub backup_bytes: usize,
    pub stop_us: u64,
    pub other_cpu_pct: f64,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

impl Outcome {
    pub fn other_cpu(&self) -> f64 {
        self.other_cpu_pct
    }

    pub fn failed(&self) -> u64 {
        self.samples.iter().filter(|s| !s.ok).count() as u64
    }

    fn windows(&self) -> [Figures; 3] {
        let (from, sent, done) = (
            self.measure_from_us,
            self.backup_sent_us,
            self.backup_done_us,
        );
        [
            figures(&self.samples, |s| {
                s.due_us >= from && s.due_us < sent && s.done_us <= sent
            }),
            figures(&self.samples, |s| {
                (s.due_us >= sent && s.due_us < done)
                    || (s.due_us >= from && s.due_us < sent && s.done_us > sent)
            }),
            figures(&self.samples, |s| {
                s.due_us >= done && s.due_us < self.stop_us
            }),
        ]
    }
}

/// Every chosen run of the suite: the Markdown and the failed writes;
/// runs that could not run go to `failures`.
pub fn suite(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    (server_bin, data_root, hz): (&Path, &Path, u64),
    chosen: &[bool],
    announce: &mut impl FnMut(&str),
    failures: &mut Vec<(String, String)>,
) -> (String, u64) {
    let mut outcomes = Vec::new();
    for (sc, _) in drop::all_scenarios(&args.drop)
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| **c)
    {
        announce(&sc.name());
        let attempt = || run(rt, args, server_bin, data_root, sc, hz);
        match crate::with_retries(args, attempt, Outcome::other_cpu, Outcome::failed, |o| {
            print_line(o, args)
        }) {
            Ok((o, _)) => outcomes.push(o),
            Err(e) => failures.push((sc.name(), e)),
        }
    }
    let errors = outcomes.iter().map(Outcome::failed).sum();
    (markdown(args, &outcomes, failures), errors)
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let d = &args.drop;
    let binary = match sc.binary {
        Binary::Before => d.before.as_deref().context("no --before binary")?,
        Binary::After => server_bin,
    };
    drop::log_top("before the run");
    let loadavg_start = drop::loadavg();
    let dir = procs::fresh_dir(data_root, &format!("backup-{}", sc.name()))?;
    let mut server = procs::start_pulsebase(binary, dir, "sync", args.flush_ms, 10_000)?;
    let (addr, pid) = (server.addr, server.pid());
    let mut out = rt.block_on(async {
        let auth = format!(
            "Bearer {}",
            load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?
        );
        drop::create_collection(addr, &auth, "big").await?;
        let started = Instant::now();
        drop::load_big(addr, &auth, d.records).await?;
        let loaded = drop::records_of(addr, &auth, "big").await?;
        anyhow::ensure!(
            loaded == d.records,
            "loaded {} records into big, the server counts {loaded}",
            d.records
        );
        eprintln!(
            "    loaded {} records in {:.1} s",
            d.records,
            started.elapsed().as_secs_f64()
        );
        drop::create_collection(addr, &auth, "small").await?;
        write_and_back_up(addr, &auth, args, pid, hz).await
    })?;
    out.scenario = sc;
    out.loaded = d.records;
    out.loadavg_start = loadavg_start;
    server.stop();
    out.loadavg_end = drop::loadavg();
    drop::log_top("after the run");
    Ok(out)
}

async fn write_and_back_up(
    addr: SocketAddr,
    auth: &str,
    args: &Args,
    pid: u32,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let d = &args.drop;
    let epoch = Instant::now() + Duration::from_millis(200);
    let us = |t: Instant| t.saturating_duration_since(epoch).as_micros() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..d.writers.max(1))
        .map(|_| {
            tokio::spawn(drop::write_paced(
                addr,
                HeaderValue::from_str(auth).expect("token is a valid header"),
                d.rate.max(1),
                epoch,
                Arc::clone(&next),
                Arc::clone(&stop),
            ))
        })
        .collect();
    let measure_from = epoch + Duration::from_secs_f64(args.warmup);
    tokio::time::sleep_until((measure_from + Duration::from_secs_f64(d.baseline)).into()).await;
    let cpu_start = procs::CpuSnapshot::take(pid);
    let sent = Instant::now();
    let (backup_result, backup_bytes) =
        match load::request(addr, Method::GET, "/api/backup", Some(auth), None).await {
            Ok((status, body)) => (status.to_string(), body.len()),
            Err(e) => (format!("failed: {e:#}"), 0),
        };
    let done = Instant::now();
    let cpu_end = procs::CpuSnapshot::take(pid);
    eprintln!(
        "    backup: {backup_result}, {:.1} MB in {:.1} s",
        backup_bytes as f64 / 1e6,
        (done - sent).as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs_f64(d.after)).await;
    let stop_at = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut first_error = None;
    for w in writers {
        let w = w.await?;
        samples.extend(w.samples);
        first_error = first_error.or(w.first_error);
    }
    samples.sort_by_key(|s| s.due_us);
    Ok(Outcome {
        scenario: Scenario {
            binary: Binary::After,
            run: 0,
        },
        loaded: 0,
        samples,
        first_error,
        measure_from_us: us(measure_from),
        backup_sent_us: us(sent),
        backup_done_us: us(done),
        backup_result,
        backup_bytes,
        stop_us: us(stop_at),
        other_cpu_pct: procs::cpu_use(&cpu_start, &cpu_end, hz).other_pct,
        loadavg_start: String::new(),
        loadavg_end: String::new(),
    })
}

fn three(f: &Figures) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} (n {}, failed {})",
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us),
        f.writes,
        f.failed
    )
}

fn label(args: &Args, binary: Binary) -> &str {
    match binary {
        Binary::Before => &args.drop.before_label,
        Binary::After => &args.drop.server_label,
    }
}

pub fn print_line(o: &Outcome, args: &Args) {
    let [base, during, after] = o.windows();
    eprintln!(
        "    {} ({}): backup {:.1} s; write latency ms p50/p99/max: baseline {}, backup {}, after {}",
        o.scenario.name(),
        label(args, o.scenario.binary),
        (o.backup_done_us - o.backup_sent_us) as f64 / 1e6,
        three(&base),
        three(&during),
        three(&after)
    );
}

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let d = &args.drop;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Writes: {} per second to `small`, open loop over {} connections, sync durability; latency from the due time. `big`: {} records. Backup: one `GET /api/backup` after {} s of baseline, body read whole; writing goes on {} s after it.\n",
        d.rate, d.writers, d.records, d.baseline, d.after
    );
    md.push_str("| run | server | backup (s) | size (MB) | baseline p50 / p99 / max ms | during the backup p50 / p99 / max ms | after | other CPU % | load avg start → end |\n");
    md.push_str("|---|---|--:|--:|---|---|---|--:|---|\n");
    for o in outcomes {
        let [base, during, after] = o.windows();
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.0} | {} | {} | {} | {:.0} | {} → {} |",
            o.scenario.name(),
            label(args, o.scenario.binary),
            (o.backup_done_us - o.backup_sent_us) as f64 / 1e6,
            o.backup_bytes as f64 / 1e6,
            three(&base),
            three(&during),
            three(&after),
            o.other_cpu_pct,
            o.loadavg_start,
            o.loadavg_end
        );
        if o.backup_result != "200" {
            let _ = writeln!(
                md,
                "\n{}: the backup answered {}\n",
                o.scenario.name(),
                o.backup_result
            );
        }
        if let Some(e) = &o.first_error {
            let _ = writeln!(md, "\n{}: first failed write: {e}\n", o.scenario.name());
        }
    }
    for (name, e) in failures {
        let _ = writeln!(md, "\n{name}: failed: {e}");
    }
    md
}
