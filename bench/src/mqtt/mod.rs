//! The MQTT suite (`--suite mqtt`): pulsebase's MQTT listener beside
//! Mosquitto 2 (persistence on), in the same run with the same hand-made
//! client (`client.rs`): QoS 1 ingest into a series collection from many
//! publishing clients, memory per idle connection, and fan-out of one
//! topic to many subscribers at QoS 0 and at QoS 1 (with a loss count).
//! `servers.rs` starts the brokers, `run.rs` and `fanout_qos1.rs` hold
//! the load, `report.rs` and `aims.rs` the RESULTS.md section.

use std::path::PathBuf;
use std::time::Duration;

use crate::Args;

mod aims;
mod client;
mod fanout_qos1;
mod report;
mod run;
mod servers;

pub use report::markdown;

/// Options of the MQTT suite.
#[derive(clap::Args, Debug, Clone)]
pub struct MqttArgs {
    /// mqtt suite: the Mosquitto binary (Debian package `mosquitto`).
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    pub mosquitto: PathBuf,
    /// mqtt suite: publishing clients in the ingest scenario.
    #[arg(long, default_value_t = 100)]
    pub mqtt_clients: usize,
    /// mqtt suite: QoS 1 publishes each ingest client keeps in flight.
    #[arg(long, default_value_t = 16)]
    pub mqtt_window: u16,
    /// mqtt suite: idle connections whose memory is measured.
    #[arg(long, default_value_t = 10_000)]
    pub mqtt_idle: usize,
    /// mqtt suite: subscribers in the fan-out scenarios.
    #[arg(long, default_value_t = 1000)]
    pub mqtt_subscribers: usize,
    /// mqtt suite: messages per second the fan-outs' publisher sends.
    #[arg(long, default_value_t = 100)]
    pub mqtt_rate: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Pulsebase,
    Mosquitto,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Pulsebase => "pulsebase",
            System::Mosquitto => "mosquitto",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Scenario {
    Ingest {
        system: System,
        clients: usize,
        window: u16,
    },
    Idle {
        system: System,
        connections: usize,
    },
    Fanout {
        system: System,
        subscribers: usize,
        rate: u32,
        /// 0, or 1 with the loss count.
        qos: u8,
    },
}

impl Scenario {
    pub fn name(&self) -> String {
        match *self {
            Scenario::Ingest {
                system,
                clients,
                window,
            } => {
                format!("ingest/qos1/c{clients}/w{window}/{}", system.label())
            }
            Scenario::Idle {
                system,
                connections,
            } => {
                format!("idle/n{connections}/{}", system.label())
            }
            Scenario::Fanout {
                system,
                subscribers,
                rate,
                qos,
            } => {
                format!("fanout/qos{qos}/s{subscribers}/r{rate}/{}", system.label())
            }
        }
    }

    pub fn system(&self) -> System {
        match *self {
            Scenario::Ingest { system, .. }
            | Scenario::Idle { system, .. }
            | Scenario::Fanout { system, .. } => system,
        }
    }
}

pub fn all_scenarios(args: &Args) -> Vec<Scenario> {
    let m = &args.mqtt;
    let mut out = Vec::new();
    for system in [System::Pulsebase, System::Mosquitto] {
        out.push(Scenario::Ingest {
            system,
            clients: m.mqtt_clients,
            window: m.mqtt_window,
        });
    }
    for system in [System::Pulsebase, System::Mosquitto] {
        out.push(Scenario::Idle {
            system,
            connections: m.mqtt_idle,
        });
    }
    for qos in [0, 1] {
        for system in [System::Pulsebase, System::Mosquitto] {
            out.push(Scenario::Fanout {
                system,
                subscribers: m.mqtt_subscribers,
                rate: m.mqtt_rate,
                qos,
            });
        }
    }
    out
}

/// What a scenario measured.
pub enum Outcome {
    Ingest(Scenario, run::Timed),
    /// RSS before and after the connections, KiB.
    Idle(Scenario, u64, u64),
    Fanout(Scenario, run::Timed),
    FanoutQos1(Scenario, run::Timed, fanout_qos1::Loss),
    /// The broker refused the fan-out's SUBSCRIBE (its SUBACK code).
    NotSupported(Scenario, u8),
}

impl Outcome {
    fn other_cpu(&self) -> f64 {
        match self {
            Outcome::Ingest(_, t) | Outcome::Fanout(_, t) | Outcome::FanoutQos1(_, t, _) => {
                t.cpu.other_pct
            }
            _ => 0.0,
        }
    }

    fn errors(&self) -> u64 {
        match self {
            Outcome::Ingest(_, t) | Outcome::Fanout(_, t) => {
                let lost = t
                    .stored
                    .map_or(0, |(acked, stored)| u64::from(stored < acked));
                t.errors + lost
            }
            Outcome::FanoutQos1(_, t, loss) => t.errors + u64::from(loss.missing > 0),
            _ => 0,
        }
    }

    fn print(&self) {
        eprintln!("    {}", report::line(self));
    }
}

fn run_one(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    bins: &servers::Binaries,
    sc: Scenario,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let broker = servers::start(rt, bins, sc.system(), &format!("mqtt-{}", sc.name()))?;
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    let outcome = match sc {
        Scenario::Ingest {
            clients, window, ..
        } => {
            let t = rt.block_on(run::ingest(&broker, clients, window, warmup, measure, hz))?;
            Outcome::Ingest(sc, t)
        }
        Scenario::Idle { connections, .. } => {
            let (before, after) = rt.block_on(run::idle(&broker, connections))?;
            Outcome::Idle(sc, before, after)
        }
        Scenario::Fanout {
            subscribers,
            rate,
            qos: 0,
            ..
        } => match rt.block_on(run::fanout(&broker, subscribers, rate, warmup, measure, hz))? {
            run::Fanout::Ran(t) => Outcome::Fanout(sc, t),
            run::Fanout::Refused(code) => Outcome::NotSupported(sc, code),
        },
        Scenario::Fanout {
            subscribers, rate, ..
        } => {
            let load = fanout_qos1::fanout_qos1(&broker, subscribers, rate, warmup, measure, hz);
            match rt.block_on(load)? {
                Ok((t, loss)) => Outcome::FanoutQos1(sc, t, loss),
                Err(code) => Outcome::NotSupported(sc, code),
            }
        }
    };
    drop(broker);
    Ok(outcome)
}

/// Runs the chosen scenarios; answers the Markdown and the error count.
pub fn suite(
    rt: &tokio::runtime::Runtime,
    args: &Args,
    (server_bin, data_root, hz): (&std::path::Path, &std::path::Path, u64),
    chosen: &[bool],
    announce: &mut impl FnMut(&str),
    failures: &mut Vec<(String, String)>,
) -> (String, u64) {
    let bins = servers::Binaries {
        pulsebase: server_bin,
        mosquitto: &args.mqtt.mosquitto,
        data_root,
        flush_ms: args.flush_ms,
    };
    let mut outcomes = Vec::new();
    for (sc, _) in all_scenarios(args)
        .into_iter()
        .zip(chosen)
        .filter(|(_, c)| **c)
    {
        announce(&sc.name());
        let attempt = || run_one(rt, args, &bins, sc, hz);
        match crate::with_retries(
            args,
            attempt,
            Outcome::other_cpu,
            Outcome::errors,
            Outcome::print,
        ) {
            Ok((o, _)) => outcomes.push(o),
            Err(e) => failures.push((sc.name(), e)),
        }
    }
    let errors = outcomes.iter().map(Outcome::errors).sum();
    (markdown(args, &outcomes, failures), errors)
}
