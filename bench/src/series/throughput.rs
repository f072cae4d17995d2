//! Timed ingest: batches into a series collection (JSON array, NDJSON, line
//! protocol; optionally with a small cache), into the ingest suite's
//! records collection, and into PocketBase. All of them run the ingest
//! suite's closed loop and /proc sampling, in sync durability.

use std::path::Path;

use super::data::Readings;
use super::{Scenario, Sink};
use crate::ingest::{self, System};
use crate::{procs, Args};

/// Devices in the timed batches, and the time between one device's readings.
const DEVICES: u32 = 100;
const STEP_MS: i64 = 1000;

pub fn run(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<ingest::Outcome> {
    let Scenario::Ingest {
        sink,
        shape,
        per_request,
        clients,
        cache_mb,
    } = sc
    else {
        anyhow::bail!("{} is not an ingest scenario", sc.name());
    };
    let mut isc = ingest::Scenario {
        system: System::Sync,
        per_request,
        clients,
    };
    match sink {
        // The same code the ingest suite runs, so the two suites agree.
        Sink::Records => ingest::run_pulsebase(rt, args, server_bin, data_root, isc, hz),
        Sink::PocketBase => {
            isc.system = System::PocketBase;
            let pb = args.pocketbase.as_deref().ok_or_else(|| {
                anyhow::anyhow!("PocketBase binary not available (pass --pocketbase)")
            })?;
            ingest::run_pocketbase(rt, args, pb, data_root, isc, hz)
        }
        Sink::Series => {
            let dir = procs::fresh_dir(data_root, &format!("series-{}", sc.name()))?;
            let cache = cache_mb.map(|mb| mb.to_string());
            let env: Vec<(&str, &str)> = cache
                .as_deref()
                .map(|mb| ("PULSEBASE_CACHE_MB", mb))
                .into_iter()
                .collect();
            let max_batch = per_request.max(10_000);
            let mut server = procs::start_pulsebase_env(
                server_bin,
                dir,
                "sync",
                args.flush_ms,
                max_batch,
                &env,
            )?;
            let token = rt.block_on(super::create_series(server.addr))?;
            let target = super::target(server.addr, &token, shape);
            // Enough distinct bodies that clients rarely send the same one
            // at once; the readings repeat across the pool's cycles, which
            // a series store takes like any late reading.
            let pool = (clients * 2).max(8);
            let mut readings = Readings::new(DEVICES, STEP_MS, 0x5e71e5 ^ clients as u64);
            let bodies = (0..pool)
                .map(|_| shape.body(&readings.take(per_request)))
                .collect();
            ingest::measure(rt, args, &mut server, target, bodies, isc, hz)
        }
    }
}
