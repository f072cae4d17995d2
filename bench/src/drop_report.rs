//! The drop suite's figures: latency per window, the log line and the
//! Markdown tables (per run, and after ÷ before for each pair of runs).

use std::fmt::Write as _;

use crate::drop::{Binary, Outcome, Sample};
use crate::{mib, ms, thousands, Args};

/// Latency of the writes in one window (µs since the writers' epoch).
pub struct Figures {
    pub writes: usize,
    pub failed: usize,
    /// From the due time to the answer, successful writes only.
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// From sending to the answer.
    pub service_p50_us: u64,
    pub service_p99_us: u64,
    pub service_max_us: u64,
}

/// Nearest-rank quantile of sorted values.
pub(crate) fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Writes due in [from, to).
fn due_in(from_us: u64, to_us: u64) -> impl Fn(&Sample) -> bool {
    move |s| s.due_us >= from_us && s.due_us < to_us
}

pub fn figures(samples: &[Sample], in_window: impl Fn(&Sample) -> bool) -> Figures {
    let window: Vec<&Sample> = samples.iter().filter(|s| in_window(s)).collect();
    let mut latency: Vec<u64> = window
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.done_us.saturating_sub(s.due_us))
        .collect();
    let mut service: Vec<u64> = window
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.done_us.saturating_sub(s.sent_us))
        .collect();
    latency.sort_unstable();
    service.sort_unstable();
    Figures {
        writes: window.len(),
        failed: window.iter().filter(|s| !s.ok).count(),
        p50_us: quantile(&latency, 0.50),
        p99_us: quantile(&latency, 0.99),
        max_us: latency.last().copied().unwrap_or(0),
        service_p50_us: quantile(&service, 0.50),
        service_p99_us: quantile(&service, 0.99),
        service_max_us: service.last().copied().unwrap_or(0),
    }
}

/// The four windows of a run: baseline, DELETE → +drop_window, DELETE →
/// purge end, purge end → end of the run.
pub struct Windows {
    pub baseline: Figures,
    pub fixed: Figures,
    pub purge: Figures,
    pub tail: Figures,
}

/// Windows are cut by due time, except at the DELETE: a write due before it
/// but answered after it was sent was in flight when the drop arrived, so it
/// counts in the windows that start at the DELETE, not in the baseline.
pub fn windows(o: &Outcome, args: &Args) -> Windows {
    let delete = o.delete_sent_us;
    let fixed_to = delete + (args.drop.drop_window * 1e6) as u64;
    let before = due_in(o.measure_from_us, delete);
    let in_flight = |s: &Sample| before(s) && s.done_us >= delete;
    let from_delete = |to_us: u64| {
        let due = due_in(delete, to_us);
        move |s: &Sample| in_flight(s) || due(s)
    };
    Windows {
        baseline: figures(&o.samples, |s| before(s) && s.done_us < delete),
        fixed: figures(&o.samples, from_delete(fixed_to)),
        purge: figures(&o.samples, from_delete(o.purge_end_us)),
        tail: figures(&o.samples, due_in(o.purge_end_us, o.stop_us)),
    }
}

/// p50 / p99 / max, and the writes due in the window (failed ones too).
fn counted(f: &Figures) -> String {
    format!("{} (n {}, failed {})", three(f), f.writes, f.failed)
}

fn three(f: &Figures) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        ms(f.p50_us),
        ms(f.p99_us),
        ms(f.max_us)
    )
}

fn service(f: &Figures) -> String {
    format!(
        "{:.1} / {:.1} / {:.1}",
        ms(f.service_p50_us),
        ms(f.service_p99_us),
        ms(f.service_max_us)
    )
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

/// The DELETE's own latency, µs.
fn delete_us(o: &Outcome) -> u64 {
    o.delete_done_us.saturating_sub(o.delete_sent_us)
}

fn purge_secs(o: &Outcome) -> String {
    let s = secs(o.purge_end_us.saturating_sub(o.delete_sent_us));
    if o.purge_unfinished {
        format!("> {s:.1} (still busy at the end)")
    } else {
        format!("{s:.1}")
    }
}

/// Writer-thread CPU per second after the DELETE, for the log.
fn writer_timeline(o: &Outcome) -> String {
    let mut line = String::new();
    let from = o.delete_sent_us.saturating_sub(2_000_000);
    let mut second = from;
    while second < o.stop_us {
        let pcts: Vec<f64> = o
            .writer_cpu
            .iter()
            .filter(|(t, _)| *t > second && *t <= second + 1_000_000)
            .map(|(_, p)| *p)
            .collect();
        let mean = pcts.iter().sum::<f64>() / pcts.len().max(1) as f64;
        let _ = write!(line, "{mean:.0} ");
        second += 1_000_000;
    }
    line
}

/// The worst write latency per second of due time, from 2 s before the
/// DELETE to the end (ms), for the log.
fn latency_timeline(o: &Outcome) -> String {
    let mut line = String::new();
    let mut second = o.delete_sent_us.saturating_sub(2_000_000);
    while second < o.stop_us {
        let f = figures(&o.samples, due_in(second, second + 1_000_000));
        let _ = write!(line, "{:.0} ", ms(f.max_us));
        second += 1_000_000;
    }
    line
}

pub fn print_line(o: &Outcome, args: &Args) {
    let w = windows(o, args);
    eprintln!(
        "    baseline p50/p99/max {} ms | DELETE→+{}s {} ms | DELETE→purge end ({} s) {} ms | after {} ms | DELETE {:.0} ms ({}) | failed {} | other cpu {:.0}%/{:.0}% | load {} → {}",
        counted(&w.baseline),
        args.drop.drop_window,
        counted(&w.fixed),
        purge_secs(o),
        counted(&w.purge),
        counted(&w.tail),
        ms(delete_us(o)),
        o.delete_result,
        o.failed(),
        o.cpu_baseline.other_pct,
        o.cpu_drop.other_pct,
        o.loadavg_start,
        o.loadavg_end,
    );
    eprintln!(
        "    per second from 2 s before the DELETE: writer thread % {}",
        writer_timeline(o)
    );
    eprintln!(
        "    per second from 2 s before the DELETE: worst write ms {}",
        latency_timeline(o)
    );
    if let Some(e) = &o.first_error {
        eprintln!("    first error: {e}");
    }
}

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let d = &args.drop;
    let label = |o: &Outcome| match o.scenario.binary {
        Binary::Before => d.before_label.as_str(),
        Binary::After => d.server_label.as_str(),
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Each run: fresh server (sync durability, `--max-batch 10000`) and data dir; collection \
         `big` loaded with {} records (~80 bytes of JSON each) in arrays of 10,000, 2 requests \
         in flight; then single creates to collection `small`, paced open-loop at {} writes/s \
         over {} keep-alive connections sharing one schedule; {} s warm-up, {} s baseline, then \
         `DELETE /api/collections/big` (admin) on its own connection, writing on until at least \
         {} s after it and {} s after the purge ended. Latency is from each write's due time to \
         its answer (a write that waited for a free connection counts the wait), cut into \
         windows by due time (a write due before the DELETE but answered after it was sent \
         counts from the DELETE on, not in the baseline); p50 / p99 / max in ms. The purge's end is the later of the \
         DELETE's answer and the last 200 ms interval in which the server's writer thread used \
         more than max(3 × its baseline, 20 %) of a core.\n",
        thousands(d.records as f64),
        d.rate,
        d.writers,
        args.warmup,
        d.baseline,
        d.after,
        3,
    );
    let _ = writeln!(
        md,
        "| run | binary | load records/s | baseline | DELETE → +{} s | DELETE → purge end | purge s | after the purge | DELETE answered in ms | failed writes | other CPU baseline / drop | load avg start → end |",
        d.drop_window
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for o in outcomes {
        let w = windows(o, args);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} % / {:.0} % | {} → {} |",
            o.scenario.name(),
            label(o),
            thousands(o.loaded as f64 / o.load_secs.max(1e-9)),
            three(&w.baseline),
            three(&w.fixed),
            three(&w.purge),
            purge_secs(o),
            three(&w.tail),
            thousands(ms(delete_us(o))),
            o.failed(),
            o.cpu_baseline.other_pct,
            o.cpu_drop.other_pct,
            o.loadavg_start,
            o.loadavg_end,
        );
    }
    for (name, err) in failures {
        let _ = writeln!(
            md,
            "| {name} | failed: {} | | | | | | | | | | |",
            err.replace('|', "/")
        );
    }
    ratios(&mut md, args, outcomes);
    details(&mut md, args, outcomes);
    md
}

/// after ÷ before for each pair of runs with the same number.
fn ratios(md: &mut String, args: &Args, outcomes: &[Outcome]) {
    let find = |binary: Binary, run: usize| {
        outcomes
            .iter()
            .find(|o| o.scenario.binary == binary && o.scenario.run == run)
    };
    let mut rows = Vec::new();
    for run in 1..=args.drop.runs {
        let (Some(b), Some(a)) = (find(Binary::Before, run), find(Binary::After, run)) else {
            continue;
        };
        let (wb, wa) = (windows(b, args), windows(a, args));
        let r = |x: u64, y: u64| format!("{:.2}", x as f64 / y.max(1) as f64);
        rows.push(format!(
            "| run{run} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r(wa.baseline.p99_us, wb.baseline.p99_us),
            r(wa.fixed.p50_us, wb.fixed.p50_us),
            r(wa.fixed.p99_us, wb.fixed.p99_us),
            r(wa.fixed.max_us, wb.fixed.max_us),
            r(wa.purge.p99_us, wb.purge.p99_us),
            r(wa.purge.max_us, wb.purge.max_us),
            r(delete_us(a), delete_us(b)),
            r(
                a.purge_end_us.saturating_sub(a.delete_sent_us),
                b.purge_end_us.saturating_sub(b.delete_sent_us)
            ),
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n### after ÷ before ({} ÷ {}), pair by pair\n",
        args.drop.server_label, args.drop.before_label
    );
    let _ = writeln!(
        md,
        "| pair | baseline p99 | DELETE → +{0} s p50 | DELETE → +{0} s p99 | DELETE → +{0} s max | DELETE → purge end p99 | DELETE → purge end max | DELETE latency | purge length |",
        args.drop.drop_window
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let _ = writeln!(md, "{row}");
    }
}

fn details(md: &mut String, args: &Args, outcomes: &[Outcome]) {
    let _ = writeln!(md, "\n### Details per run\n");
    let _ = writeln!(
        md,
        "Writes: done / due in the whole run (due from the start of the warm-up). \
         Service time is from sending to the answer (without the wait for a free \
         connection), p50 / p99 / max in ms, in the baseline and from the DELETE to the \
         purge's end. Writer thread: the server's `pulsebase-writer` thread in the baseline, \
         % of one core. Server CPU, idle, iowait, the server's storage writes \
         (/proc/pid/io) and its busiest threads from the DELETE to the purge's end (100 % = \
         one core; idle and iowait are shares of the machine). `big` after: its record count \
         in `GET /api/stats` at the end (null = gone).\n"
    );
    let _ = writeln!(
        md,
        "| run | DELETE answer | purge end from | writes done / due | service baseline | service DELETE → purge end | writer thread baseline | server CPU during purge | idle / iowait during purge | storage writes during purge | busiest threads during purge | server RSS at end | `big` after |"
    );
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|");
    for o in outcomes {
        let w = windows(o, args);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} | {} | {:.0} % | {:.0} % | {:.0} % / {:.0} % | {:.1} MB/s | {} | {} | {} |",
            o.scenario.name(),
            o.delete_result.replace('|', "/"),
            match o.busy_end_us {
                Some(b) if b > o.delete_done_us => "writer thread busy after the answer",
                _ => "the DELETE's answer",
            },
            o.samples.iter().filter(|s| s.ok).count(),
            o.samples.len(),
            service(&w.baseline),
            service(&w.purge),
            o.writer_base_pct,
            o.cpu_drop.server_pct,
            o.cpu_drop.idle_pct,
            o.cpu_drop.iowait_pct,
            o.cpu_drop.write_bytes as f64
                / 1e6
                / secs(o.purge_end_us.saturating_sub(o.delete_sent_us)).max(1e-3),
            o.cpu_drop
                .threads
                .iter()
                .take(3)
                .map(|(name, p, n)| if *n > 1 {
                    format!("{name}×{n} {p:.0}%")
                } else {
                    format!("{name} {p:.0}%")
                })
                .collect::<Vec<_>>()
                .join(", "),
            o.rss_kib.map(mib).unwrap_or_else(|| "?".into()),
            o.big_after,
        );
    }
    let errs: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.first_error.as_ref().map(|e| (o.scenario.name(), e)))
        .collect();
    if !errs.is_empty() {
        let _ = writeln!(md, "\n First failed write per run:\n");
        for (name, e) in errs {
            let _ = writeln!(md, "- `{name}`: `{}`", e.replace('`', "'"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(due_us: u64, sent_us: u64, done_us: u64, ok: bool) -> Sample {
        Sample {
            due_us,
            sent_us,
            done_us,
            ok,
        }
    }

    #[test]
    fn windows_are_cut_by_due_time_and_latency_counts_the_wait_for_a_connection() {
        let samples = [
            sample(0, 0, 1_000, true),
            // Due at 1 s, sent only at 3 s (all connections stalled), answered at 3.001 s.
            sample(1_000_000, 3_000_000, 3_001_000, true),
            sample(1_500_000, 3_000_000, 3_002_000, false),
            sample(2_000_000, 2_000_000, 2_001_000, true),
        ];
        let f = figures(&samples, due_in(1_000_000, 2_000_000));
        assert_eq!((f.writes, f.failed), (2, 1));
        assert_eq!(f.max_us, 2_001_000);
        assert_eq!(f.service_max_us, 1_000);
        let all = figures(&samples, due_in(0, 3_000_000));
        assert_eq!(all.writes, 4);
        assert_eq!(all.p50_us, 1_000);
    }

    #[test]
    fn a_write_in_flight_at_the_delete_counts_after_it_not_in_the_baseline() {
        use clap::Parser as _;
        let args = Args::parse_from(["pulsebase-bench", "--suite", "drop"]);
        let outcome = Outcome {
            scenario: crate::drop::Scenario {
                binary: Binary::Before,
                run: 1,
            },
            loaded: 0,
            load_secs: 0.0,
            samples: vec![
                sample(4_000_000, 4_000_000, 4_002_000, true),
                // Due 1 ms before the DELETE (at 6 s), answered when the purge ended.
                sample(5_999_000, 5_999_000, 36_000_000, true),
                sample(6_100_000, 6_100_000, 36_000_000, true),
                sample(37_000_000, 37_000_000, 37_003_000, true),
            ],
            first_error: None,
            measure_from_us: 1_000_000,
            delete_sent_us: 6_000_000,
            delete_done_us: 36_000_000,
            delete_result: "204".into(),
            busy_end_us: None,
            purge_end_us: 36_000_000,
            purge_unfinished: false,
            stop_us: 40_000_000,
            writer_base_pct: 0.0,
            writer_cpu: Vec::new(),
            cpu_baseline: Default::default(),
            cpu_drop: Default::default(),
            loadavg_start: String::new(),
            loadavg_end: String::new(),
            big_after: serde_json::Value::Null,
            rss_kib: None,
        };
        let w = windows(&outcome, &args);
        assert_eq!((w.baseline.writes, w.baseline.max_us), (1, 2_000));
        assert_eq!((w.fixed.writes, w.fixed.max_us), (2, 30_001_000));
        assert_eq!((w.purge.writes, w.purge.max_us), (2, 30_001_000));
        assert_eq!((w.tail.writes, w.tail.max_us), (1, 3_000));
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.50), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&[7], 0.99), 7);
        assert_eq!(quantile::<u64>(&[], 0.5), 0);
    }
}
