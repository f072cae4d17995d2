//! One fan-out or publish run: paced writes, subscribers reading, and the
//! exact tally of what arrived (missed, duplicate, latency).

use super::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use super::broker_wire::BrokerConn;
use super::writers::{spawn_http_writers, HttpWriters};
use crate::procs::{self, CpuSnapshot};
use crate::wire::StampFinder;
use crate::Args;

/// Per-subscriber record of what arrived.
pub(super) struct Inbox {
    bits: Vec<u64>,
    received: u64,
    duplicates: u64,
    closed: Option<String>,
}

pub(super) struct Tally {
    pub(super) epoch: Instant,
    pub(super) measure_from_us: u64,
    pub(super) end_us: u64,
    pub(super) capacity: u64,
    pub(super) acked: Vec<u64>,
    pub(super) acked_count: u64,
    pub(super) writes_done: u64,
    pub(super) write_errors: u64,
    pub(super) first_error: Option<String>,
    pub(super) write_hist: Histogram<u64>,
    pub(super) hist: Histogram<u64>,
    pub(super) max_us: u64,
    pub(super) deliveries: u64,
    /// Socket reads that brought events, and the events they brought: how
    /// many frames the server put into one write, roughly.
    pub(super) reads: u64,
    pub(super) events: u64,
    pub(super) inboxes: Vec<Inbox>,
    /// Routed fan-out: subscriber `i` expects only the events `n` with
    /// `n % devices == i % devices`, and this counts the acknowledged
    /// ones per device.
    pub(super) routed: Option<(u64, Vec<u64>)>,
    /// For a publisher that waits on delivery: how many subscribers have
    /// each message, and the lowest message not yet read by all of them.
    pub(super) progress: Option<Progress>,
    /// With `--timeline`: the measured window's latencies, per slice.
    pub(super) timeline: Option<Timeline>,
}

/// Latency per slice of the measured window, by arrival time: shows
/// whether a run's tail is spread over the window or comes in episodes.
pub(super) struct Timeline {
    slice_us: u64,
    slices: Vec<Histogram<u64>>,
}

impl Timeline {
    pub(super) const SLICE_US: u64 = 100_000;

    fn record(&mut self, since_measure_us: u64, latency: u64) {
        let at = (since_measure_us / self.slice_us) as usize;
        if self.slices.len() <= at {
            self.slices.resize_with(at + 1, new_hist);
        }
        self.slices[at].saturating_record(latency);
    }

    /// One line per slice: start, deliveries, p50, p99, max (ms).
    pub(super) fn lines(&self) -> Vec<String> {
        let ms = |us: u64| us as f64 / 1000.0;
        self.slices
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    "{:>6} ms  {:>8} deliveries  p50 {:>7.2}  p99 {:>7.2}  max {:>7.2}",
                    i as u64 * self.slice_us / 1000,
                    h.len(),
                    ms(h.value_at_quantile(0.5)),
                    ms(h.value_at_quantile(0.99)),
                    ms(h.max()),
                )
            })
            .collect()
    }
}

pub(super) struct Progress {
    pub(super) counts: Vec<u16>,
    pub(super) low: u64,
    pub(super) wake: Rc<tokio::sync::Notify>,
}

pub(super) fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

pub(super) fn set_bit(bits: &mut [u64], n: u64) -> bool {
    let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    !was
}

impl Tally {
    /// Room for write indexes below `capacity`, for `subscribers` inboxes.
    pub(super) fn new(
        epoch: Instant,
        measure_from_us: u64,
        end_us: u64,
        capacity: u64,
        subscribers: usize,
    ) -> Tally {
        let words = capacity.div_ceil(64) as usize;
        Tally {
            epoch,
            measure_from_us,
            end_us,
            capacity,
            acked: vec![0; words],
            acked_count: 0,
            writes_done: 0,
            write_errors: 0,
            first_error: None,
            write_hist: new_hist(),
            hist: new_hist(),
            max_us: 0,
            deliveries: 0,
            reads: 0,
            events: 0,
            inboxes: (0..subscribers)
                .map(|_| Inbox {
                    bits: vec![0; words],
                    received: 0,
                    duplicates: 0,
                    closed: None,
                })
                .collect(),
            routed: None,
            progress: None,
            timeline: None,
        }
    }

    /// Keeps the latencies per slice of the window too (`--timeline`).
    pub(super) fn with_timeline(mut self) -> Tally {
        self.timeline = Some(Timeline {
            slice_us: Timeline::SLICE_US,
            slices: Vec::new(),
        });
        self
    }

    /// Each subscriber expects only the events of its own device.
    fn routed(mut self, devices: u64) -> Tally {
        self.routed = Some((devices, vec![0; devices as usize]));
        self
    }

    fn expects(&self, sub: usize, n: u64) -> bool {
        self.routed
            .as_ref()
            .is_none_or(|(devices, _)| n % devices == sub as u64 % devices)
    }

    /// Acknowledged events subscriber `sub` expects.
    fn expected(&self, sub: usize) -> u64 {
        match &self.routed {
            Some((devices, acked)) => acked[sub % *devices as usize],
            None => self.acked_count,
        }
    }

    pub(super) fn acknowledged(&mut self, n: u64) {
        if n < self.capacity && set_bit(&mut self.acked, n) {
            self.acked_count += 1;
            if let Some((devices, acked)) = &mut self.routed {
                acked[(n % *devices) as usize] += 1;
            }
        }
    }

    pub(super) fn since_epoch_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn arrived(&mut self, sub: usize, n: u64, sent_us: u64, now_us: u64) {
        if n >= self.capacity {
            return;
        }
        let expected = self.expects(sub, n);
        let all = self.inboxes.len() as u16;
        let inbox = &mut self.inboxes[sub];
        // An event its filter should have kept out counts as a duplicate:
        // one delivery too many.
        if expected && set_bit(&mut inbox.bits, n) {
            inbox.received += 1;
            if let Some(p) = &mut self.progress {
                p.counts[n as usize] += 1;
                let before = p.low;
                while p.counts.get(p.low as usize) == Some(&all) {
                    p.low += 1;
                }
                if p.low > before {
                    p.wake.notify_one();
                }
            }
        } else {
            inbox.duplicates += 1;
        }
        if now_us >= self.measure_from_us && now_us < self.end_us {
            let latency = now_us.saturating_sub(sent_us).max(1);
            self.hist.saturating_record(latency);
            self.max_us = self.max_us.max(latency);
            self.deliveries += 1;
            if let Some(timeline) = &mut self.timeline {
                timeline.record(now_us - self.measure_from_us, latency);
            }
        }
    }

    fn missed(&self) -> u64 {
        self.inboxes
            .iter()
            .enumerate()
            .map(|(sub, inbox)| {
                self.acked
                    .iter()
                    .zip(&inbox.bits)
                    .enumerate()
                    .map(|(word, (a, b))| {
                        let lacking = a & !b;
                        if self.routed.is_none() {
                            return u64::from(lacking.count_ones());
                        }
                        (0..64)
                            .filter(|bit| lacking & (1 << bit) != 0)
                            .filter(|bit| self.expects(sub, word as u64 * 64 + bit))
                            .count() as u64
                    })
                    .sum::<u64>()
            })
            .sum()
    }
}

pub(super) async fn flow(
    mut stage: Stage,
    args: &Args,
    sc: Scenario,
    subscribers: usize,
    rate: u32,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let (topic, path) = match sc.kind {
        Kind::Publish { .. } => ("bench", "/api/topics/bench/messages"),
        _ => ("readings", "/api/collections/readings/records"),
    };
    let clients = open_subscribers(&stage, sc, subscribers, topic, 64 * 1024).await?;
    let pid = stage.server.pid();
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let epoch = Instant::now();
    let measure_from = epoch + warmup;
    let end = measure_from + duration;
    let capacity = (f64::from(rate) * (warmup + duration).as_secs_f64()).ceil() as u64
        + 64
        + per_write(sc.kind);
    let mut tally = Tally::new(
        epoch,
        warmup.as_micros() as u64,
        (warmup + duration).as_micros() as u64,
        capacity,
        subscribers,
    );
    if routed_device(sc.kind, 0).is_some() {
        tally = tally.routed(devices(sc.kind));
    }
    if args.timeline {
        tally = tally.with_timeline();
    }
    let tally = Rc::new(RefCell::new(tally));

    let mut readers = spawn_readers(clients, &tally);

    let mut writers = JoinSet::new();
    if let Some(protocol) = super::brokers::protocol(sc.peer) {
        let publisher = BrokerConn::connect(protocol, stage.addr, 64 * 1024).await?;
        writers.spawn_local(super::brokers::publish_paced(
            publisher,
            topic,
            rate,
            Rc::clone(&tally),
            end,
        ));
    }
    let http_writers = if sc.peer == Peer::Pulsebase || sc.peer == Peer::PocketBase {
        WRITERS
    } else {
        0
    };
    // The HTTP writers run on a thread of their own: on the readers'
    // thread, a write's answer waited behind a million deliveries a
    // second being tallied, and the write latency measured the load
    // generator, not the server.
    let http = (http_writers > 0).then(|| {
        spawn_http_writers(HttpWriters {
            writers: http_writers,
            addr: stage.addr,
            path,
            auth: stage.writer_auth.clone(),
            publish: matches!(sc.kind, Kind::Publish { .. }),
            shape: (per_write(sc.kind), devices(sc.kind)),
            rate,
            epoch,
            window_us: (
                warmup.as_micros() as u64,
                (warmup + duration).as_micros() as u64,
            ),
            end,
        })
    });
    let sampler = tokio::task::spawn_local(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let a = CpuSnapshot::take(pid);
        tokio::time::sleep_until(end.into()).await;
        let b = CpuSnapshot::take(pid);
        (a, b, procs::rss_kib(pid))
    });
    while writers.join_next().await.is_some() {}
    if let Some(http) = http {
        let writes = tokio::task::spawn_blocking(move || http.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the HTTP writers' thread panicked"))??;
        writes.add_to(&mut tally.borrow_mut());
    }
    let (a, b, rss_kib) = sampler.await?;

    let drain = drain_wait(&tally).await;
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    stage.server.stop();
    let t = tally.borrow();
    if let Some(timeline) = &t.timeline {
        eprintln!("{} by arrival time in the measured window:", sc.name());
        for line in timeline.lines() {
            eprintln!("  {line}");
        }
    }
    Ok(outcome(
        sc,
        &t,
        (subscribers, rate),
        drain,
        duration,
        rss_kib,
        procs::cpu_use(&a, &b, hz),
    ))
}

/// Waits for the events of the last writes: until every subscriber has
/// every acknowledged write or was closed, or `DRAIN_TIMEOUT`.
pub(super) async fn drain_wait(tally: &Rc<RefCell<Tally>>) -> Duration {
    let drain_started = Instant::now();
    loop {
        let done = {
            let t = tally.borrow();
            t.inboxes
                .iter()
                .enumerate()
                .all(|(sub, i)| i.closed.is_some() || i.received >= t.expected(sub))
        };
        if done || drain_started.elapsed() > DRAIN_TIMEOUT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain_started.elapsed()
}

/// The figures of a finished run.
pub(super) fn outcome(
    sc: Scenario,
    t: &Tally,
    (subscribers, rate): (usize, u32),
    drain: Duration,
    duration: Duration,
    rss_kib: Option<u64>,
    cpu: procs::CpuUse,
) -> Outcome {
    let q = |h: &Histogram<u64>, q: f64, max: u64| h.value_at_quantile(q).min(max.max(1));
    let write_max = t.write_hist.max();
    let mut close_reasons: Vec<String> =
        t.inboxes.iter().filter_map(|i| i.closed.clone()).collect();
    let closed = close_reasons.len();
    close_reasons.sort();
    close_reasons.dedup();
    Outcome {
        scenario: sc,
        measured: Measured::Flow(Flow {
            subscribers,
            rate,
            writes_done: t.writes_done,
            writes_acked: t.acked_count,
            write_errors: t.write_errors,
            first_error: t.first_error.clone(),
            write_p50_us: q(&t.write_hist, 0.50, write_max),
            write_p99_us: q(&t.write_hist, 0.99, write_max),
            deliveries: t.deliveries,
            p50_us: q(&t.hist, 0.50, t.max_us),
            p99_us: q(&t.hist, 0.99, t.max_us),
            max_us: t.max_us,
            missed: t.missed(),
            duplicates: t.inboxes.iter().map(|i| i.duplicates).sum(),
            closed,
            close_reasons,
            drain,
            events_per_read: t.events as f64 / t.reads.max(1) as f64,
        }),
        duration,
        rss_kib,
        cpu,
    }
}

/// One reader task per subscriber, all counting into `tally`.
pub(super) fn spawn_readers(clients: Vec<Client>, tally: &Rc<RefCell<Tally>>) -> JoinSet<()> {
    let finder = Rc::new(StampFinder::new());
    let mut readers = JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        readers.spawn_local(read_events(
            index,
            client,
            Rc::clone(tally),
            Rc::clone(&finder),
        ));
    }
    readers
}

pub(super) async fn read_events(
    index: usize,
    mut client: Client,
    tally: Rc<RefCell<Tally>>,
    finder: Rc<StampFinder>,
) {
    let closed = loop {
        let more = match &mut client {
            Client::Ws(ws) => ws.fill().await,
            Client::Sse(sse) => sse.fill().await,
            Client::Broker(conn) => conn.fill().await,
        };
        match more {
            Ok(true) => {}
            Ok(false) => break "connection closed by the server".to_owned(),
            Err(e) => break format!("read failed: {e}"),
        }
        let walked = {
            let mut t = tally.borrow_mut();
            let now_us = t.since_epoch_us();
            let events_before = t.events;
            let mut arrive = |event: &[u8]| {
                if let Some(stamp) = finder.find(event) {
                    t.events += 1;
                    t.arrived(index, stamp.n, stamp.sent_us, now_us);
                }
            };
            let walked = match &mut client {
                Client::Ws(ws) => ws.drain(&mut arrive),
                Client::Sse(sse) => {
                    sse.drain(&mut arrive);
                    Ok(())
                }
                Client::Broker(conn) => conn.drain(&mut arrive),
            };
            if t.events > events_before {
                t.reads += 1;
            }
            walked
        };
        if let Err(e) = walked {
            break format!("bad frame: {e}");
        }
        if let Client::Ws(ws) = &mut client {
            if let Some((code, reason)) = &ws.closed {
                break format!("close {code} {reason}");
            }
            if ws.answer_pings().await.is_err() {
                break "cannot answer a ping".to_owned();
            }
        }
        if let Client::Broker(conn) = &mut client {
            if let Some(error) = &conn.error {
                break format!("server error: {error}");
            }
            if conn.answer_pings().await.is_err() {
                break "cannot answer a ping".to_owned();
            }
        }
    };
    tally.borrow_mut().inboxes[index].closed = Some(closed);
}

/// Devices the writes cycle through: event `n` is from `gw-{n % devices}`.
/// A series collection gets as many as the series suite's ingest data.
fn devices(kind: Kind) -> u64 {
    match kind {
        Kind::SeriesFanout { .. } => 100,
        _ => 16,
    }
}

/// The one device subscriber `index` filters to, in a routed fan-out.
pub(super) fn routed_device(kind: Kind, index: u64) -> Option<String> {
    match kind {
        Kind::SeriesFanout { routed: true, .. } => Some(format!("gw-{}", index % devices(kind))),
        _ => None,
    }
}

/// Readings per request: series ingest at 10,000/s comes in batches, as
/// devices and gateways send it; single writes could not keep that pace
/// with an fsync per group.
fn per_write(kind: Kind) -> u64 {
    match kind {
        Kind::SeriesFanout { rate, .. } => u64::from(rate / 100).max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeline_keeps_each_slice_of_the_window_apart() {
        let mut tally = Tally::new(Instant::now(), 1_000, u64::MAX, 128, 1).with_timeline();
        // Arrived before the window: not in it.
        tally.arrived(0, 0, 0, 500);
        // 1 ms late in the first slice, 40 ms late in the third.
        tally.arrived(0, 1, 1_000, 2_000);
        tally.arrived(0, 2, 250_000, 290_000);
        let lines = tally
            .timeline
            .as_ref()
            .map(Timeline::lines)
            .unwrap_or_default();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains(" 1 deliveries") && lines[0].contains("max    1.00"));
        assert!(lines[1].contains(" 0 deliveries"), "{}", lines[1]);
        assert!(lines[2].starts_with("   200 ms") && lines[2].contains("max   40.0"));
    }

    #[test]
    fn missed_counts_acknowledged_writes_a_subscriber_lacks() {
        let mut tally = Tally::new(Instant::now(), 0, u64::MAX, 128, 2);
        for n in [1, 70, 100] {
            set_bit(&mut tally.acked, n);
        }
        tally.arrived(0, 1, 0, 10);
        tally.arrived(0, 70, 0, 10);
        tally.arrived(0, 70, 0, 10);
        tally.arrived(1, 100, 0, 10);
        // An event for a write never acknowledged is not a miss elsewhere.
        tally.arrived(1, 5, 0, 10);
        assert_eq!(tally.missed(), 1 + 2);
        assert_eq!(tally.inboxes[0].duplicates, 1);
        assert_eq!(tally.deliveries, 5);
    }

    #[test]
    fn a_routed_subscriber_misses_only_its_own_devices_events() {
        let mut tally = Tally::new(Instant::now(), 0, u64::MAX, 128, 2).routed(2);
        for n in [1, 2, 3, 70, 101] {
            tally.acknowledged(n);
        }
        assert_eq!((tally.expected(0), tally.expected(1)), (2, 3));
        // Subscriber 0 takes even events, 1 odd ones.
        tally.arrived(0, 2, 0, 10);
        tally.arrived(1, 1, 0, 10);
        tally.arrived(1, 101, 0, 10);
        // An event of the other device: one too many.
        tally.arrived(0, 3, 0, 10);
        assert_eq!(tally.missed(), 1 + 1);
        assert_eq!(tally.inboxes[0].duplicates, 1);
    }
}
