//! QoS 1 fan-out of one topic, with a loss count over the whole run.
//! Subscribers at QoS 1 acknowledge every delivery and note which message
//! numbers they saw; the publisher numbers its messages, sends at its rate
//! whatever is still in flight, and notes which numbers the broker
//! acknowledged. Once it stops, the subscribers get up to 15 s to see the
//! last acknowledged number; then every acknowledged message a subscriber
//! never saw is one missing delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::client::{self, Conn, Packet};
use super::run::{self, Timed};
use super::servers::Running;

/// How long after its last message the publisher's PUBACKs and the
/// deliveries may take to arrive.
const SETTLE: Duration = Duration::from_secs(15);

/// A larger message number is taken as unreadable: a broken payload must
/// not size a subscriber's table.
const MAX_N: u64 = 1 << 26;

/// What the whole run delivered, counted once the wait after the
/// publisher ended.
#[derive(Clone, Debug)]
pub struct Loss {
    /// Messages the publisher sent, and those the broker PUBACKed.
    pub sent: u64,
    pub acked: u64,
    /// PUBACKed messages × subscribers.
    pub expected: u64,
    /// Distinct (message, subscriber) pairs delivered.
    pub delivered: u64,
    /// Deliveries of a pair already delivered.
    pub duplicates: u64,
    /// (PUBACKed message, subscriber) pairs never delivered.
    pub missing: u64,
    /// Deliveries whose payload held no readable message number.
    pub unreadable: u64,
    /// Subscribers that had seen the last PUBACKed message when the wait
    /// ended, of `subscribers`.
    pub caught_up: usize,
    pub subscribers: usize,
    /// From the publisher's stop to the end of the wait.
    pub settle: Duration,
}

/// `subscribers` connections subscribed to `alerts` at QoS 1 and one
/// publisher sending `rate` numbered messages/s at QoS 1: deliveries in
/// the measured window as for QoS 0, then the whole run's [`Loss`]; or
/// `Err` with the SUBACK code when the broker refused the SUBSCRIBE.
pub async fn fanout_qos1(
    broker: &Running,
    subscribers: usize,
    rate: u32,
    warmup: Duration,
    measure: Duration,
    hz: u64,
) -> anyhow::Result<Result<(Timed, Loss), u8>> {
    let received = Arc::new(AtomicU64::new(0));
    let (mut seen, mut tasks) = (Vec::new(), Vec::new());
    for s in 0..subscribers {
        let conn = match run::subscriber(broker, s, 1).await? {
            Ok((conn, 1)) => conn,
            Ok((_, granted)) => anyhow::bail!("asked for QoS 1, the broker granted {granted}"),
            Err(code) => return Ok(Err(code)),
        };
        let one = Shared::default();
        tasks.push(tokio::spawn(acknowledge(
            conn,
            one.clone(),
            received.clone(),
        )));
        seen.push(one);
    }
    let conn = Conn::open(broker.mqtt, "fanout-pub", broker.password.as_deref()).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let pacer = tokio::spawn(publish(conn, rate, warmup + measure, sent.clone()));
    let mut timed = run::window(broker, warmup, measure, hz, &received, &sent).await;
    let published = pacer.await?;
    let last = published.acked.iter().copied().max();
    let deadline = published.stopped + SETTLE;
    let behind = || {
        seen.iter()
            .filter(|one| last.is_some_and(|n| !lock(one).has(n)))
            .count()
    };
    // In-order delivery per topic (MQTT 3.1.1, 4.6) makes the last number
    // the sign that everything before it that is coming has come.
    while behind() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settle = published.stopped.elapsed();
    // A subscriber whose connection ended early is an error, besides the
    // deliveries it then misses.
    timed.errors = u64::from(published.failed) + published.stray_acks;
    for task in &tasks {
        timed.errors += u64::from(task.is_finished());
        task.abort();
    }
    let loss = tally(&seen, &published, behind(), settle);
    Ok(Ok((timed, loss)))
}

fn tally(seen: &[Shared], published: &Published, behind: usize, settle: Duration) -> Loss {
    let acked = published.acked.len() as u64;
    let mut loss = Loss {
        sent: published.sent,
        acked,
        expected: acked * seen.len() as u64,
        delivered: 0,
        duplicates: 0,
        missing: 0,
        unreadable: 0,
        caught_up: seen.len() - behind,
        subscribers: seen.len(),
        settle,
    };
    for one in seen {
        let one = lock(one);
        loss.delivered += one.distinct;
        loss.duplicates += one.duplicates;
        loss.unreadable += one.unreadable;
        loss.missing += published.acked.iter().filter(|&&n| !one.has(n)).count() as u64;
    }
    loss
}

/// Which message numbers one subscriber saw. Shared with the run through
/// an uncontended lock taken once per read, not per delivery.
#[derive(Default)]
struct Seen {
    by_n: Vec<bool>,
    distinct: u64,
    duplicates: u64,
    unreadable: u64,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(seen: &Shared) -> MutexGuard<'_, Seen> {
    // A subscriber task holds the lock only to note numbers, which cannot
    // leave the table half written.
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Seen {
    fn note(&mut self, n: Option<u64>) {
        let Some(i) = n.filter(|&n| n <= MAX_N).map(|n| n as usize) else {
            self.unreadable += 1;
            return;
        };
        if i >= self.by_n.len() {
            self.by_n.resize(i + 1, false);
        }
        if std::mem::replace(&mut self.by_n[i], true) {
            self.duplicates += 1;
        } else {
            self.distinct += 1;
        }
    }

    fn has(&self, n: u64) -> bool {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.by_n.get(i))
            .copied()
            .unwrap_or(false)
    }
}

/// One subscriber: notes every delivery and answers each QoS 1 one with a
/// PUBACK, all those of one read in one write.
async fn acknowledge(mut conn: Conn, seen: Shared, received: Arc<AtomicU64>) -> anyhow::Result<()> {
    let mut acks = Vec::new();
    loop {
        conn.fill().await?;
        acks.clear();
        let mut got = 0;
        {
            let mut seen = lock(&seen);
            conn.drain(|p| {
                if let Packet::Publish { qos, pkid, n } = p {
                    got += 1;
                    seen.note(n);
                    if qos > 0 {
                        client::puback(&mut acks, pkid);
                    }
                }
            })?;
        }
        received.fetch_add(got, Ordering::Relaxed);
        if !acks.is_empty() {
            conn.send(&acks).await?;
        }
    }
}

/// What the publisher sent and had acknowledged.
struct Published {
    sent: u64,
    /// The numbers the broker PUBACKed.
    acked: Vec<u64>,
    /// PUBACKs for a packet id with nothing in flight.
    stray_acks: u64,
    /// When it sent its last message.
    stopped: Instant,
    /// Its connection failed (what it counted until then stands).
    failed: bool,
}

/// The publisher: `{"n":<k>}` at QoS 1, `rate` a second for `total`,
/// packet ids 1..=65535 in turn, reading PUBACKs as they come; then it
/// waits (at most [`SETTLE`]) for the PUBACKs still due.
async fn publish(mut conn: Conn, rate: u32, total: Duration, sent: Arc<AtomicU64>) -> Published {
    let mut p = Published {
        sent: 0,
        acked: Vec::new(),
        stray_acks: 0,
        stopped: Instant::now() + total,
        failed: false,
    };
    if let Err(e) = p.run(&mut conn, rate, total, &sent).await {
        eprintln!("    publisher: {e:#}");
        p.failed = true;
    }
    p
}

impl Published {
    async fn run(
        &mut self,
        conn: &mut Conn,
        rate: u32,
        total: Duration,
        sent: &AtomicU64,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        // The message number in flight under each packet id (0: none).
        let mut in_flight = vec![0u64; usize::from(u16::MAX) + 1];
        let mut pending = 0usize;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut settle_by: Option<tokio::time::Instant> = None;
        let (mut pkid, mut n) = (0u16, 0u64);
        let mut out = Vec::new();
        loop {
            let sending = settle_by.is_none();
            let wake = settle_by.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                _ = tick.tick(), if sending => {
                    if started.elapsed() >= total {
                        self.stopped = Instant::now();
                        settle_by = Some(tokio::time::Instant::now() + SETTLE);
                    } else {
                        pkid = pkid.checked_add(1).unwrap_or(1);
                        n += 1;
                        out.clear();
                        let payload = format!(r#"{{"n":{n}}}"#);
                        client::publish(&mut out, "alerts", payload.as_bytes(), 1, pkid);
                        conn.send(&out).await?;
                        let slot = &mut in_flight[usize::from(pkid)];
                        // A packet id still in flight 65,535 messages
                        // later is given up: that message counts as never
                        // acknowledged.
                        pending += usize::from(*slot == 0);
                        *slot = n;
                        self.sent += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                read = conn.fill() => {
                    read?;
                    conn.drain(|packet| {
                        if let Packet::PubAck { pkid } = packet {
                            match std::mem::take(&mut in_flight[usize::from(pkid)]) {
                                0 => self.stray_acks += 1,
                                n => {
                                    self.acked.push(n);
                                    pending -= 1;
                                }
                            }
                        }
                    })?;
                }
                _ = tokio::time::sleep_until(wake), if !sending => {
                    return Ok(());
                }
            }
            if settle_by.is_some() && pending == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acknowledged_messages_a_subscriber_never_saw_are_missing() {
        let subscriber = |ns: &[Option<u64>]| {
            let seen = Shared::default();
            for &n in ns {
                lock(&seen).note(n);
            }
            seen
        };
        let subs = [
            subscriber(&[Some(1), Some(2), Some(3), Some(4)]),
            // Lost 2, got 3 twice, one payload without a number.
            subscriber(&[Some(1), Some(3), Some(3), None, Some(4)]),
            // Never got 4, which was not acknowledged: not missing.
            subscriber(&[Some(1), Some(2), Some(3)]),
        ];
        let published = Published {
            sent: 4,
            acked: vec![2, 1, 3],
            stray_acks: 0,
            stopped: Instant::now(),
            failed: false,
        };
        let loss = tally(&subs, &published, 1, Duration::ZERO);
        assert_eq!(loss.expected, 9);
        assert_eq!(loss.delivered, 4 + 3 + 3);
        assert_eq!(loss.duplicates, 1);
        assert_eq!(loss.unreadable, 1);
        assert_eq!(loss.missing, 1);
        assert_eq!(loss.caught_up, 2);
    }
}
