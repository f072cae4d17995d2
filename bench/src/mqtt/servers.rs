//! The two brokers under test, started fresh for each scenario: pulsebase
//! with its MQTT listener (a series collection `readings`, a custom topic
//! `alerts` and an API key whose secret is the MQTT password), and
//! Mosquitto 2 with persistence on, from a generated config.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use hyper::Method;
use serde_json::json;

use super::System;
use crate::load;
use crate::procs::{self, Server, ADMIN_EMAIL, ADMIN_PASSWORD};

/// A broker ready for MQTT clients.
pub struct Running {
    pub server: Server,
    pub mqtt: SocketAddr,
    /// The CONNECT password (pulsebase: an API key secret).
    pub password: Option<String>,
    /// pulsebase only: the HTTP address and an admin token.
    pub http: Option<(SocketAddr, String)>,
}

pub struct Binaries<'a> {
    pub pulsebase: &'a Path,
    pub mosquitto: &'a Path,
    pub data_root: &'a Path,
    pub flush_ms: u64,
}

pub fn start(
    rt: &tokio::runtime::Runtime,
    bins: &Binaries,
    system: System,
    label: &str,
) -> anyhow::Result<Running> {
    let dir = procs::fresh_dir(bins.data_root, label)?;
    let port = procs::free_port()?;
    let mqtt = SocketAddr::from(([127, 0, 0, 1], port));
    match system {
        System::Mosquitto => {
            let server = start_mosquitto(bins.mosquitto, dir, mqtt)?;
            Ok(Running {
                server,
                mqtt,
                password: None,
                http: None,
            })
        }
        System::Pulsebase => {
            let listen = mqtt.to_string();
            // Every bench client comes from 127.0.0.1, and the fan-out's
            // one publisher sends more than the default 100 messages/s.
            let env = [
                ("PULSEBASE_MQTT", listen.as_str()),
                ("PULSEBASE_MAX_CONNECTIONS", "1000000"),
                ("PULSEBASE_MAX_CONNECTIONS_PER_IP", "1000000"),
                ("PULSEBASE_MESSAGE_RATE", "1000000"),
            ];
            let server = procs::start_pulsebase_env(
                bins.pulsebase,
                dir,
                "sync",
                bins.flush_ms,
                10_000,
                &env,
            )?;
            let (token, secret) = rt.block_on(setup_pulsebase(server.addr))?;
            Ok(Running {
                http: Some((server.addr, token)),
                server,
                mqtt,
                password: Some(secret),
            })
        }
    }
}

/// The collection, topic and key the scenarios use; answers the admin
/// token and the key's secret.
async fn setup_pulsebase(addr: SocketAddr) -> anyhow::Result<(String, String)> {
    let token = load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let auth = format!("Bearer {token}");
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&auth),
        Some(json!({
            "name": "readings", "kind": "series", "series": "device",
            "fields": {
                "device": {"type": "string", "required": true},
                "temp": {"type": "number"}
            },
            "rules": {"list": "@user != null", "create": "@user != null"}
        })),
    )
    .await?;
    load::request_ok(
        addr,
        Method::POST,
        "/api/topics",
        Some(&auth),
        Some(json!({"name": "alerts", "subscribe": "true", "publish": "@user != null"})),
    )
    .await?;
    let key = load::request_ok(
        addr,
        Method::POST,
        "/api/keys",
        Some(&auth),
        Some(json!({"name": "bench", "roles": ["device"]})),
    )
    .await?;
    let secret = key["secret"]
        .as_str()
        .context("no secret in the key answer")?
        .to_owned();
    Ok((token, secret))
}

/// Readings stored in `readings`: the sum of a `count()` aggregate over
/// two days around now, in one bucket.
pub async fn stored_readings(addr: SocketAddr, token: &str) -> anyhow::Result<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (from, to) = (now - 86_400, now + 86_400);
    let path = format!(
        "/api/collections/readings/aggregate?from={from}000&to={to}000&bucket=30d&agg=count()"
    );
    let answer = load::request_ok(
        addr,
        Method::GET,
        &path,
        Some(&format!("Bearer {token}")),
        None,
    )
    .await?;
    let buckets = answer["buckets"].as_array().context("no buckets")?;
    Ok(buckets
        .iter()
        .filter_map(|b| b["values"]["count()"].as_u64())
        .sum())
}

/// Mosquitto on `addr` with persistence in `dir`, anonymous clients
/// allowed (the load is loopback only), no connection limit.
fn start_mosquitto(
    binary: &Path,
    dir: std::path::PathBuf,
    addr: SocketAddr,
) -> anyhow::Result<Server> {
    let data = dir.join("data");
    fs::create_dir_all(&data)?;
    let config = dir.join("mosquitto.conf");
    fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {data}/\n\
             max_connections -1\n\
             log_dest file {log}\n\
             log_type error\n\
             log_type warning\n",
            port = addr.port(),
            data = data.display(),
            log = dir.join("mosquitto.log").display(),
        ),
    )?;
    let child = Command::new(binary)
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("server.log"))?)
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (install the mosquitto package)",
                binary.display()
            )
        })?;
    let log = dir.clone();
    let server = Server {
        child,
        addr,
        dir,
        keep_dir: false,
        exit: None,
    };
    procs::wait_until_listening(server, "mosquitto", Duration::from_secs(10), &log)
}
