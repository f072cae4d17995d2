//! The realtime section's comparison with NATS and Redis, and its aims
//! table (several aims are relative to those brokers in the same run).

use super::*;

use super::report::yes;
use crate::{ms, thousands};

type Flows<'a> = [(&'a Outcome, &'a Flow)];
type Memories<'a> = [(&'a Outcome, &'a Memory)];

fn find<'a>(flows: &Flows<'a>, peer: Peer, kind: Kind) -> Option<(&'a Outcome, &'a Flow)> {
    flows
        .iter()
        .find(|(o, _)| o.scenario.peer == peer && o.scenario.kind == kind)
        .copied()
}

/// A workload as each side runs it: pulsebase's kind, and the brokers'.
type Workload = (Kind, Kind);

/// The run of `workload` by `peer`.
fn find_run<'a>(
    flows: &Flows<'a>,
    peer: Peer,
    (ours, brokers): Workload,
) -> Option<(&'a Outcome, &'a Flow)> {
    find(
        flows,
        peer,
        if peer == Peer::Pulsebase {
            ours
        } else {
            brokers
        },
    )
}

fn per_s(o: &Outcome, x: u64) -> f64 {
    x as f64 / o.duration.as_secs_f64().max(1e-9)
}

const MAX: Kind = Kind::PublishMax { subscribers: 100 };
const PACED: Kind = Kind::Publish {
    subscribers: 100,
    rate: 1000,
};
const FANOUT: Kind = Kind::Fanout {
    subscribers: 1000,
    rate: 1000,
};
/// pulsebase's custom topic at the brokers' fan-out load: the same
/// delivery path as a record's event, without the durable write.
const TOPIC_FANOUT: Kind = Kind::Publish {
    subscribers: 1000,
    rate: 1000,
};
const BURST: Kind = Kind::Burst {
    subscribers: 100,
    messages: 2000,
};

/// Lost = missed + duplicates + closed subscribers, as one text.
fn loss(f: &Flow) -> String {
    format!(
        "{} missed, {} dup, {} closed",
        thousands(f.missed as f64),
        thousands(f.duplicates as f64),
        f.closed
    )
}

fn lossless(f: &Flow) -> bool {
    f.missed == 0 && f.duplicates == 0 && f.closed == 0 && f.write_errors == 0
}

pub(super) fn brokers(md: &mut String, flows: &Flows, memories: &Memories) {
    let peers = [Peer::Pulsebase, Peer::Nats, Peer::Redis];
    if !flows
        .iter()
        .any(|(o, _)| matches!(o.scenario.peer, Peer::Nats | Peer::Redis))
    {
        return;
    }
    let _ = writeln!(
        md,
        "\n### pulsebase beside NATS and Redis, same run\n\n\
         Ratios are pulsebase ÷ broker: above 1 is pulsebase higher (better for rates, \
         worse for latency and memory). `fanout/s1000/r1000` and `fanout/s1000/r2000` are \
         record creates for pulsebase (each checked against the view rule per subscriber, \
         fsynced first) and a plain publish for the brokers. `publish/s1000/r1000` sets \
         pulsebase's custom topic (`history: 0`, no durable write) at the same rate and \
         subscribers against the brokers' `fanout/s1000/r1000`.\n"
    );
    let _ = writeln!(
        md,
        "| workload | figure | pulsebase | NATS | Redis | ÷ NATS | ÷ Redis |\n|---|---|--:|--:|--:|--:|--:|"
    );
    type Pick = fn(&Outcome, &Flow) -> f64;
    let deliveries: Pick = |o, f| per_s(o, f.deliveries);
    let p99: Pick = |_, f| ms(f.p99_us);
    // A custom topic (no durable write) against the brokers' fan-out.
    let topic_fanout: Workload = (TOPIC_FANOUT, FANOUT);
    let same = |kind| (kind, kind);
    let rows: [(Workload, &str, Pick, bool); 11] = [
        (same(MAX), "deliveries/s", deliveries, false),
        (same(MAX), "p99 ms", p99, true),
        (same(PACED), "p99 ms", p99, true),
        (same(FANOUT), "deliveries/s", deliveries, false),
        (same(FANOUT), "p99 ms", p99, true),
        (topic_fanout, "deliveries/s", deliveries, false),
        (topic_fanout, "p99 ms", p99, true),
        (same(HEADROOM), "deliveries/s", deliveries, false),
        (same(HEADROOM), "p99 ms", p99, true),
        (same(BURST), "p99 ms", p99, true),
        (same(BURST), "max ms", |_, f| ms(f.max_us), true),
    ];
    for (run, figure, pick, is_ms) in rows {
        let values: Vec<Option<f64>> = peers
            .iter()
            .map(|&p| find_run(flows, p, run).map(|(o, f)| pick(o, f)))
            .collect();
        let cell = |v: Option<f64>| match v {
            Some(v) if is_ms => format!("{v:.2}"),
            Some(v) => thousands(v),
            None => "-".into(),
        };
        let ratio = |b: Option<f64>| match (values[0], b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {figure} | {} | {} | {} | {} | {} |",
            workload(run.0),
            cell(values[0]),
            cell(values[1]),
            cell(values[2]),
            ratio(values[1]),
            ratio(values[2]),
        );
    }
    let runs = [
        same(MAX),
        same(PACED),
        same(FANOUT),
        topic_fanout,
        same(HEADROOM),
        same(BURST),
    ];
    for run in runs {
        let cells: Vec<String> = peers
            .iter()
            .map(|&p| find_run(flows, p, run).map_or("-".into(), |(_, f)| loss(f)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | lost | {} | {} | {} | | |",
            workload(run.0),
            cells[0],
            cells[1],
            cells[2]
        );
    }
    let memory = |peer: Peer, transport: Transport| {
        memories
            .iter()
            .find(|(o, _)| {
                o.scenario.peer == peer
                    && matches!(o.scenario.kind, Kind::Idle { transport: t, .. } if t == transport)
            })
            .map(|(_, m)| m.per_connection_kib())
    };
    let nats = memory(Peer::Nats, Transport::Tcp);
    let redis = memory(Peer::Redis, Transport::Tcp);
    for (label, transport) in [("WebSocket", Transport::Ws), ("SSE", Transport::Sse)] {
        let ours = memory(Peer::Pulsebase, transport);
        let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let ratio = |b: Option<f64>| match (ours, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| idle, 10,000 subscribed connections | KiB per connection (pulsebase {label}) | {} | {} | {} | {} | {} |",
            cell(ours),
            cell(nats),
            cell(redis),
            ratio(nats),
            ratio(redis)
        );
    }
}

/// The product's realtime aims, met or not in this run.
pub(crate) fn aims(md: &mut String, flows: &Flows, memories: &Memories) {
    let ours = |kind| find(flows, Peer::Pulsebase, kind);
    let mut rows = Vec::new();
    if let Some((o, f)) = ours(MAX) {
        let d = per_s(o, f.deliveries);
        let nats = find(flows, Peer::Nats, MAX).map(|(o, f)| per_s(o, f.deliveries));
        rows.push(format!(
            "| custom topic, 100 subscribers, 64-byte messages, highest lossless rate: deliveries/s ≥ NATS's, 0 loss | {} vs NATS {}; {} | {} |",
            thousands(d),
            nats.map_or("not run".into(), thousands),
            loss(f),
            yes(nats.is_some_and(|n| d >= n) && lossless(f))
        ));
    }
    if let Some((o, f)) = ours(FANOUT) {
        let d = per_s(o, f.deliveries);
        rows.push(format!(
            "| record fan-out, 1000 subscribers × 1000 writes/s: ≥ 1,000,000 deliveries/s | {} | {} |",
            thousands(d),
            yes(d >= 1_000_000.0)
        ));
        let redis = find(flows, Peer::Redis, FANOUT).map(|(_, f)| f.p99_us);
        rows.push(format!(
            "| … p99 ≤ Redis's p99 (the same rate published to one channel, 1000 subscribers) | {:.2} ms vs Redis {} | {} |",
            ms(f.p99_us),
            redis.map_or("not run".into(), |r| format!("{:.2} ms", ms(r))),
            yes(redis.is_some_and(|r| f.p99_us <= r))
        ));
        rows.push(format!(
            "| … 0 missed, 0 duplicated | {} | {} |",
            loss(f),
            yes(f.missed == 0 && f.duplicates == 0)
        ));
    }
    if let Some((o, f)) = ours(HEADROOM) {
        let d = per_s(o, f.deliveries);
        rows.push(format!(
            "| past a million: the same 1000 subscribers at 2000 writes/s (2,000,000 deliveries/s offered), ≥ 1,000,000 deliveries/s, 0 missed, 0 duplicated | {}; {} | {} |",
            thousands(d),
            loss(f),
            yes(d >= 1_000_000.0 && lossless(f))
        ));
    }
    if let Some((_, f)) = ours(PACED) {
        rows.push(format!(
            "| custom topic, 100 subscribers × 1000 messages/s: p99 ≤ 2 ms | {:.2} ms | {} |",
            ms(f.p99_us),
            yes(f.p99_us <= 2_000 && f.write_errors == 0)
        ));
    }
    if let Some((_, f)) = ours(BURST) {
        rows.push(format!(
            "| burst of 2,000 messages to 100 subscribers: 0 closes, 0 loss | {} | {} |",
            loss(f),
            yes(lossless(f))
        ));
    }
    let alone = ours(Kind::Fanout {
        subscribers: 0,
        rate: 1000,
    });
    if let (Some((ao, a)), Some((lo, l))) = (alone, ours(FANOUT)) {
        rows.push(format!(
            "| realtime does not slow writes: with 1000 subscribers, 1000 writes/s keep their schedule and the write p50 stays within 2× of the p50 without subscribers | {} vs {} writes/s; p50 {:.2} vs {:.2} ms | {} |",
            thousands(per_s(lo, l.writes_done)),
            thousands(per_s(ao, a.writes_done)),
            ms(l.write_p50_us),
            ms(a.write_p50_us),
            yes(l.writes_done as f64 >= a.writes_done as f64 * 0.95
                && l.write_p50_us <= a.write_p50_us * 2)
        ));
    }
    for (o, m) in memories
        .iter()
        .filter(|(o, _)| o.scenario.peer == Peer::Pulsebase)
    {
        let (label, limit) = match o.scenario.kind {
            Kind::Idle {
                transport: Transport::Ws,
                ..
            } => ("WebSocket", 4.0),
            Kind::Idle {
                transport: Transport::Sse,
                ..
            } => ("SSE", 8.0),
            _ => continue,
        };
        rows.push(format!(
            "| ≤ {limit:.0} KiB per idle {label} ({} connections) | {:.1} KiB | {} |",
            thousands(m.opened as f64),
            m.per_connection_kib(),
            yes(m.per_connection_kib() <= limit)
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

/// A workload's name without the peer: `publish/s100/max`.
fn workload(kind: Kind) -> String {
    let name = Scenario {
        peer: Peer::Pulsebase,
        kind,
    }
    .name();
    name.trim_start_matches("pulsebase/").to_owned()
}
