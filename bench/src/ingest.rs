//! The ingest suite: write throughput of pulsebase and PocketBase per
//! batch shape and client count, and its RESULTS.md section with the aims.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum System {
    Sync,
    Relaxed,
    PocketBase,
}

impl System {
    pub(crate) fn label(self) -> &'static str {
        match self {
            System::Sync => "sync",
            System::Relaxed => "relaxed",
            System::PocketBase => "pocketbase",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Scenario {
    pub(crate) system: System,
    pub(crate) per_request: usize,
    pub(crate) clients: usize,
}

impl Scenario {
    pub(crate) fn kind(&self) -> String {
        if self.per_request == 1 {
            "single".into()
        } else {
            format!("batch{}", self.per_request)
        }
    }

    pub(crate) fn name(&self) -> String {
        format!("{}/{}/c{}", self.system.label(), self.kind(), self.clients)
    }
}

/// Single creates at 1, 16, 64 clients; arrays of 100 and 1000 records at
/// 4 and 16 clients; for each system.
pub(crate) fn all_scenarios(peers: bool) -> Vec<Scenario> {
    let mut systems = vec![System::Sync, System::Relaxed];
    if peers {
        systems.push(System::PocketBase);
    }
    let shapes: [(usize, &[usize]); 3] = [(1, &[1, 16, 64]), (100, &[4, 16]), (1000, &[4, 16])];
    let mut out = Vec::new();
    for system in systems {
        for (per_request, clients) in shapes {
            for &clients in clients {
                out.push(Scenario {
                    system,
                    per_request,
                    clients,
                });
            }
        }
    }
    out
}

pub(crate) struct Outcome {
    pub(crate) scenario: Scenario,
    pub(crate) requests: u64,
    pub(crate) measured: Duration,
    pub(crate) p50_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) rss_kib: Option<u64>,
    /// The server's highest RSS since it started (VmHWM), at the end.
    pub(crate) peak_rss_kib: Option<u64>,
    pub(crate) cpu: CpuUse,
    pub(crate) stop_time: Duration,
    pub(crate) exit: String,
    pub(crate) attempts: usize,
}

impl Outcome {
    pub(crate) fn req_per_s(&self) -> f64 {
        self.requests as f64 / self.measured.as_secs_f64()
    }

    pub(crate) fn records_per_s(&self) -> f64 {
        self.req_per_s() * self.scenario.per_request as f64
    }
}

pub(crate) fn print_line(o: &Outcome) {
    eprintln!(
        "    {:>9.0} req/s {:>10.0} rec/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  errors {}  rss {}  cpu srv {:.0}% gen {:.0}% other {:.0}% idle {:.0}% iowait {:.0}%",
        o.req_per_s(),
        o.records_per_s(),
        ms(o.p50_us),
        ms(o.p99_us),
        ms(o.max_us),
        o.errors,
        o.rss_kib.map(mib).unwrap_or_else(|| "?".into()),
        o.cpu.server_pct,
        o.cpu.bench_pct,
        o.cpu.other_pct,
        o.cpu.idle_pct,
        o.cpu.iowait_pct,
    );
    if let Some(e) = &o.first_error {
        eprintln!("    first error: {e}");
    }
}

pub(crate) fn run_pulsebase(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    binary: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let dir = procs::fresh_dir(data_root, &sc.name())?;
    let durability = sc.system.label();
    let max_batch = sc.per_request.max(10_000);
    let mut server = procs::start_pulsebase(binary, dir, durability, args.flush_ms, max_batch)?;
    let addr = server.addr;
    let token = rt.block_on(async {
        let token = load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        let auth = format!("Bearer {token}");
        load::request_ok(
            addr,
            Method::POST,
            "/api/collections",
            Some(&auth),
            Some(json!({
                "name": "readings",
                "fields": {
                    "device": {"type": "string", "required": true},
                    "temp": {"type": "number"},
                    "humidity": {"type": "number"},
                    "ts": {"type": "integer"}
                },
                "rules": {
                    "create": "@user != null",
                    "list": "@user != null",
                    "view": "@user != null"
                }
            })),
        )
        .await?;
        anyhow::Ok(auth)
    })?;
    let target = load::Target {
        addr,
        path: "/api/collections/readings/records".into(),
        auth: token,
        content_type: "application/json",
    };
    let bodies = payload::bodies(
        sc.per_request,
        (sc.clients * 2).max(8),
        BatchShape::JsonArray,
        0x5eed ^ sc.clients as u64,
    );
    measure(rt, args, &mut server, target, bodies, sc, hz)
}

pub(crate) fn run_pocketbase(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    binary: &Path,
    data_root: &Path,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let dir = procs::fresh_dir(data_root, &sc.name())?;
    let mut server = procs::start_pocketbase(binary, dir)?;
    let addr: SocketAddr = server.addr;
    let token = rt.block_on(pocketbase_readings(addr))?;
    let (path, shape) = if sc.per_request == 1 {
        ("/api/collections/readings/records", BatchShape::JsonArray)
    } else {
        ("/api/batch", BatchShape::PocketBase)
    };
    let target = load::Target {
        addr,
        path: path.into(),
        auth: token,
        content_type: "application/json",
    };
    let bodies = payload::bodies(
        sc.per_request,
        (sc.clients * 2).max(8),
        shape,
        0x5eed ^ sc.clients as u64,
    );
    measure(rt, args, &mut server, target, bodies, sc, hz)
}

/// Signs in to a fresh PocketBase as the superuser, enables batches of up
/// to 1000 requests and creates `readings` with the fields of a reading
/// (`site` is used only by the series suite); returns the token.
pub(crate) async fn pocketbase_readings(addr: SocketAddr) -> anyhow::Result<String> {
    let token = load::pocketbase_token(addr, "_superusers", ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    // The batch API is off by default and capped at 50 requests.
    load::request_ok(
        addr,
        Method::PATCH,
        "/api/settings",
        Some(&token),
        Some(json!({
            "batch": {"enabled": true, "maxRequests": 1000, "timeout": 60, "maxBodySize": 0}
        })),
    )
    .await?;
    let rule = "@request.auth.id != ''";
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&token),
        Some(json!({
            "name": "readings",
            "type": "base",
            "fields": [
                {"name": "device", "type": "text", "required": true},
                {"name": "site", "type": "text"},
                {"name": "temp", "type": "number"},
                {"name": "humidity", "type": "number"},
                {"name": "ts", "type": "number", "onlyInt": true}
            ],
            "createRule": rule,
            "listRule": rule,
            "viewRule": rule
        })),
    )
    .await?;
    Ok(token)
}

pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    server: &mut Server,
    target: load::Target,
    bodies: Vec<bytes::Bytes>,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let pid = server.pid();
    let (result, cpu, (rss_kib, peak_rss_kib)) = rt.block_on(async {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(args.warmup);
        let window = load::Window {
            measure_from,
            end: measure_from + Duration::from_secs_f64(args.duration),
        };
        let sampler = tokio::spawn(async move {
            tokio::time::sleep_until(window.measure_from.into()).await;
            let a = CpuSnapshot::take(pid);
            tokio::time::sleep_until(window.end.into()).await;
            let b = CpuSnapshot::take(pid);
            (a, b, (procs::rss_kib(pid), procs::peak_rss_kib(pid)))
        });
        let result = load::run(Arc::new(target), Arc::new(bodies), sc.clients, window).await?;
        let (a, b, rss) = sampler.await?;
        anyhow::Ok((result, procs::cpu_use(&a, &b, hz), rss))
    })?;
    let stop_time = server.stop();
    Ok(Outcome {
        scenario: sc,
        requests: result.requests,
        measured: result.measured,
        // The histogram reports a bucket's upper edge: never above the exact max.
        p50_us: result.hist.value_at_quantile(0.50).min(result.max_us),
        p99_us: result.hist.value_at_quantile(0.99).min(result.max_us),
        max_us: result.max_us,
        errors: result.errors,
        first_error: result.first_error,
        rss_kib,
        peak_rss_kib,
        cpu,
        stop_time,
        exit: server.exit.clone().unwrap_or_default(),
        attempts: 1,
    })
}

/// The scenario name, marked † when the run was disturbed.
pub(crate) fn label(o: &Outcome, args: &Args) -> String {
    if o.cpu.other_pct > args.max_other {
        format!("{} †", o.scenario.name())
    } else {
        o.scenario.name()
    }
}

pub(crate) fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Each scenario: fresh server and data dir, {} s warm-up, {} s measured, closed loop \
         (each client sends its next request when the previous answer is in), one keep-alive \
         HTTP/1.1 connection per client. Latency is per request. Relaxed uses --flush-ms {}.\n",
        args.warmup, args.duration, args.flush_ms
    );
    let _ = writeln!(
        md,
        "| scenario | clients | records/req | requests/s | records/s | p50 ms | p99 ms | max ms | errors | server RSS |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in outcomes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} |",
            label(o, args),
            o.scenario.clients,
            o.scenario.per_request,
            thousands(o.req_per_s()),
            thousands(o.records_per_s()),
            ms(o.p50_us),
            ms(o.p99_us),
            ms(o.max_us),
            o.errors,
            o.rss_kib.map(mib).unwrap_or_else(|| "?".into()),
        );
    }
    for (name, err) in failures {
        let _ = writeln!(
            md,
            "| {name} | failed: {} | | | | | | | | |",
            err.replace('|', "/")
        );
    }
    if outcomes.iter().any(|o| o.cpu.other_pct > args.max_other) {
        let _ = writeln!(
            md,
            "\n† disturbed: other processes on the machine used more than {:.0} % of a core \
             during the measured window even in the least disturbed of up to {} attempts \
             (see \"other CPU\" below); such a row reads low.",
            args.max_other,
            args.retries + 1
        );
    }
    aims(&mut md, outcomes);

    let errs: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.first_error.as_ref().map(|e| (o.scenario.name(), e)))
        .collect();
    if !errs.is_empty() {
        let _ = writeln!(md, "\n### First error per scenario\n");
        for (name, e) in errs {
            let _ = writeln!(md, "- `{name}`: `{}`", e.replace('`', "'"));
        }
    }

    let _ = writeln!(md, "\n### CPU during the measured window\n");
    let _ = writeln!(
        md,
        "100 % = one core; the machine has {} cores shared by server and generator. \
         Idle and iowait are shares of the whole machine (idle excludes iowait). \
         \"Other\" is CPU used by anything else on the machine during the window: \
         if it is not near 0, the run was disturbed and its numbers are low \
         (a disturbed scenario is run again, up to --retries times, and the least \
         disturbed run is kept; \"runs\" counts them). \
         Disk writes are the server's storage writes (/proc/pid/io write_bytes) \
         during the window; per record they show write amplification \
         (a reading is about 70 bytes of JSON).\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let _ = writeln!(
        md,
        "| scenario | server CPU | generator CPU | other CPU | machine idle | iowait | disk writes | bytes written / record | busiest server threads | server stop | runs |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|");
    for o in outcomes {
        let threads = o
            .cpu
            .threads
            .iter()
            .take(4)
            .map(|(name, p, n)| {
                if *n > 1 {
                    format!("{name}×{n} {p:.0}%")
                } else {
                    format!("{name} {p:.0}%")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            md,
            "| {} | {:.0} % | {:.0} % | {:.0} % | {:.0} % | {:.0} % | {:.1} MB/s | {} | {} | {:.1} s{} | {} |",
            label(o, args),
            o.cpu.server_pct,
            o.cpu.bench_pct,
            o.cpu.other_pct,
            o.cpu.idle_pct,
            o.cpu.iowait_pct,
            o.cpu.write_bytes as f64 / 1e6 / o.measured.as_secs_f64(),
            thousands(o.cpu.write_bytes as f64 / (o.records_per_s() * o.measured.as_secs_f64()).max(1.0)),
            threads,
            o.stop_time.as_secs_f64(),
            if o.exit.contains("exit status: 0") || o.exit.is_empty() {
                String::new()
            } else {
                format!(" ({})", o.exit)
            },
            o.attempts
        );
    }

    let peers: Vec<_> = outcomes
        .iter()
        .filter(|o| o.scenario.system == System::PocketBase)
        .collect();
    if !peers.is_empty() {
        let _ = writeln!(md, "\n### pulsebase vs PocketBase (records/s ratio)\n");
        let _ = writeln!(
            md,
            "| scenario | PocketBase records/s | pulsebase sync | ratio sync/PB | pulsebase relaxed | ratio relaxed/PB |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
        for pb in peers {
            let find = |system: System| {
                outcomes.iter().find(|o| {
                    o.scenario.system == system
                        && o.scenario.per_request == pb.scenario.per_request
                        && o.scenario.clients == pb.scenario.clients
                })
            };
            let cell = |o: Option<&Outcome>| match o {
                Some(o) => (
                    thousands(o.records_per_s()),
                    format!("{:.1}×", o.records_per_s() / pb.records_per_s().max(1e-9)),
                ),
                None => ("—".into(), "—".into()),
            };
            let (s, sr) = cell(find(System::Sync));
            let (r, rr) = cell(find(System::Relaxed));
            let _ = writeln!(
                md,
                "| {}/c{} | {} | {s} | {sr} | {r} | {rr} |",
                pb.scenario.kind(),
                pb.scenario.clients,
                thousands(pb.records_per_s()),
            );
        }
    }
    md
}

/// The product aims, checked against the scenarios that ran.
pub(crate) fn aims(md: &mut String, outcomes: &[Outcome]) {
    let best = |system: System, per_request: usize, clients: Option<usize>| {
        outcomes
            .iter()
            .filter(|o| {
                o.scenario.system == system
                    && o.scenario.per_request == per_request
                    && clients.is_none_or(|c| o.scenario.clients == c)
            })
            .max_by(|a, b| a.records_per_s().total_cmp(&b.records_per_s()))
    };
    let mut rows = Vec::new();
    let mut row = |aim: &str, o: Option<&Outcome>, goal: f64| {
        if let Some(o) = o {
            let got = o.records_per_s();
            rows.push(format!(
                "| {aim} | {} ({}) | {} |",
                thousands(got),
                o.scenario.name(),
                if got >= goal { "yes" } else { "**no**" }
            ));
        }
    };
    row(
        "relaxed: ≥ 30,000 single creates/s at 16 clients",
        best(System::Relaxed, 1, Some(16)),
        30_000.0,
    );
    row(
        "sync: ≥ 8,000 single creates/s at 64 clients",
        best(System::Sync, 1, Some(64)),
        8_000.0,
    );
    let b100 = best(System::Sync, 100, None);
    row(
        "sync: ≥ 300,000 readings/s in batches of 100 (best concurrency)",
        b100,
        300_000.0,
    );
    let goal_1000 = b100
        .map(|o| o.records_per_s())
        .unwrap_or(0.0)
        .max(300_000.0);
    row(
        "sync: more readings/s in batches of 1000 than in batches of 100 (and ≥ 300,000)",
        best(System::Sync, 1000, None),
        goal_1000,
    );
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Aims\n");
    let _ = writeln!(md, "| aim | measured records/s | met |");
    let _ = writeln!(md, "|---|--:|:-:|");
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
}
