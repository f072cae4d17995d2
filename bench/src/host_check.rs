//! How fast this machine is right now at what fan-out costs most: writes
//! through the kernel's loopback TCP path, and a thread waking another.
//!
//! On a shared virtual machine the host can get slower within minutes
//! with nothing to show for it inside the machine (no other process, no
//! steal time reported): the same server binary needed 96-105 % of a core
//! for one scenario and 114-126 % for the same scenario half an hour
//! later. `bench/run.sh` runs this check before and after a suite, so a
//! run says which state of the host it saw; only runs with similar checks
//! compare.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How long each part measures.
const SPAN: Duration = Duration::from_millis(500);
/// The size of one write in the throughput part: about a batch of 20
/// events, what a busy connection writes at once.
const WRITE: usize = 4096;

/// The check's figures.
pub struct HostCheck {
    /// 4 KiB writes per second, one writer, one reader draining.
    pub writes_per_s: f64,
    /// 64-byte round trips per second between two threads.
    pub round_trips_per_s: f64,
}

impl std::fmt::Display for HostCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "loopback TCP: {:.0} writes/s of 4 KiB, {:.0} round trips/s of 64 bytes",
            self.writes_per_s, self.round_trips_per_s
        )
    }
}

pub fn run() -> anyhow::Result<HostCheck> {
    Ok(HostCheck {
        writes_per_s: writes()?,
        round_trips_per_s: round_trips()?,
    })
}

/// A connected pair of loopback sockets, Nagle off as the server's are.
fn pair() -> anyhow::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((server, client))
}

fn writes() -> anyhow::Result<f64> {
    let (mut writer, mut reader) = pair()?;
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let chunk = [b'e'; WRITE];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < SPAN {
        writer.write_all(&chunk)?;
        count += 1;
    }
    let took = started.elapsed().as_secs_f64();
    drop(writer);
    let _ = drain.join();
    Ok(count as f64 / took)
}

fn round_trips() -> anyhow::Result<f64> {
    let (mut near, mut far) = pair()?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while far.read_exact(&mut buf).is_ok() {
            if far.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut buf = [b'p'; 64];
    let started = Instant::now();
    let mut count = 0u64;
    while started.elapsed() < SPAN {
        near.write_all(&buf)?;
        near.read_exact(&mut buf)?;
        count += 1;
    }
    let took = started.elapsed().as_secs_f64();
    drop(near);
    let _ = echo.join();
    Ok(count as f64 / took)
}
