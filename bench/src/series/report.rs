//! The series section of RESULTS.md: one table per kind of scenario, the
//! ratios to the records path and PocketBase, and every aim beside the
//! figure it is checked against.

use std::fmt::Write as _;

use super::aggregate::Side;
use super::data::Shape;
use super::{Outcome, Scenario, Sink, SMALL_CACHE_MB};
use crate::{ingest, mib, ms, realtime, thousands, Args};

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let mut md = String::new();
    ingest_table(&mut md, args, outcomes);
    stored_tables(&mut md, outcomes);
    fanout_table(&mut md, outcomes);
    if !failures.is_empty() {
        let _ = writeln!(md, "\n### Scenarios that could not run\n");
        for (name, err) in failures {
            let _ = writeln!(md, "- `{name}`: {}", err.replace('\n', " "));
        }
    }
    aims(&mut md, args, outcomes);
    md
}

/// Bytes the server wrote to storage per reading during the window.
fn written_per_reading(o: &ingest::Outcome) -> f64 {
    o.cpu.write_bytes as f64 / (o.records_per_s() * o.measured.as_secs_f64()).max(1.0)
}

fn ingest_table(md: &mut String, args: &Args, outcomes: &[Outcome]) {
    if !outcomes.iter().any(|o| matches!(o, Outcome::Ingest(..))) {
        return;
    }
    let _ = writeln!(
        md,
        "Timed ingest: fresh server and data dir per scenario, sync durability (2xx after \
         the group's fsync), {} s warm-up, {} s measured, closed loop over one keep-alive \
         connection per client (the ingest suite's machinery). Readings: 100 devices \
         (`gw-000`…), site, temp, humidity, ts per device increasing with jitter, about \
         78 bytes of JSON each; every shape of a batch carries the same readings. \
         `records/…` and `pocketbase/…` are the ingest suite's own scenarios (its \
         readings have no `site`). CPU: 100 % = one core; \"other\" is everything on \
         the machine except server and generator (from /proc/stat). Written = the \
         server's /proc/PID/io write_bytes over the window ÷ readings.\n",
        args.warmup, args.duration
    );
    let _ = writeln!(
        md,
        "| scenario | readings/req | clients | readings/s | p50 ms | p99 ms | written B/reading | peak RSS | server CPU | generator CPU | other CPU | errors |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in outcomes {
        let Outcome::Ingest(sc, o) = o else { continue };
        let _ = writeln!(
            md,
            "| {}{} | {} | {} | {} | {:.2} | {:.2} | {:.0} | {} | {:.0} % | {:.0} % | {:.0} % | {} |",
            sc.name(),
            if o.cpu.other_pct > args.max_other { " †" } else { "" },
            o.scenario.per_request,
            o.scenario.clients,
            thousands(o.records_per_s()),
            ms(o.p50_us),
            ms(o.p99_us),
            written_per_reading(o),
            o.peak_rss_kib.map(mib).unwrap_or_else(|| "?".into()),
            o.cpu.server_pct,
            o.cpu.bench_pct,
            o.cpu.other_pct,
            o.errors,
        );
    }
    let _ = writeln!(
        md,
        "\n`memory/cache{SMALL_CACHE_MB}/…` runs with `PULSEBASE_CACHE_MB={SMALL_CACHE_MB}`; \
         the same scenarios with default settings are `ingest/json1000/c4` and `…/c8`. Peak RSS is \
         VmHWM at the end of the window. † = disturbed by other processes."
    );
    let errs: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ingest(sc, o) => o.first_error.as_ref().map(|e| (sc.name(), e)),
            _ => None,
        })
        .collect();
    for (name, e) in errs {
        let _ = writeln!(md, "\n- first error of `{name}`: `{}`", e.replace('`', "'"));
    }
    let base = find_ingest(outcomes, Sink::Series, Shape::Json, 1000, 8);
    let rows: Vec<_> = [Sink::Records, Sink::PocketBase]
        .into_iter()
        .filter_map(|sink| {
            outcomes.iter().find_map(|o| match o {
                Outcome::Ingest(sc @ Scenario::Ingest { sink: s, .. }, o) if *s == sink => {
                    Some((sc, o))
                }
                _ => None,
            })
        })
        .collect();
    if let (Some(base), false) = (base, rows.is_empty()) {
        let _ = writeln!(
            md,
            "\n| same batches (1000 per request, 8 clients) | readings/s | series ÷ this |"
        );
        let _ = writeln!(md, "|---|--:|--:|");
        let _ = writeln!(
            md,
            "| ingest/json1000/c8 (series) | {} | 1.0× |",
            thousands(base.records_per_s())
        );
        for (sc, o) in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1}× |",
                sc.name(),
                thousands(o.records_per_s()),
                base.records_per_s() / o.records_per_s().max(1e-9)
            );
        }
    }
}

fn find_ingest(
    outcomes: &[Outcome],
    sink: Sink,
    shape: Shape,
    per_request: usize,
    clients: usize,
) -> Option<&ingest::Outcome> {
    outcomes.iter().find_map(|o| match o {
        Outcome::Ingest(
            Scenario::Ingest {
                sink: s,
                shape: sh,
                per_request: p,
                clients: c,
                cache_mb,
            },
            o,
        ) if *s == sink
            && *sh == shape
            && *p == per_request
            && *c == clients
            && cache_mb.is_none() =>
        {
            Some(o)
        }
        _ => None,
    })
}

fn stored_tables(md: &mut String, outcomes: &[Outcome]) {
    let disks: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Disk(d) => Some(d),
            _ => None,
        })
        .collect();
    if !disks.is_empty() {
        let _ = writeln!(
            md,
            "\n### Disk\n\nReadings written in JSON batches of 1000 over 4 connections \
             (100 devices over one day); then the server is stopped (pulsebase flushes, \
             PocketBase checkpoints its WAL) and the data dir is sized like `du` \
             (allocated blocks).\n"
        );
        let _ = writeln!(
            md,
            "| system | readings | data dir | bytes/reading | write time |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for d in disks {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} MB | {:.1} | {:.1} s |",
                if d.pocketbase {
                    "PocketBase"
                } else {
                    "pulsebase (series)"
                },
                thousands(d.readings as f64),
                d.bytes as f64 / 1e6,
                d.per_reading(),
                d.write_secs
            );
        }
    }
    for o in outcomes {
        match o {
            Outcome::Latest(l) => {
                let _ = writeln!(
                    md,
                    "\n### Latest\n\n{} readings of {} series ({} each, JSON batches of 1000), \
                     then 20 timed `GET /api/collections/readings/latest` as the admin, one \
                     at a time (after one untimed call), each on a fresh loopback connection.\n",
                    thousands(l.readings as f64),
                    thousands(f64::from(l.devices)),
                    super::LATEST_ROUNDS
                );
                let _ = writeln!(
                    md,
                    "| series | in the answer | answer size | median | p99 |"
                );
                let _ = writeln!(md, "|--:|--:|--:|--:|--:|");
                let _ = writeln!(
                    md,
                    "| {} | {} | {} KB | {:.2} ms | {:.2} ms |",
                    thousands(f64::from(l.devices)),
                    thousands(l.answered as f64),
                    l.bytes / 1000,
                    l.p50_ms,
                    l.p99_ms
                );
            }
            Outcome::Aggregate(a) => {
                let _ = writeln!(
                    md,
                    "\n### Aggregate\n\n{} readings of 100 series over one day (written in \
                     {:.1} s), then avg and max of temp in 1-minute buckets per device: \
                     `GET /api/collections/readings/aggregate?from=…&to=…&bucket=1m&agg=avg(temp),max(temp)&group=device` \
                     (median of 5 after one untimed call) against DuckDB{} on the same \
                     readings from a CSV the generator wrote, loaded into a table first \
                     (not timed): `SELECT time_bucket(INTERVAL '1 minute', ts) b, device, \
                     avg(temp), max(temp) FROM r GROUP BY b, device` into a table (median of 5).\n",
                    thousands(a.readings as f64),
                    a.write_secs,
                    a.duckdb_version
                        .as_ref()
                        .map(|v| format!(" {v}"))
                        .unwrap_or_default()
                );
                let _ = writeln!(md, "| side | median | slowest | rows |");
                let _ = writeln!(md, "|---|--:|--:|--:|");
                for (name, side) in [("pulsebase", &a.pulsebase), ("DuckDB", &a.duckdb)] {
                    let _ = match side {
                        Side::Timed {
                            median_ms,
                            max_ms,
                            rows,
                        } => writeln!(
                            md,
                            "| {name} | {median_ms:.1} ms | {max_ms:.1} ms | {} |",
                            thousands(*rows as f64)
                        ),
                        Side::NotAvailable(why) => writeln!(
                            md,
                            "| {name} | not available: {} | | |",
                            why.replace('|', "/").replace('\n', " ")
                        ),
                    };
                }
            }
            _ => {}
        }
    }
}

/// Whether a fan-out outcome had each subscriber filter to one device.
fn routed(o: &realtime::Outcome) -> bool {
    matches!(
        o.scenario.kind,
        realtime::Kind::SeriesFanout { routed: true, .. }
    )
}

fn fanout_table(md: &mut String, outcomes: &[Outcome]) {
    let flows: Vec<(&realtime::Outcome, &realtime::Flow)> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Fanout(o) => match &o.measured {
                realtime::Measured::Flow(f) => Some((o, f)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let Some((_, first)) = flows.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "\n### Fan-out while ingesting\n\n{} WebSocket subscribers (10 accounts, view \
         rule `@user != null`) on a series collection while readings of 100 devices are \
         written at {} per second in JSON arrays of rate ÷ 100, paced open-loop over 32 \
         connections (the realtime suite's machinery: every reading carries its index, \
         each subscriber keeps a bitset, so missed and duplicates are exact; 15 s to \
         drain). *every reading*: each subscriber takes the whole collection, so the \
         server owes subscribers × rate deliveries a second. *one device*: subscriber `i` \
         subscribes with `filter: device = 'gw-<i mod 100>'` (a dashboard of one device) \
         and is owed that device's readings only; a reading of another device reaching \
         it counts as a duplicate.\n",
        first.subscribers,
        thousands(f64::from(first.rate))
    );
    let _ = writeln!(
        md,
        "| each subscriber takes | readings/s written | request p99 | deliveries/s owed | deliveries/s | delivery p50 | p99 | missed | duplicates | closed by server | server CPU | generator CPU |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (o, f) in flows {
        let written = f.writes_done as f64 / o.duration.as_secs_f64();
        let owed = if routed(o) {
            written * f.subscribers as f64 / 100.0
        } else {
            written * f.subscribers as f64
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} ms | {} | {} | {:.1} ms | {:.1} ms | {} | {} | {}{} | {:.0} % | {:.0} % |",
            if routed(o) { "one device" } else { "every reading" },
            thousands(written),
            ms(f.write_p99_us),
            thousands(owed),
            thousands(f.deliveries as f64 / o.duration.as_secs_f64()),
            ms(f.p50_us),
            ms(f.p99_us),
            thousands(f.missed as f64),
            thousands(f.duplicates as f64),
            f.closed,
            if f.close_reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.close_reasons.join("; "))
            },
            o.cpu.server_pct,
            o.cpu.bench_pct,
        );
        if let Some(e) = &f.first_error {
            let _ = writeln!(md, "\nFirst write error: `{}`", e.replace('`', "'"));
        }
    }
}

fn aims(md: &mut String, args: &Args, outcomes: &[Outcome]) {
    let mut rows: Vec<(String, String, Option<bool>)> = Vec::new();
    // A disturbed run reads low: its figure is marked where it is judged.
    let mark = |o: &ingest::Outcome| {
        if o.cpu.other_pct > args.max_other {
            " †"
        } else {
            ""
        }
    };
    let best = |per_request: usize| {
        outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Ingest(
                    sc @ Scenario::Ingest {
                        sink: Sink::Series,
                        shape: Shape::Json,
                        per_request: p,
                        cache_mb: None,
                        ..
                    },
                    o,
                ) if *p == per_request => Some((sc.name(), o)),
                _ => None,
            })
            .max_by(|a, b| a.1.records_per_s().total_cmp(&b.1.records_per_s()))
    };
    let mut rate = |aim: &str, per_request: usize, goal: f64| {
        let (got, met) = match best(per_request) {
            Some((name, o)) => (
                format!(
                    "{} readings/s ({name}){}",
                    thousands(o.records_per_s()),
                    mark(o)
                ),
                Some(o.records_per_s() >= goal),
            ),
            None => ("not run".into(), None),
        };
        rows.push((aim.into(), got, met));
    };
    rate("≥ 500,000 readings/s in batches of 1000", 1000, 500_000.0);
    rate("≥ 200,000 readings/s in batches of 100", 100, 200_000.0);
    let json = find_ingest(outcomes, Sink::Series, Shape::Json, 1000, 8);
    let line = find_ingest(outcomes, Sink::Series, Shape::Line, 1000, 8);
    rows.push(match (json, line) {
        (Some(j), Some(l)) => {
            let r = l.records_per_s() / j.records_per_s().max(1e-9);
            (
                "line protocol within 20 % of JSON (batches of 1000, 8 clients)".into(),
                format!(
                    "{}{} vs {}{} readings/s: {:.0} % of JSON",
                    thousands(l.records_per_s()),
                    mark(l),
                    thousands(j.records_per_s()),
                    mark(j),
                    r * 100.0
                ),
                Some(r >= 0.8),
            )
        }
        _ => (
            "line protocol within 20 % of JSON".into(),
            "not run".into(),
            None,
        ),
    });
    rows.push(match json {
        Some(j) => (
            "≤ 100 bytes written to disk per reading (ingest/json1000/c8)".into(),
            format!("{:.0} bytes", written_per_reading(j)),
            Some(written_per_reading(j) <= 100.0),
        ),
        None => (
            "≤ 100 bytes written per reading".into(),
            "not run".into(),
            None,
        ),
    });
    let disk = |pb: bool| {
        outcomes.iter().find_map(|o| match o {
            Outcome::Disk(d) if d.pocketbase == pb => Some(d),
            _ => None,
        })
    };
    rows.push(match (disk(false), disk(true)) {
        (Some(p), Some(b)) => (
            "data dir ≤ PocketBase's for the same readings".into(),
            format!(
                "{:.1} vs {:.1} bytes/reading",
                p.per_reading(),
                b.per_reading()
            ),
            Some(p.per_reading() <= b.per_reading()),
        ),
        (Some(p), None) => (
            "data dir ≤ PocketBase's for the same readings".into(),
            format!(
                "{:.1} bytes/reading; PocketBase not run (needs --peers)",
                p.per_reading()
            ),
            None,
        ),
        _ => ("data dir ≤ PocketBase's".into(), "not run".into(), None),
    });
    rows.push(small_cache_row(outcomes, json));
    for o in outcomes {
        match o {
            Outcome::Aggregate(a) => rows.push((
                "aggregate within 2× DuckDB (aim stated for 10M readings)".into(),
                match (a.ratio(), &a.pulsebase) {
                    (Some(r), _) => format!(
                        "{r:.2}× DuckDB's time at {} readings",
                        thousands(a.readings as f64)
                    ),
                    (None, Side::NotAvailable(why)) => {
                        format!("pulsebase: not available ({})", why.replace('\n', " "))
                    }
                    (None, _) => "DuckDB not available (see the table above)".into(),
                },
                a.ratio().map(|r| r <= 2.0),
            )),
            Outcome::Latest(l) => rows.push((
                "latest over 10,000 series < 10 ms (median; p99 beside it)".into(),
                format!("{:.2} ms (p99 {:.2} ms)", l.p50_ms, l.p99_ms),
                Some(l.p50_ms < 10.0),
            )),
            Outcome::Fanout(o) => {
                if let realtime::Measured::Flow(f) = &o.measured {
                    rows.push((
                        format!(
                            "fan-out to {} subscribers at {}/s, {}: 0 missed, 0 duplicated",
                            f.subscribers,
                            thousands(f64::from(f.rate)),
                            if routed(o) {
                                "each filtered to one of 100 devices"
                            } else {
                                "each taking every reading"
                            }
                        ),
                        format!(
                            "{} missed, {} duplicated, {} readings/s written ({} acknowledged)",
                            thousands(f.missed as f64),
                            thousands(f.duplicates as f64),
                            thousands(f.writes_done as f64 / o.duration.as_secs_f64()),
                            thousands(f.writes_acked as f64)
                        ),
                        // Nothing lost only counts at the stated write rate.
                        Some(
                            f.missed == 0
                                && f.duplicates == 0
                                && f.writes_done as f64 / o.duration.as_secs_f64()
                                    >= 0.95 * f64::from(f.rate),
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    let _ = writeln!(md, "\n### Aims\n\n† = measured while other processes used more than {:.0} % of a core: reads low.\n", args.max_other);
    let _ = writeln!(md, "| aim | measured | met |");
    let _ = writeln!(md, "|---|---|:-:|");
    for (aim, got, met) in rows {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {aim} | {} | {verdict} |", got.replace('|', "/"));
    }
}

/// The memory aim: peak RSS ≤ 64 MiB with the small cache, in a run that
/// reaches the ingest aim's 500,000 readings/s.
fn small_cache_row(
    outcomes: &[Outcome],
    default_c8: Option<&ingest::Outcome>,
) -> (String, String, Option<bool>) {
    const AIM_RATE: f64 = 500_000.0;
    let aim = format!("peak RSS ≤ 64 MiB with cache_mb {SMALL_CACHE_MB} at ≥ 500,000 readings/s");
    let runs: Vec<&ingest::Outcome> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Ingest(
                Scenario::Ingest {
                    cache_mb: Some(_), ..
                },
                o,
            ) => Some(o),
            _ => None,
        })
        .collect();
    if runs.is_empty() {
        return (aim, "not run".into(), None);
    }
    let mut measured: Vec<String> = runs
        .iter()
        .map(|o| {
            format!(
                "{} at {}/s with {} clients",
                o.peak_rss_kib.map(mib).unwrap_or_else(|| "?".into()),
                thousands(o.records_per_s()),
                o.scenario.clients
            )
        })
        .collect();
    if let Some(kib) = default_c8.and_then(|o| o.peak_rss_kib) {
        measured.push(format!("default settings, 8 clients: {}", mib(kib)));
    }
    let met = runs.iter().any(|o| {
        o.records_per_s() >= AIM_RATE && o.peak_rss_kib.is_some_and(|kib| kib <= 64 * 1024)
    });
    (aim, measured.join("; "), Some(met))
}
