//! The MQTT suite's Aims table: each aim checked against this run's
//! outcomes. An aim whose pulsebase scenario did not run is left out, so
//! a run of a few scenarios judges only those.

use std::fmt::Write as _;

use super::report::{per_connection_kib, rate, subscribers};
use super::{Outcome, Scenario, System};
use crate::thousands;

/// Durable QoS 1 readings per second from 100 clients.
const INGEST_PER_S: f64 = 200_000.0;
/// An idle connection may cost at most this many times Mosquitto's.
const IDLE_FACTOR: f64 = 4.0;

struct Row {
    aim: String,
    measured: String,
    /// `None`: not measured (a scenario it compares with did not run).
    met: Option<bool>,
}

pub fn table(md: &mut String, outcomes: &[Outcome]) {
    let rows: Vec<Row> = [ingest(outcomes), fanout_qos0(outcomes), idle(outcomes)]
        .into_iter()
        .flatten()
        .chain(fanout_qos1(outcomes))
        .collect();
    if rows.is_empty() {
        return;
    }
    md.push_str("\n### Aims\n\n| aim | measured | met |\n|---|---|:-:|\n");
    for row in rows {
        let verdict = match row.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {verdict} |", row.aim, row.measured);
    }
}

fn ingest(outcomes: &[Outcome]) -> Option<Row> {
    let (sc, t) = outcomes.iter().find_map(|o| match o {
        Outcome::Ingest(sc, t) if sc.system() == System::Pulsebase => Some((sc, t)),
        _ => None,
    })?;
    let clients = match *sc {
        Scenario::Ingest { clients, .. } => clients,
        _ => 0,
    };
    let per_s = rate(t.counted, t);
    let (stored, all_stored) = match t.stored {
        Some((acked, stored)) if stored >= acked => ("every acknowledged reading stored", true),
        Some(_) => ("acknowledged readings LOST", false),
        None => ("stored readings not counted", false),
    };
    Some(Row {
        aim: format!(
            "QoS 1 ingest ≥ {} readings/s durable from {clients} clients",
            thousands(INGEST_PER_S)
        ),
        measured: format!("{}/s, {stored}", thousands(per_s)),
        met: Some(per_s >= INGEST_PER_S && all_stored && t.errors == 0),
    })
}

/// A broker's QoS 0 fan-out: its scenario and deliveries/s (`None`
/// when it refused the SUBSCRIBE).
fn qos0_deliveries(outcomes: &[Outcome], system: System) -> Option<(&Scenario, Option<f64>)> {
    outcomes.iter().find_map(|o| match o {
        Outcome::Fanout(sc, t) if sc.system() == system => Some((sc, Some(rate(t.counted, t)))),
        Outcome::NotSupported(sc @ Scenario::Fanout { qos: 0, .. }, _) if sc.system() == system => {
            Some((sc, None))
        }
        _ => None,
    })
}

fn fanout_qos0(outcomes: &[Outcome]) -> Option<Row> {
    let (sc, ours) = qos0_deliveries(outcomes, System::Pulsebase)?;
    let shape = match *sc {
        Scenario::Fanout {
            subscribers, rate, ..
        } => format!("{rate} messages/s × {subscribers} subscribers"),
        _ => String::new(),
    };
    let show = |d: Option<f64>| d.map_or_else(|| "not supported".to_owned(), thousands);
    let (measured, met) = match qos0_deliveries(outcomes, System::Mosquitto) {
        None => (
            format!("{} at {shape}; Mosquitto not run", show(ours)),
            ours.map_or(Some(false), |_| None),
        ),
        Some((_, theirs)) => (
            format!("{} vs {} at {shape}", show(ours), show(theirs)),
            Some(match (ours, theirs) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(ours), Some(theirs)) => ours >= theirs,
            }),
        ),
    };
    Some(Row {
        aim: "QoS 0 fan-out ≥ Mosquitto's deliveries/s".into(),
        measured,
        met,
    })
}

fn idle_kib(outcomes: &[Outcome], system: System) -> Option<f64> {
    outcomes.iter().find_map(|o| match o {
        Outcome::Idle(sc, before, after) if sc.system() == system => {
            Some(per_connection_kib(sc, *before, *after))
        }
        _ => None,
    })
}

fn idle(outcomes: &[Outcome]) -> Option<Row> {
    let ours = idle_kib(outcomes, System::Pulsebase)?;
    let aim = format!("idle connection ≤ {IDLE_FACTOR:.0} × Mosquitto's");
    Some(match idle_kib(outcomes, System::Mosquitto) {
        Some(theirs) => Row {
            aim,
            measured: format!(
                "{ours:.1} KiB vs {theirs:.1} KiB ({:.1} ×)",
                ours / theirs.max(1e-9)
            ),
            met: Some(ours <= IDLE_FACTOR * theirs),
        },
        None => Row {
            aim,
            measured: format!("{ours:.1} KiB; Mosquitto not run"),
            met: None,
        },
    })
}

/// One row per broker: the aim is pulsebase's, Mosquitto's row is there
/// to compare with.
fn fanout_qos1(outcomes: &[Outcome]) -> Vec<Row> {
    let ran_ours = outcomes.iter().any(|o| match o {
        Outcome::FanoutQos1(sc, ..) => sc.system() == System::Pulsebase,
        Outcome::NotSupported(sc @ Scenario::Fanout { qos: 1, .. }, _) => {
            sc.system() == System::Pulsebase
        }
        _ => false,
    });
    if !ran_ours {
        return Vec::new();
    }
    let aim = |sc: &Scenario| {
        let label = match sc.system() {
            System::Pulsebase => "pulsebase",
            System::Mosquitto => "Mosquitto, to compare",
        };
        format!("QoS 1 fan-out: 0 loss ({label})")
    };
    outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::FanoutQos1(sc, t, l) => Some(Row {
                aim: aim(sc),
                measured: format!(
                    "{} missing of {} expected ({} PUBACKed of {} sent × {} subscribers), \
                     {} duplicates{}",
                    thousands(l.missing as f64),
                    thousands(l.expected as f64),
                    thousands(l.acked as f64),
                    thousands(l.sent as f64),
                    thousands(subscribers(sc) as f64),
                    thousands(l.duplicates as f64),
                    if t.errors > 0 {
                        format!(", {} errors", t.errors)
                    } else {
                        String::new()
                    }
                ),
                met: Some(l.missing == 0 && l.acked > 0 && t.errors == 0),
            }),
            Outcome::NotSupported(sc @ Scenario::Fanout { qos: 1, .. }, code) => Some(Row {
                aim: aim(sc),
                measured: format!("SUBSCRIBE refused (SUBACK 0x{code:02x})"),
                met: Some(false),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fanout_qos1::Loss;
    use super::super::run::Timed;
    use super::*;

    fn qos1(system: System, missing: u64) -> Outcome {
        let sc = Scenario::Fanout {
            system,
            subscribers: 10,
            rate: 100,
            qos: 1,
        };
        let loss = Loss {
            sent: 5,
            acked: 5,
            expected: 50,
            delivered: 50 - missing,
            duplicates: 0,
            missing,
            unreadable: 0,
            caught_up: 10,
            subscribers: 10,
            settle: std::time::Duration::ZERO,
        };
        Outcome::FanoutQos1(sc, Timed::default(), loss)
    }

    #[test]
    fn one_missing_delivery_fails_the_qos1_aim() {
        let mut md = String::new();
        table(
            &mut md,
            &[qos1(System::Pulsebase, 1), qos1(System::Mosquitto, 0)],
        );
        assert!(md.contains(
            "| QoS 1 fan-out: 0 loss (pulsebase) | 1 missing of 50 expected \
             (5 PUBACKed of 5 sent × 10 subscribers), 0 duplicates | **not met** |"
        ));
        assert!(md.contains("| QoS 1 fan-out: 0 loss (Mosquitto, to compare) | 0 missing"));
        assert!(md.ends_with("0 duplicates | met |\n"), "{md}");

        let mut md = String::new();
        table(&mut md, &[qos1(System::Mosquitto, 0)]);
        assert_eq!(md, "", "no aim without pulsebase's scenario");
    }
}
