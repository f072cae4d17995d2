//! The MQTT suite's tables for bench/RESULTS.md, and the one-line summary
//! printed after each scenario. The Aims table is in `aims.rs`.

use std::fmt::Write as _;

use super::fanout_qos1::Loss;
use super::run::{self, Timed};
use super::{aims, Outcome, Scenario};
use crate::{mib, thousands, Args};

pub fn line(o: &Outcome) -> String {
    match o {
        Outcome::Ingest(sc, t) => format!(
            "{}: {} readings/s acknowledged{}; server {:.0} %, loadgen {:.0} %, others {:.0} %",
            sc.name(),
            thousands(rate(t.counted, t)),
            stored_note(t),
            t.cpu.server_pct,
            t.cpu.bench_pct,
            t.cpu.other_pct
        ),
        Outcome::Idle(sc, before, after) => format!(
            "{}: RSS {} -> {}, {}",
            sc.name(),
            mib(*before),
            mib(*after),
            per_connection(sc, *before, *after)
        ),
        Outcome::Fanout(sc, t) => format!(
            "{}: {} deliveries/s ({} of {} expected); server {:.0} %, loadgen {:.0} %",
            sc.name(),
            thousands(rate(t.counted, t)),
            t.counted,
            t.sent * subscribers(sc),
            t.cpu.server_pct,
            t.cpu.bench_pct
        ),
        Outcome::FanoutQos1(sc, t, loss) => format!(
            "{}: {} deliveries/s; whole run: {}; server {:.0} %, loadgen {:.0} %",
            sc.name(),
            thousands(rate(t.counted, t)),
            loss_note(loss),
            t.cpu.server_pct,
            t.cpu.bench_pct
        ),
        Outcome::NotSupported(sc, code) => {
            format!("{}: not supported yet (SUBACK 0x{code:02x})", sc.name())
        }
    }
}

fn loss_note(l: &Loss) -> String {
    let mut note = format!(
        "{} sent, {} PUBACKed, {} of {} expected delivered, {} duplicates, {} missing; \
         {} of {} subscribers had the last message {:.1} s after the publisher stopped",
        l.sent,
        l.acked,
        l.delivered,
        l.expected,
        l.duplicates,
        l.missing,
        l.caught_up,
        l.subscribers,
        l.settle.as_secs_f64()
    );
    if l.unreadable > 0 {
        let _ = write!(note, "; {} deliveries without a number", l.unreadable);
    }
    note
}

/// `n` per second of the measured window.
pub(super) fn rate(n: u64, t: &Timed) -> f64 {
    n as f64 / t.secs.max(1e-9)
}

fn stored_note(t: &Timed) -> String {
    match t.stored {
        Some((acked, stored)) if stored >= acked => {
            format!(", all {acked} acknowledged stored ({stored})")
        }
        Some((acked, stored)) => format!(", LOST: {acked} acknowledged, {stored} stored"),
        None => String::new(),
    }
}

pub(super) fn subscribers(sc: &Scenario) -> u64 {
    match *sc {
        Scenario::Fanout { subscribers, .. } => subscribers as u64,
        _ => 0,
    }
}

fn qos(sc: &Scenario) -> Option<u8> {
    match *sc {
        Scenario::Fanout { qos, .. } => Some(qos),
        _ => None,
    }
}

fn per_connection(sc: &Scenario, before: u64, after: u64) -> String {
    format!(
        "{:.1} KiB per connection",
        per_connection_kib(sc, before, after)
    )
}

/// The RSS the connections opened after the baseline added, each.
pub(super) fn per_connection_kib(sc: &Scenario, before: u64, after: u64) -> f64 {
    let n = match *sc {
        Scenario::Idle { connections, .. } => {
            (connections - run::idle_baseline(connections)).max(1)
        }
        _ => 1,
    };
    after.saturating_sub(before) as f64 / n as f64
}

pub fn markdown(args: &Args, outcomes: &[Outcome], failures: &[(String, String)]) -> String {
    let m = &args.mqtt;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Same client for both brokers (a minimal MQTT 3.1.1 client in the generator, one thread); \
         {} s warm-up, {} s measured per timed scenario. CPU is percent of one core over \
         the measured window: the broker, the load generator, and everything else on the machine.\n",
        args.warmup, args.duration
    );
    let _ = writeln!(
        md,
        "### QoS 1 ingest into a series collection\n\n\
         {} clients, each keeping {} QoS 1 publishes in flight, topic `readings/dev-<n>`, a small JSON \
         reading each. pulsebase sends a PUBACK once the reading is fsynced (sync durability) and the \
         count stored is checked afterwards; Mosquitto sends it on receipt (with no subscriber the \
         message goes nowhere; persistence writes snapshots, not each message).\n",
        m.mqtt_clients, m.mqtt_window
    );
    md.push_str("| broker | readings/s acknowledged | acknowledged / stored | broker CPU | loadgen CPU | others |\n|---|--:|--:|--:|--:|--:|\n");
    for o in outcomes {
        if let Outcome::Ingest(sc, t) = o {
            let stored = match t.stored {
                Some((acked, stored)) => format!("{acked} / {stored}"),
                None => "n/a".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} % | {:.0} % | {:.0} % |",
                sc.system().label(),
                thousands(rate(t.counted, t)),
                stored,
                t.cpu.server_pct,
                t.cpu.bench_pct,
                t.cpu.other_pct
            );
        }
    }
    let _ = writeln!(
        md,
        "\n### Memory per idle MQTT connection\n\n\
         {} connections (CONNECT accepted, keep-alive off); VmRSS of the broker once it stops \
         moving (two readings 1 s apart within 256 KiB) with a quarter of them open, then with \
         all of them; per connection = the difference ÷ the other three quarters (the first \
         connections reuse memory the start-up freed).\n",
        m.mqtt_idle
    );
    md.push_str("| broker | RSS at a quarter | RSS at all | per connection |\n|---|--:|--:|--:|\n");
    for o in outcomes {
        if let Outcome::Idle(sc, before, after) = o {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                sc.system().label(),
                mib(*before),
                mib(*after),
                per_connection(sc, *before, *after).replace(" per connection", "")
            );
        }
    }
    let _ = writeln!(
        md,
        "\n### QoS 0 fan-out of a custom topic\n\n\
         {} subscribers to `alerts` at QoS 0, one publisher sending {} messages/s at QoS 0.\n",
        m.mqtt_subscribers, m.mqtt_rate
    );
    md.push_str("| broker | deliveries/s | delivered / expected | broker CPU | loadgen CPU | others |\n|---|--:|--:|--:|--:|--:|\n");
    for o in outcomes {
        match o {
            Outcome::Fanout(sc, t) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {:.0} % | {:.0} % | {:.0} % |",
                    sc.system().label(),
                    thousands(rate(t.counted, t)),
                    t.counted,
                    t.sent * subscribers(sc),
                    t.cpu.server_pct,
                    t.cpu.bench_pct,
                    t.cpu.other_pct
                );
            }
            Outcome::NotSupported(sc, code) if qos(sc) == Some(0) => {
                let _ = writeln!(
                    md,
                    "| {} | not supported yet (SUBACK 0x{code:02x}) | | | | |",
                    sc.system().label()
                );
            }
            _ => {}
        }
    }
    qos1_table(&mut md, args, outcomes);
    aims::table(&mut md, outcomes);
    if !failures.is_empty() {
        md.push_str("\n### Failed scenarios\n\n");
        for (name, e) in failures {
            let _ = writeln!(md, "- `{name}`: {e}");
        }
    }
    md
}

fn qos1_table(md: &mut String, args: &Args, outcomes: &[Outcome]) {
    let m = &args.mqtt;
    let _ = writeln!(
        md,
        "\n### QoS 1 fan-out of a custom topic\n\n\
         {} subscribers to `alerts` at QoS 1, each answering every delivery with a PUBACK; one \
         publisher sending {} numbered messages/s (`{{\"n\":<k>}}`) at QoS 1 without waiting for \
         its PUBACKs. Deliveries/s are counted in the measured window; the rest over the whole run, \
         once every subscriber has seen the last PUBACKed message (at most 15 s after the publisher \
         stops): expected = PUBACKed messages × subscribers, delivered = distinct (message, \
         subscriber) pairs, missing = PUBACKed messages a subscriber never got (0 loss: none).\n",
        m.mqtt_subscribers, m.mqtt_rate
    );
    md.push_str(
        "| broker | deliveries/s | sent / PUBACKed | delivered / expected | duplicates | missing | broker CPU | loadgen CPU | others |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for o in outcomes {
        match o {
            Outcome::FanoutQos1(sc, t, l) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} / {} | {} / {} | {} | {} | {:.0} % | {:.0} % | {:.0} % |",
                    sc.system().label(),
                    thousands(rate(t.counted, t)),
                    l.sent,
                    l.acked,
                    l.delivered,
                    l.expected,
                    l.duplicates,
                    l.missing,
                    t.cpu.server_pct,
                    t.cpu.bench_pct,
                    t.cpu.other_pct
                );
            }
            Outcome::NotSupported(sc, code) if qos(sc) == Some(1) => {
                let _ = writeln!(
                    md,
                    "| {} | not supported yet (SUBACK 0x{code:02x}) | | | | | | | |",
                    sc.system().label()
                );
            }
            _ => {}
        }
    }
}
