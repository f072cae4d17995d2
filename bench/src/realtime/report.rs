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
             rate R, paced open-loop, on a thread of their own (the subscribers are read on \
             another, so a write's answer does not wait behind the deliveries being tallied), for {} s warm-up + {} s measured. `fanout` writes single \
             records (`POST /api/collections/readings/records`, sync durability: the event \
             leaves after the fsync); `publish` posts messages to a custom topic with \
             `history: 0` (`POST /api/topics/bench/messages`). Latency is from the moment the \
             write was sent to the moment the event was read by the subscriber, on one clock. \
             Deliveries/s counts events read during the measured window. Missed = events of \
             acknowledged writes that a subscriber never received (after waiting up to {} s), \
             summed over subscribers; a subscriber the server closed counts its losses here \
             and under \"closed\".\n\n\
             NATS and Redis rows: the same subscribers on their own protocol (NATS `SUB`, \
             Redis `SUBSCRIBE`, one TCP connection each, no accounts), and one publisher \
             connection sending the same 64-byte JSON messages (`PUB`, `PUBLISH`) on the same \
             paced schedule; `fanout` for them is a publish at R to one subject/channel (they \
             have no records). A broker publish counts as acknowledged once written to the \
             socket. pulsebase's `publish` messages carry the same 64-byte JSON as `data`.\n\n\
             `publish/s100/max`: one publisher connection (pulsebase: the WebSocket `publish` \
             action) keeps {window} messages in flight *end to end*: message n is sent only once \
             every subscriber has read message n − {window}. The rate reached is therefore \
             sustainable by definition: nothing lost, no subscriber more than {window} messages \
             behind; a lost message stalls the loop for 2 s and ends the run (it shows as \
             missed). writes/s done = messages published in the window; latency includes the \
             wait in the window. `burst/s100/nN`: the publisher writes N messages back to back \
             (32 per socket write) with nothing else in flight; deliveries/s is over the burst's \
             span (first send to last read), latency from each message's write. pulsebase's \
             `message_rate` (100 per second per sender by default) is raised to 10,000,000 for \
             every publish scenario, so the limit measured is the fan-out's.\n",
            args.warmup,
            args.duration,
            DRAIN_TIMEOUT.as_secs(),
            window = super::rush::WINDOW,
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
                offered(o.scenario.kind),
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
    super::report_brokers::brokers(&mut md, &flows, &memories);
    aims(&mut md, &flows, &memories);
    md
}

/// The offered rate column: a rate, or how the publisher was driven.
fn offered(kind: Kind) -> String {
    match kind {
        Kind::PublishMax { .. } => "max".into(),
        Kind::Burst { messages, .. } => format!("burst of {messages}"),
        Kind::PublishOne { window } => format!("window {window}"),
        Kind::Fanout { rate, .. }
        | Kind::SseFanout { rate, .. }
        | Kind::Publish { rate, .. }
        | Kind::SeriesFanout { rate, .. } => thousands(f64::from(rate)),
        Kind::Idle { .. } => "-".into(),
    }
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

pub(super) use super::report_brokers::aims;

pub(super) fn yes(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}
