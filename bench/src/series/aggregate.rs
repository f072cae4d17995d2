//! The aggregate scenario: 100 series over one day, then average and
//! maximum temperature in 1-minute buckets per device, from pulsebase's
//! `GET /aggregate` and from DuckDB over the same readings.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hyper::Method;

use super::data::{self, Readings, Shape, BASE_TS, DAY_MS};
use super::write_readings;
use crate::drop_report::quantile;
use crate::{load, procs, Args};

const DEVICES: u32 = 100;
/// Timed calls of each side (the median is reported).
const CALLS: usize = 5;

/// The equivalent query in DuckDB. The load is not timed; the result goes
/// into a table so the time is the query's, not Python's row conversion.
const DUCKDB_SCRIPT: &str = r#"
import json, statistics, sys, time
import duckdb
con = duckdb.connect()
con.execute(
    "CREATE TABLE r AS SELECT device, temp, epoch_ms(ts) AS ts FROM read_csv(?, header = false, "
    "columns = {'device': 'VARCHAR', 'site': 'VARCHAR', 'temp': 'DOUBLE', 'humidity': 'DOUBLE', 'ts': 'BIGINT'})",
    [sys.argv[1]],
)
q = ("CREATE OR REPLACE TABLE out AS SELECT time_bucket(INTERVAL '1 minute', ts) b, device, "
     "avg(temp), max(temp) FROM r GROUP BY b, device")
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    con.execute(q)
    times.append((time.perf_counter() - t) * 1000)
rows = con.execute("SELECT count(*) FROM out").fetchone()[0]
print(json.dumps({"times_ms": times, "rows": rows, "version": duckdb.__version__}))
"#;

/// One side's timing, or why it has none.
pub enum Side {
    Timed {
        median_ms: f64,
        max_ms: f64,
        /// Buckets × devices in the answer.
        rows: u64,
    },
    NotAvailable(String),
}

pub struct Aggregate {
    pub readings: u64,
    pub write_secs: f64,
    pub pulsebase: Side,
    pub duckdb: Side,
    pub duckdb_version: Option<String>,
}

impl Aggregate {
    /// pulsebase's median over DuckDB's, when both ran.
    pub fn ratio(&self) -> Option<f64> {
        match (&self.pulsebase, &self.duckdb) {
            (Side::Timed { median_ms: p, .. }, Side::Timed { median_ms: d, .. }) => {
                Some(p / d.max(1e-9))
            }
            _ => None,
        }
    }

    pub fn summary(&self) -> String {
        let side = |s: &Side| match s {
            Side::Timed {
                median_ms, rows, ..
            } => format!("{median_ms:.1} ms ({rows} rows)"),
            Side::NotAvailable(why) => format!("not available ({why})"),
        };
        format!(
            "{} readings: pulsebase {}, DuckDB {}{}",
            self.readings,
            side(&self.pulsebase),
            side(&self.duckdb),
            self.ratio()
                .map(|r| format!(", ratio {r:.2}×"))
                .unwrap_or_default()
        )
    }
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server_bin: &Path,
    data_root: &Path,
) -> anyhow::Result<Aggregate> {
    let readings = args.series.series_agg_readings;
    let dir = procs::fresh_dir(data_root, "series-aggregate")?;
    let mut server =
        procs::start_pulsebase(server_bin, dir.clone(), "sync", args.flush_ms, 10_000)?;
    let addr = server.addr;
    // The CSV sits next to the server's data dir and goes with it.
    let csv_path = dir.join("readings.csv");
    let mut csv = std::io::BufWriter::new(std::fs::File::create(&csv_path)?);
    let (write_secs, pulsebase) = rt.block_on(async {
        let token = super::create_series(addr).await?;
        let target = super::target(addr, &token, Shape::Json);
        let source = Readings::over_a_day(DEVICES, readings, 0xa66);
        let secs = write_readings(target, source, readings, Shape::Json, |batch| {
            Ok(csv.write_all(data::csv(batch).as_bytes())?)
        })
        .await?;
        let path = format!(
            "/api/collections/readings/aggregate?from={BASE_TS}&to={}&bucket=1m&agg=avg(temp),max(temp)&group=device",
            BASE_TS + DAY_MS
        );
        anyhow::Ok((secs, time_aggregate(addr, &format!("Bearer {token}"), &path).await?))
    })?;
    csv.flush()?;
    drop(csv);
    server.stop();
    let (duckdb, duckdb_version) = duckdb(&args.series.python, &csv_path);
    // The server's Drop removes the dir, the CSV with it.
    Ok(Aggregate {
        readings,
        write_secs,
        pulsebase,
        duckdb,
        duckdb_version,
    })
}

/// One untimed call (a 404 means this build has no aggregate), then
/// `CALLS` timed ones.
async fn time_aggregate(
    addr: std::net::SocketAddr,
    auth: &str,
    path: &str,
) -> anyhow::Result<Side> {
    let mut times = Vec::new();
    let mut rows = 0;
    for i in 0..=CALLS {
        let started = Instant::now();
        let (status, body) = load::request(addr, Method::GET, path, Some(auth), None).await?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        if status == 404 {
            return Ok(Side::NotAvailable(format!(
                "404: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )));
        }
        anyhow::ensure!(
            status == 200,
            "GET aggregate -> {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
        if i == 0 {
            rows = count_rows(&serde_json::from_slice(&body)?);
        } else {
            times.push(took);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(Side::Timed {
        median_ms: quantile(&times, 0.5),
        max_ms: times.last().copied().unwrap_or(f64::NAN),
        rows,
    })
}

/// Buckets in an aggregate answer, whichever way it nests them: the
/// objects that carry an `avg(temp)`-like value, counted anywhere.
fn count_rows(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Array(items) => items.iter().map(count_rows).sum(),
        serde_json::Value::Object(map) => {
            let here = map.keys().any(|k| k.starts_with("avg"));
            let below: u64 = map.values().map(count_rows).sum();
            if here && below == 0 {
                1
            } else {
                below
            }
        }
        _ => 0,
    }
}

/// Runs the DuckDB side if `python` can import duckdb.
fn duckdb(python: &Path, csv: &Path) -> (Side, Option<String>) {
    let available = Command::new(python)
        .args(["-c", "import duckdb"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !available {
        return (
            Side::NotAvailable(format!("{} cannot import duckdb", python.display())),
            None,
        );
    }
    let out = Command::new(python)
        .args(["-c", DUCKDB_SCRIPT])
        .arg(csv)
        .arg(CALLS.to_string())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("").to_owned();
            return (Side::NotAvailable(format!("DuckDB failed: {last}")), None);
        }
        Err(e) => return (Side::NotAvailable(format!("cannot run python: {e}")), None),
    };
    let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out.stdout);
    let Ok(v) = parsed else {
        return (Side::NotAvailable("DuckDB printed no result".into()), None);
    };
    let mut times: Vec<f64> = v["times_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_f64()).collect())
        .unwrap_or_default();
    times.sort_by(f64::total_cmp);
    (
        Side::Timed {
            median_ms: quantile(&times, 0.5),
            max_ms: times.last().copied().unwrap_or(f64::NAN),
            rows: v["rows"].as_u64().unwrap_or(0),
        },
        v["version"].as_str().map(str::to_owned),
    )
}
