//! What the realtime suite prints while it runs and writes to RESULTS.md:
//! figures, ratios to the peers, and the aims met or not.

use super::*;

use crate::{mib, ms, thousands, Args};

pub fn print_line(o: &Outcome) {
    match &o.measured {
        Measured::Flow(f) => eprintln!(
            "    writes {:>6.0}/s ({} acked in all)  deliveries {:>9.0}/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  missed {}  dup {}  closed {}  events/read {:.2}  drained in {:.1} s  write p99 {:.2} ms  cpu srv {:.0}% gen {:.0}% other {:.0}%",
            f.writes_done as f64 / o.duration.as_secs_f64(),
            f.writes_acked,
            f.deliveries as f64 / o.duration.as_secs_f64(),
            ms(f.p50_us),
            ms(f.p99_us),
            ms(f.max_us),
            f.missed,
            f.duplicates,
            f.closed,
            f.events_per_read,
            f.drain.as_secs_f64(),
            ms(f.write_p99_us),
            o.cpu.server_pct,
            o.cpu.bench_pct,
            o.cpu.other_pct,
        ),
        Measured::Memory(m) => eprintln!(
            "    {} of {} connections open; RSS {} -> {} = {:.1} KiB per connection",
            m.opened,
            m.connections,
            mib(m.rss_before_kib),
            mib(m.rss_after_kib),
            m.per_connection_kib()
        ),
    }
}

/// The run counts as failed when writes failed or events went missing for
/// subscribers the server did not close on purpose.
pub fn errors(o: &Outcome) -> u64 {
    match &o.measured {
        Measured::Flow(f) => f.write_errors,
        Measured::Memory(m) => (m.connections - m.opened) as u64,
    }
}

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let mut md = String::new();
    let flows: Vec<(&Outcome, &Flow)> = outcomes
        .iter()
        .filter_map(|o| match &o.measured {
            Measured::Flow(f) => Some((o, f)),
            Measured::Memory(_) => None,
        })
        .collect();
    let memories: Vec<(&Outcome, &Memory)> = outcomes
        .iter()
        .filter_map(|o| match &o.measured {
            Measured::Memory(m) => Some((o, m)),
            Measured::Flow(_) => None,
        })
        .collect();
    let mark = |o: &Outcome| {
        if o.other_cpu() > args.max_other {
            format!("{} †", o.scenario.name())
        } else {
            o.scenario.name()
        }
    };

    if !flows.is_empty() {
        let _ = writeln!(
            md,
            "### Fan-out\n\n\
             Each scenario: fresh server and data dir; S subscribers connected and subscribed \
             first (pulsebase: WebSocket, PocketBase: SSE; {USERS} user accounts shared by the \
             subscribers, every event checked against the view rule `@user != null` per \
             subscriber); then {WRITERS} keep-alive HTTP connections write at the offered \
             rate R, paced open-loop, for {} s warm-up + {} s measured. `fanout` writes single \
             records (`POST /api/collections/readings/records`, sync durability: the event \
             leaves after the fsync); `publish` posts messages to a custom topic with \
             `history: 0` (`POST /api/topics/bench/messages`). Latency is from the moment the \
             write was sent to the moment the event was read by the subscriber, on one clock. \
             Deliveries/s counts events read during the measured window. Missed = events of \
             acknowledged writes that a subscriber never received (after waiting up to {} s), \
             summed over subscribers; a subscriber the server closed counts its losses here \
             and under \"closed\".\n",
            args.warmup,
            args.duration,
            DRAIN_TIMEOUT.as_secs()
        );
        let _ = writeln!(
            md,
            "| scenario | S | R offered | writes/s done | write p50 ms | write p99 ms | deliveries/s | p50 ms | p99 ms | max ms | missed | duplicates | closed | server RSS | server CPU | generator CPU | other CPU |"
        );
        let _ = writeln!(
            md,
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
        );
        for (o, f) in &flows {
            let secs = o.duration.as_secs_f64();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {:.0} % | {:.0} % | {:.0} % |",
                mark(o),
                f.subscribers,
                thousands(f64::from(f.rate)),
                thousands(f.writes_done as f64 / secs),
                ms(f.write_p50_us),
                ms(f.write_p99_us),
                thousands(f.deliveries as f64 / secs),
                ms(f.p50_us),
                ms(f.p99_us),
                ms(f.max_us),
                thousands(f.missed as f64),
                thousands(f.duplicates as f64),
                f.closed,
                o.rss_kib.map(mib).unwrap_or_else(|| "?".into()),
                o.cpu.server_pct,
                o.cpu.bench_pct,
                o.cpu.other_pct,
            );
        }
        let notes: Vec<String> = flows
            .iter()
            .filter(|(_, f)| f.closed > 0 || f.first_error.is_some())
            .map(|(o, f)| {
                let mut parts = Vec::new();
                if f.closed > 0 {
                    parts.push(format!("closed: {}", f.close_reasons.join("; ")));
                }
                if let Some(e) = &f.first_error {
                    parts.push(format!(
                        "{} write error(s), first: {}",
                        f.write_errors,
                        e.replace('`', "'")
                    ));
                }
                format!("- `{}`: {}", o.scenario.name(), parts.join("; "))
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\n{}", notes.join("\n"));
        }
    }

    if !memories.is_empty() {
        let _ = writeln!(
            md,
            "\n### Memory per idle connection\n\n\
             The server's RSS one second after setup, then again 3 s after N connections \
             were opened and subscribed to `readings` (pulsebase WebSocket: the `subscribe` \
             action; SSE: `?topic=readings`; PocketBase: SSE plus its subscribe POST). \
             Per connection = difference / connections opened.\n"
        );
        let _ = writeln!(
            md,
            "| scenario | connections opened | RSS before | RSS after | KiB per connection |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|");
        for (o, m) in &memories {
            let _ = writeln!(
                md,
                "| {} | {} of {} | {} | {} | {:.1} |",
                mark(o),
                thousands(m.opened as f64),
                thousands(m.connections as f64),
                mib(m.rss_before_kib),
                mib(m.rss_after_kib),
                m.per_connection_kib()
            );
        }
    }
    for (name, err) in failures {
        let _ = writeln!(md, "\n- `{name}` failed: {}", err.replace('`', "'"));
    }
    if outcomes.iter().any(|o| o.other_cpu() > args.max_other) {
        let _ = writeln!(
            md,
            "\n† disturbed: other processes used more than {:.0} % of a core during the window.",
            args.max_other
        );
    }
    ratios(&mut md, &flows, &memories);
    aims(&mut md, &flows, &memories);
    md
}

pub(super) fn ratios(
    md: &mut String,
    flows: &[(&Outcome, &Flow)],
    memories: &[(&Outcome, &Memory)],
) {
    let peer_flows: Vec<_> = flows
        .iter()
        .filter(|(o, _)| o.scenario.peer == Peer::PocketBase)
        .collect();
    let peer_memory: Vec<_> = memories
        .iter()
        .filter(|(o, _)| o.scenario.peer == Peer::PocketBase)
        .collect();
    if peer_flows.is_empty() && peer_memory.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### pulsebase vs PocketBase, same run\n");
    if !peer_flows.is_empty() {
        let _ = writeln!(
            md,
            "| workload | writes/s PB → pulsebase | ratio | deliveries/s PB → pulsebase | ratio | p99 ms PB → pulsebase | PB p99 / pulsebase p99 |"
        );
        let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|");
        for (pb_o, pb) in peer_flows {
            let Some((o, f)) = flows.iter().find(|(o, f)| {
                o.scenario.peer == Peer::Pulsebase
                    && matches!(o.scenario.kind, Kind::Fanout { .. })
                    && f.subscribers == pb.subscribers
                    && f.rate == pb.rate
            }) else {
                continue;
            };
            let per_s = |o: &Outcome, x: u64| x as f64 / o.duration.as_secs_f64();
            let (pw, w) = (per_s(pb_o, pb.writes_done), per_s(o, f.writes_done));
            let (pd, d) = (per_s(pb_o, pb.deliveries), per_s(o, f.deliveries));
            let _ = writeln!(
                md,
                "| s{}/r{} | {} → {} | {:.1}× | {} → {} | {:.1}× | {:.2} → {:.2} | {:.1}× |",
                f.subscribers,
                f.rate,
                thousands(pw),
                thousands(w),
                w / pw.max(1e-9),
                thousands(pd),
                thousands(d),
                d / pd.max(1e-9),
                ms(pb.p99_us),
                ms(f.p99_us),
                pb.p99_us as f64 / f.p99_us.max(1) as f64,
            );
        }
    }
    for (_, pb) in peer_memory {
        for (o, m) in memories
            .iter()
            .filter(|(o, _)| o.scenario.peer == Peer::Pulsebase)
        {
            let _ = writeln!(
                md,
                "\nIdle memory: PocketBase SSE {:.1} KiB per connection vs {} {:.1} KiB: {:.1}× less.",
                pb.per_connection_kib(),
                o.scenario.name(),
                m.per_connection_kib(),
                pb.per_connection_kib() / m.per_connection_kib().max(1e-9)
            );
        }
    }
}

pub(super) fn aims(md: &mut String, flows: &[(&Outcome, &Flow)], memories: &[(&Outcome, &Memory)]) {
    let ours = |kind: &dyn Fn(&Kind) -> bool| {
        flows
            .iter()
            .find(|(o, _)| o.scenario.peer == Peer::Pulsebase && kind(&o.scenario.kind))
    };
    let mut rows = Vec::new();
    if let Some((o, f)) = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 1000,
            rate: 1000,
        }
    }) {
        let d = f.deliveries as f64 / o.duration.as_secs_f64();
        rows.push(format!(
            "| ≥ 518,000 deliveries/s at 1000 subscribers × 1000 writes/s (2× TrailBase's 259k) | {} | {} |",
            thousands(d),
            yes(d >= 518_000.0)
        ));
        rows.push(format!(
            "| nothing lost at 1000 × 1000 (missed, duplicates) | {} missed, {} duplicates | {} |",
            thousands(f.missed as f64),
            thousands(f.duplicates as f64),
            yes(f.missed == 0 && f.duplicates == 0)
        ));
    }
    if let Some((_, f)) = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 100,
            rate: 1000,
        }
    }) {
        rows.push(format!(
            "| p99 ≤ 5 ms at 100 subscribers × 1000 writes/s | {:.2} ms | {} |",
            ms(f.p99_us),
            yes(f.p99_us <= 5_000)
        ));
    }
    let alone = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 0,
            rate: 1000,
        }
    });
    let loaded = ours(&|k| {
        *k == Kind::Fanout {
            subscribers: 1000,
            rate: 1000,
        }
    });
    if let (Some((ao, a)), Some((lo, l))) = (alone, loaded) {
        rows.push(format!(
            "| writes do not wait for fan-out: 1000 writes/s keep their schedule with 1000 subscribers (≥ 95 % of the rate without subscribers); write p50 with vs without | {} vs {} writes/s; p50 {:.2} vs {:.2} ms | {} |",
            thousands(l.writes_done as f64 / lo.duration.as_secs_f64()),
            thousands(a.writes_done as f64 / ao.duration.as_secs_f64()),
            ms(l.write_p50_us),
            ms(a.write_p50_us),
            yes(l.writes_done as f64 >= a.writes_done as f64 * 0.95)
        ));
    }
    for (_, m) in memories.iter().filter(|(o, _)| {
        o.scenario.peer == Peer::Pulsebase
            && matches!(
                o.scenario.kind,
                Kind::Idle {
                    transport: Transport::Ws,
                    ..
                }
            )
    }) {
        rows.push(format!(
            "| ≤ 8 KiB per idle WebSocket ({} connections) | {:.1} KiB | {} |",
            thousands(m.opened as f64),
            m.per_connection_kib(),
            yes(m.per_connection_kib() <= 8.0)
        ));
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n### Aims\n\n| aim | measured | met |\n|---|--:|:-:|");
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
}

pub(super) fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}
