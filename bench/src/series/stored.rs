//! What stored readings cost and how fast the newest come back: the data
//! dir's size after N readings (pulsebase and PocketBase), and
//! `GET /latest` over 10,000 series.

use std::path::Path;
use std::time::Instant;

use hyper::Method;

use super::data::{Readings, Shape};
use super::{write_readings, LATEST_ROUNDS};
use crate::drop_report::quantile;
use crate::{ingest, load, procs, Args};

/// Devices in the disk scenario (the same as the timed batches).
const DISK_DEVICES: u32 = 100;
/// `GET /latest` calls timed.
const LATEST_CALLS: usize = 20;

pub struct Disk {
    pub pocketbase: bool,
    pub readings: u64,
    /// Allocated bytes of the data dir after the server stopped.
    pub bytes: u64,
    /// Seconds the writes took (4 connections, batches of 1000).
    pub write_secs: f64,
}

impl Disk {
    pub fn per_reading(&self) -> f64 {
        self.bytes as f64 / self.readings.max(1) as f64
    }

    pub fn summary(&self) -> String {
        format!(
            "{} readings: {:.1} MB on disk, {:.1} bytes/reading (written in {:.1} s)",
            self.readings,
            self.bytes as f64 / 1e6,
            self.per_reading(),
            self.write_secs
        )
    }
}

/// Writes `--series-readings` readings in batches of 1000, stops the server
/// (pulsebase flushes, PocketBase checkpoints its WAL) and sizes the dir.
pub fn disk(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    pocketbase: bool,
) -> anyhow::Result<Disk> {
    let readings = args.series.series_readings;
    let label = if pocketbase {
        "pocketbase"
    } else {
        "pulsebase"
    };
    let dir = procs::fresh_dir(data_root, &format!("series-disk-{label}"))?;
    let (mut server, data) = if pocketbase {
        let pb = args.pocketbase.as_deref().ok_or_else(|| {
            anyhow::anyhow!("PocketBase binary not available (pass --pocketbase)")
        })?;
        (
            procs::start_pocketbase(pb, dir.clone())?,
            dir.join("pb_data"),
        )
    } else {
        let server =
            procs::start_pulsebase(server_bin, dir.clone(), "sync", args.flush_ms, 10_000)?;
        (server, dir.join("data"))
    };
    let addr = server.addr;
    let write_secs = rt.block_on(async {
        let (target, shape) = if pocketbase {
            let token = ingest::pocketbase_readings(addr).await?;
            let shape = Shape::PocketBase;
            let target = load::Target {
                addr,
                path: shape.path().into(),
                auth: token,
                content_type: shape.content_type(),
            };
            (target, shape)
        } else {
            let token = super::create_series(addr).await?;
            (super::target(addr, &token, Shape::Json), Shape::Json)
        };
        let source = Readings::over_a_day(DISK_DEVICES, readings, 0xd15c);
        write_readings(target, source, readings, shape, |_| Ok(())).await
    })?;
    server.stop();
    Ok(Disk {
        pocketbase,
        readings,
        bytes: procs::dir_bytes(&data),
        write_secs,
    })
}

pub struct Latest {
    pub devices: u32,
    pub readings: u64,
    /// Series in the answer (should equal `devices`).
    pub answered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes: usize,
}

impl Latest {
    pub fn summary(&self) -> String {
        format!(
            "latest over {} series ({} in the answer, {} KB): median {:.2} ms, p99 {:.2} ms",
            self.devices,
            self.answered,
            self.bytes / 1000,
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// Writes `LATEST_ROUNDS` readings for each of `devices` series, then times
/// `GET /api/collections/readings/latest` as the admin, one call at a
/// time, each on a fresh loopback connection (connecting adds well under
/// a tenth of a millisecond; the time includes reading the whole answer).
pub fn latest(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    devices: u32,
) -> anyhow::Result<Latest> {
    let dir = procs::fresh_dir(data_root, "series-latest")?;
    let mut server = procs::start_pulsebase(server_bin, dir, "sync", args.flush_ms, 10_000)?;
    let addr = server.addr;
    let readings = u64::from(devices) * LATEST_ROUNDS;
    let out = rt.block_on(async {
        let token = super::create_series(addr).await?;
        let source = Readings::new(devices, 60_000, 0x1a7e57);
        let target = super::target(addr, &token, Shape::Json);
        write_readings(target, source, readings, Shape::Json, |_| Ok(())).await?;
        let auth = format!("Bearer {token}");
        let mut times = Vec::with_capacity(LATEST_CALLS);
        let mut answered = 0;
        let mut bytes = 0;
        // One call before timing, so the first timed one is not the first.
        for i in 0..=LATEST_CALLS {
            let started = Instant::now();
            let (status, body) = load::request(
                addr,
                Method::GET,
                "/api/collections/readings/latest",
                Some(&auth),
                None,
            )
            .await?;
            let took = started.elapsed().as_secs_f64() * 1000.0;
            anyhow::ensure!(
                status == 200,
                "GET latest -> {status}: {}",
                String::from_utf8_lossy(&body)
            );
            if i == 0 {
                let v: serde_json::Value = serde_json::from_slice(&body)?;
                answered = v["items"].as_array().or(v.as_array()).map_or(0, Vec::len);
                bytes = body.len();
            } else {
                times.push(took);
            }
        }
        times.sort_by(f64::total_cmp);
        anyhow::Ok(Latest {
            devices,
            readings,
            answered,
            p50_ms: quantile(&times, 0.5),
            p99_ms: quantile(&times, 0.99),
            bytes,
        })
    });
    server.stop();
    out
}
