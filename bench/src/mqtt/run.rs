//! The scenarios' load, the same against either broker: QoS 1 ingest
//! with a window of publishes in flight per client, idle connections held
//! open, and QoS 0 fan-out of one topic (QoS 1 fan-out is in
//! `fanout_qos1.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::client::{self, Conn, Packet};
use super::servers::Running;
use crate::procs::{self, CpuSnapshot, CpuUse};

/// What a timed scenario counted over its measured window.
#[derive(Clone, Debug, Default)]
pub struct Timed {
    pub secs: f64,
    /// Ingest: PUBACKs; fan-out: PUBLISHes received by subscribers.
    pub counted: u64,
    /// Fan-out: PUBLISHes sent by the publisher in the window.
    pub sent: u64,
    pub cpu: CpuUse,
    pub errors: u64,
    /// Ingest into pulsebase: (acknowledged over the whole run, stored).
    pub stored: Option<(u64, u64)>,
}

/// `clients` connections publishing QoS 1 readings, each keeping
/// `window` unacknowledged; PUBACKs in the measured window are counted.
pub async fn ingest(
    broker: &Running,
    clients: usize,
    window: u16,
    warmup: Duration,
    measure: Duration,
    hz: u64,
) -> anyhow::Result<Timed> {
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let conn = Conn::open(
            broker.mqtt,
            &format!("bench-{c}"),
            broker.password.as_deref(),
        )
        .await?;
        tasks.push(tokio::spawn(publisher(
            conn,
            c,
            window,
            acked.clone(),
            stop.clone(),
        )));
    }
    tokio::time::sleep(warmup).await;
    let (a, n0) = (
        CpuSnapshot::take(broker.server.pid()),
        acked.load(Ordering::Relaxed),
    );
    tokio::time::sleep(measure).await;
    let (b, n1) = (
        CpuSnapshot::take(broker.server.pid()),
        acked.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0;
    for task in tasks {
        if !matches!(task.await, Ok(Ok(()))) {
            errors += 1;
        }
    }
    let hz_secs = b.at.zip(a.at).map_or(0.0, |(b, a)| (b - a).as_secs_f64());
    let stored = match &broker.http {
        Some((addr, token)) => Some((
            acked.load(Ordering::Relaxed),
            super::servers::stored_readings(*addr, token).await?,
        )),
        None => None,
    };
    Ok(Timed {
        secs: hz_secs,
        counted: n1 - n0,
        sent: 0,
        cpu: procs::cpu_use(&a, &b, hz),
        errors,
        stored,
    })
}

/// One client's loop: top the window up in one write, read the acks.
/// After `stop`, sends nothing more and waits for what is in flight.
async fn publisher(
    mut conn: Conn,
    c: usize,
    window: u16,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let topic = format!("readings/dev-{c}");
    let mut in_flight: u16 = 0;
    let mut pkid: u16 = 0;
    let mut out = Vec::with_capacity(usize::from(window) * 64);
    let mut n: u64 = 0;
    loop {
        if !stop.load(Ordering::Relaxed) {
            out.clear();
            while in_flight < window {
                pkid = pkid.checked_add(1).unwrap_or(1);
                n += 1;
                let payload = format!(r#"{{"temp":{}}}"#, n % 400);
                client::publish(&mut out, &topic, payload.as_bytes(), 1, pkid);
                in_flight += 1;
            }
            if !out.is_empty() {
                conn.send(&out).await?;
            }
        } else if in_flight == 0 {
            return Ok(());
        }
        tokio::time::timeout(Duration::from_secs(30), conn.fill())
            .await
            .context("no PUBACK within 30 s")??;
        let mut got = 0;
        conn.drain(|p| {
            if matches!(p, Packet::PubAck { .. }) {
                got += 1;
            }
        })?;
        in_flight = in_flight.saturating_sub(got);
        acked.fetch_add(u64::from(got), Ordering::Relaxed);
    }
}

/// Of `n` idle connections, how many are opened before the first reading
/// of RSS: the start-up's freed memory (argon2's 19 MiB working memory
/// among it) is not always given back by then, and the first connections
/// reuse it without raising RSS, which made the per-connection figure
/// swing between runs. The count is the difference between a quarter of
/// the connections and all of them.
pub fn idle_baseline(n: usize) -> usize {
    n / 4
}

/// RSS with [`idle_baseline`] connections open and with all `n`, in KiB.
pub async fn idle(broker: &Running, n: usize) -> anyhow::Result<(u64, u64)> {
    let pid = broker.server.pid();
    let mut conns = Vec::with_capacity(n);
    open_idle(broker, 0..idle_baseline(n), &mut conns).await?;
    let before = settled_rss(pid).await?;
    open_idle(broker, idle_baseline(n)..n, &mut conns).await?;
    let after = settled_rss(pid).await?;
    drop(conns);
    Ok((before, after))
}

/// Opens the connections numbered `range`, a few hundred handshakes at a
/// time rather than all at once.
async fn open_idle(
    broker: &Running,
    range: std::ops::Range<usize>,
    conns: &mut Vec<Conn>,
) -> anyhow::Result<()> {
    let (addr, password) = (broker.mqtt, broker.password.clone());
    for first in range.clone().step_by(200) {
        let handles: Vec<_> = (first..range.end.min(first + 200))
            .map(|i| {
                let password = password.clone();
                tokio::spawn(async move {
                    Conn::open(addr, &format!("idle-{i}"), password.as_deref()).await
                })
            })
            .collect();
        for handle in handles {
            conns.push(handle.await??);
        }
    }
    Ok(())
}

/// VmRSS once it stops moving: the allocator returns start-up memory
/// (pulsebase's set-up requests) for seconds after, which would otherwise
/// count against the connections. Two readings 1 s apart within 256 KiB,
/// or the last one after 15 s.
async fn settled_rss(pid: u32) -> anyhow::Result<u64> {
    let mut last = procs::rss_kib(pid).context("no RSS")?;
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = procs::rss_kib(pid).context("no RSS")?;
        if now.abs_diff(last) < 256 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Why a fan-out could not run.
pub enum Fanout {
    Ran(Timed),
    /// The broker refused the SUBSCRIBE (its SUBACK code).
    Refused(u8),
}

/// Connection `s` subscribed to `alerts` at `qos`, with the QoS the
/// broker granted; `Err` holds the SUBACK code of a refusal.
pub async fn subscriber(
    broker: &Running,
    s: usize,
    qos: u8,
) -> anyhow::Result<Result<(Conn, u8), u8>> {
    let mut conn = Conn::open(broker.mqtt, &format!("sub-{s}"), broker.password.as_deref()).await?;
    conn.send(&client::subscribe(1, "alerts", qos)).await?;
    match conn.next().await? {
        Packet::SubAck { codes } => match codes.first() {
            Some(&granted) if granted < 0x80 => Ok(Ok((conn, granted))),
            refused => Ok(Err(refused.copied().unwrap_or(0x80))),
        },
        other => anyhow::bail!("expected SUBACK, got {other:?}"),
    }
}

/// `subscribers` connections subscribed to `alerts` at QoS 0 and one
/// publisher sending `rate` messages/s at QoS 0; counts what arrives.
pub async fn fanout(
    broker: &Running,
    subscribers: usize,
    rate: u32,
    warmup: Duration,
    measure: Duration,
    hz: u64,
) -> anyhow::Result<Fanout> {
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for s in 0..subscribers {
        let mut conn = match subscriber(broker, s, 0).await? {
            Ok((conn, _)) => conn,
            Err(code) => return Ok(Fanout::Refused(code)),
        };
        let received = received.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if conn.fill().await.is_err() {
                    return;
                }
                let mut got = 0;
                if conn
                    .drain(|p| got += u64::from(matches!(p, Packet::Publish { .. })))
                    .is_err()
                {
                    return;
                }
                received.fetch_add(got, Ordering::Relaxed);
            }
        }));
    }
    let mut publisher = Conn::open(broker.mqtt, "fanout-pub", broker.password.as_deref()).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let total = warmup + measure;
    let pacer = {
        let sent = sent.clone();
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut out = Vec::new();
            let mut n = 0u64;
            while started.elapsed() < total {
                tick.tick().await;
                out.clear();
                n += 1;
                client::publish(
                    &mut out,
                    "alerts",
                    format!(r#"{{"n":{n}}}"#).as_bytes(),
                    0,
                    0,
                );
                publisher.send(&out).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                // Anything the server says back (nothing at QoS 0) is dropped.
                publisher.drain(|_| {})?;
            }
            anyhow::Ok(())
        })
    };
    let mut timed = window(broker, warmup, measure, hz, &received, &sent).await;
    timed.errors = u64::from(!matches!(pacer.await, Ok(Ok(()))));
    for task in tasks {
        task.abort();
    }
    Ok(Fanout::Ran(timed))
}

/// Waits out `warmup`, then measures `measure`: the broker's CPU and how
/// far `received` and `sent` moved meanwhile (no errors yet).
pub async fn window(
    broker: &Running,
    warmup: Duration,
    measure: Duration,
    hz: u64,
    received: &AtomicU64,
    sent: &AtomicU64,
) -> Timed {
    tokio::time::sleep(warmup).await;
    let a = CpuSnapshot::take(broker.server.pid());
    let (r0, s0) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    tokio::time::sleep(measure).await;
    let b = CpuSnapshot::take(broker.server.pid());
    let (r1, s1) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    Timed {
        secs: b.at.zip(a.at).map_or(0.0, |(b, a)| (b - a).as_secs_f64()),
        counted: r1 - r0,
        sent: s1 - s0,
        cpu: procs::cpu_use(&a, &b, hz),
        errors: 0,
        stored: None,
    }
}
