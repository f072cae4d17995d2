//! Starting and stopping the servers under test, and reading their CPU and
//! memory from /proc.

use std::fs;
use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";

/// A running server; stopped (SIGTERM, then SIGKILL after a grace period)
/// and its data dir removed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub keep_dir: bool,
    /// Exit status text, once stopped.
    pub exit: Option<String>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait (a pulsebase server flushes storage on the way out).
    pub fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if self.exit.is_some() {
            return Duration::ZERO;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.exit = Some(status.to_string());
                    break;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    self.exit = Some("killed after 30 s".into());
                    break;
                }
            }
        }
        started.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh, empty directory under `root`.
pub fn fresh_dir(root: &Path, label: &str) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = root.join(format!(
        "pulsebase-bench-{}-{}-{nanos}",
        label.replace('/', "-"),
        std::process::id()
    ));
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Starts `pulsebase serve` on 127.0.0.1:0 and waits for its
/// `listening on http://…` line.
pub fn start_pulsebase(
    binary: &Path,
    dir: PathBuf,
    durability: &str,
    flush_ms: u64,
    max_batch: usize,
) -> anyhow::Result<Server> {
    start_pulsebase_env(binary, dir, durability, flush_ms, max_batch, &[])
}

/// [`start_pulsebase`] with extra environment settings (e.g.
/// `PULSEBASE_CACHE_MB`), for scenarios that measure a setting.
pub fn start_pulsebase_env(
    binary: &Path,
    dir: PathBuf,
    durability: &str,
    flush_ms: u64,
    max_batch: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<Server> {
    let log = fs::File::create(dir.join("server.log"))?;
    let data = dir.join("data");
    let mut child = Command::new(binary)
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(&data)
        .args([
            "--durability",
            durability,
            "--flush-ms",
            &flush_ms.to_string(),
        ])
        .args(["--max-batch", &max_batch.to_string()])
        .env("PULSEBASE_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("PULSEBASE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PULSEBASE_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if !sent {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                    sent = true;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
        }
    });
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        dir,
        keep_dir: false,
        exit: None,
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => {
            server.addr = addr
                .parse()
                .with_context(|| format!("unexpected listen address {addr:?}"))?;
        }
        Err(_) => {
            server.keep_dir = true;
            bail!(
                "pulsebase did not report its address; see {}",
                server.dir.join("server.log").display()
            );
        }
    }
    Ok(server)
}

/// A free loopback port (bound, read and released; PocketBase needs one).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Creates the superuser, starts `pocketbase serve` on a free loopback port
/// and waits until it accepts connections.
pub fn start_pocketbase(binary: &Path, dir: PathBuf) -> anyhow::Result<Server> {
    let pb_data = dir.join("pb_data");
    let out = Command::new(binary)
        .args(["superuser", "upsert", ADMIN_EMAIL, ADMIN_PASSWORD, "--dir"])
        .arg(&pb_data)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "pocketbase superuser upsert failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = fs::File::create(dir.join("server.log"))?;
    let child = Command::new(binary)
        .args(["serve", "--http", &addr.to_string(), "--dir"])
        .arg(&pb_data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let log = dir.join("server.log");
    let server = Server {
        child,
        addr,
        dir,
        keep_dir: false,
        exit: None,
    };
    wait_until_listening(server, "pocketbase", Duration::from_secs(30), &log)
}

/// Waits for a started server's port to accept connections. A server that
/// exits first, or never listens, keeps its dir for `log` to be read.
pub fn wait_until_listening(
    mut server: Server,
    what: &str,
    within: Duration,
    log: &Path,
) -> anyhow::Result<Server> {
    let addr = server.addr;
    let deadline = Instant::now() + within;
    loop {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(server);
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            server.exit = Some(status.to_string());
            server.keep_dir = true;
            bail!("{what} exited ({status}); see {}", log.display());
        }
        if Instant::now() > deadline {
            server.keep_dir = true;
            bail!(
                "{what} did not start listening on {addr} within {} s",
                within.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// VmRSS of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// VmHWM of a process: the highest RSS since it started, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Disk space a directory tree takes (allocated blocks, as `du` counts).
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// `write_bytes` of /proc/pid/io: bytes sent to the storage layer.
pub fn write_bytes(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Clock ticks per second for /proc CPU times.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// (comm, utime + stime in ticks) from a /proc/.../stat file.
fn stat_cpu(path: &str) -> Option<(String, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 0, utime 11, stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

/// CPU ticks of a whole process (all threads).
pub fn process_ticks(pid: u32) -> u64 {
    stat_cpu(&format!("/proc/{pid}/stat"))
        .map(|(_, t)| t)
        .unwrap_or(0)
}

/// CPU ticks of this process.
pub fn self_ticks() -> u64 {
    stat_cpu("/proc/self/stat").map(|(_, t)| t).unwrap_or(0)
}

/// CPU ticks per thread of a process, keyed by tid, with the thread name.
pub fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let (comm, ticks) = stat_cpu(&format!("/proc/{pid}/task/{tid}/stat"))?;
            Some((tid, comm, ticks))
        })
        .collect()
}

/// Whole-machine CPU ticks from /proc/stat: (total, idle, iowait).
pub fn machine_ticks() -> (u64, u64, u64) {
    let Ok(text) = fs::read_to_string("/proc/stat") else {
        return (0, 0, 0);
    };
    let Some(line) = text.lines().next() else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest fields are
    // already inside user/nice).
    let total: u64 = v.iter().take(8).sum();
    (
        total,
        v.get(3).copied().unwrap_or(0),
        v.get(4).copied().unwrap_or(0),
    )
}

/// A CPU snapshot taken at the start and at the end of the measured window.
#[derive(Clone, Default)]
pub struct CpuSnapshot {
    pub server: u64,
    pub bench: u64,
    pub machine: (u64, u64, u64),
    pub threads: Vec<(u32, String, u64)>,
    /// Bytes the server caused to be written to storage (/proc/pid/io).
    pub write_bytes: u64,
    pub at: Option<Instant>,
}

impl CpuSnapshot {
    pub fn take(server_pid: u32) -> CpuSnapshot {
        CpuSnapshot {
            server: process_ticks(server_pid),
            bench: self_ticks(),
            machine: machine_ticks(),
            threads: thread_ticks(server_pid),
            write_bytes: write_bytes(server_pid),
            at: Some(Instant::now()),
        }
    }
}

/// CPU use over a window, as percent of one core (200 % = both cores).
#[derive(Clone, Debug, Default)]
pub struct CpuUse {
    pub server_pct: f64,
    pub bench_pct: f64,
    /// Machine-wide idle (without iowait) and iowait, percent of all cores.
    pub idle_pct: f64,
    pub iowait_pct: f64,
    /// CPU used by everything else on the machine (other processes, the
    /// kernel outside these two), percent of one core: a noise indicator.
    pub other_pct: f64,
    /// Busiest server threads, grouped by name: (name, % of one core, count).
    pub threads: Vec<(String, f64, usize)>,
    /// Storage writes by the server during the window, bytes.
    pub write_bytes: u64,
}

pub fn cpu_use(a: &CpuSnapshot, b: &CpuSnapshot, hz: u64) -> CpuUse {
    let secs = match (a.at, b.at) {
        (Some(x), Some(y)) if y > x => (y - x).as_secs_f64(),
        _ => return CpuUse::default(),
    };
    let pct = |ticks: u64| ticks as f64 / hz as f64 / secs * 100.0;
    let total = b.machine.0.saturating_sub(a.machine.0).max(1) as f64;
    let mut by_name: Vec<(String, f64, usize)> = Vec::new();
    for (tid, name, end) in &b.threads {
        let start = a
            .threads
            .iter()
            .find(|(t, _, _)| t == tid)
            .map(|(_, _, s)| *s)
            .unwrap_or(0);
        let p = pct(end.saturating_sub(start));
        match by_name.iter_mut().find(|(n, _, _)| n == name) {
            Some(entry) => {
                entry.1 += p;
                entry.2 += 1;
            }
            None => by_name.push((name.clone(), p, 1)),
        }
    }
    by_name.sort_by(|x, y| y.1.total_cmp(&x.1));
    by_name.retain(|(_, p, _)| *p >= 1.0);
    let server_pct = pct(b.server.saturating_sub(a.server));
    let bench_pct = pct(b.bench.saturating_sub(a.bench));
    let idle = b.machine.1.saturating_sub(a.machine.1) as f64;
    let iowait = b.machine.2.saturating_sub(a.machine.2) as f64;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let busy_pct = (total - idle - iowait).max(0.0) / total * cores * 100.0;
    CpuUse {
        server_pct,
        bench_pct,
        idle_pct: idle / total * 100.0,
        iowait_pct: iowait / total * 100.0,
        other_pct: (busy_pct - server_pct - bench_pct).max(0.0),
        threads: by_name,
        write_bytes: b.write_bytes.saturating_sub(a.write_bytes),
    }
}

/// Waits (up to `max`) until the whole machine uses less than a quarter of a
/// core over half a second, so another job's build or test run does not eat
/// into a scenario. Says so on stderr when it waits.
pub fn wait_for_quiet(max: Duration) {
    if max.is_zero() {
        return;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let started = Instant::now();
    let mut told = false;
    loop {
        let a = machine_ticks();
        std::thread::sleep(Duration::from_millis(500));
        let b = machine_ticks();
        let total = b.0.saturating_sub(a.0).max(1) as f64;
        let idle = (b.1.saturating_sub(a.1) + b.2.saturating_sub(a.2)) as f64;
        let busy_pct = (total - idle).max(0.0) / total * cores * 100.0;
        if busy_pct < 25.0 {
            if told {
                eprintln!(
                    "    machine quiet after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
            return;
        }
        if started.elapsed() >= max {
            eprintln!("    machine still busy ({busy_pct:.0} % of a core); running anyway");
            return;
        }
        if !told {
            eprintln!(
                "    machine busy ({busy_pct:.0} % of a core used by others); waiting up to {} s",
                max.as_secs()
            );
            told = true;
        }
    }
}
