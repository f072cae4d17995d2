//! Publishing as fast as the peer delivers (`publish/…/max`) and in one
//! burst (`burst/…`), from one publisher connection to a custom topic (NATS
//! subject, Redis channel) with 64-byte messages.
//!
//! `max` is closed-loop on delivery, not on the publisher's acknowledgement:
//! message `n` is sent only once every subscriber has read message
//! `n - WINDOW`. The rate that loop reaches is, by construction, a rate at
//! which nothing is lost and no subscriber falls behind by more than the
//! window; a subscriber that misses a message stalls the loop, which ends
//! the run and shows as missed. A peer that drops or closes subscribers to
//! go faster cannot look faster here.

use super::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

use super::broker_wire::{BrokerConn, Protocol};
use super::flow::{drain_wait, outcome, spawn_readers, Progress, Tally};
use crate::procs::{self, CpuSnapshot};
use crate::wire::{self, Ws};

/// Messages in flight end to end in `max` (sent, not yet read by every
/// subscriber): half of pulsebase's default outbox of 1024 frames, so the
/// loop never asks the server to queue more than it is built to.
pub(super) const WINDOW: u64 = 512;
/// Messages written per socket write, so a send time is close to the
/// moment the message leaves.
const PER_WRITE: u64 = 32;
/// Room for message indexes in `max` (about 8 MB of counts, 50 MB of
/// bitsets at 100 subscribers); a run that reaches it says so.
const MAX_MESSAGES: u64 = 4_000_000;
/// A `max` run whose window has not moved for this long has lost a message.
const STALL: Duration = Duration::from_secs(2);
const TOPIC: &str = "bench";

/// The publishing side: pulsebase's WebSocket `publish` action or a
/// broker's publish command.
#[derive(Clone, Copy)]
enum Wire {
    Pulsebase,
    Broker(Protocol),
}

impl Wire {
    fn frame(self, n: u64, sent_us: u64, out: &mut Vec<u8>) {
        let payload = payload64(n, sent_us);
        match self {
            Wire::Pulsebase => {
                let text = format!(
                    r#"{{"action":"publish","id":"p","topic":"{TOPIC}","data":{}}}"#,
                    String::from_utf8_lossy(&payload)
                );
                wire::client_frame(0x1, text.as_bytes(), out);
            }
            Wire::Broker(protocol) => BrokerConn::publish_into(protocol, TOPIC, &payload, out),
        }
    }
}

pub(super) async fn rush(
    mut stage: Stage,
    args: &Args,
    sc: Scenario,
    subscribers: usize,
    burst: Option<u32>,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let (wire, read, write) = open_publisher(&stage, sc.peer).await?;
    let clients = open_subscribers(&stage, sc, subscribers, TOPIC, 64 * 1024).await?;
    let pid = stage.server.pid();
    let epoch = Instant::now();
    let (warmup, duration) = match burst {
        Some(_) => (Duration::ZERO, Duration::ZERO),
        None => (
            Duration::from_secs_f64(args.warmup),
            Duration::from_secs_f64(args.duration),
        ),
    };
    let capacity = burst.map_or(MAX_MESSAGES, |m| u64::from(m) + 64);
    // A burst counts every delivery, however long it takes.
    let end_us = match burst {
        Some(_) => u64::MAX,
        None => (warmup + duration).as_micros() as u64,
    };
    let mut tally = Tally::new(
        epoch,
        warmup.as_micros() as u64,
        end_us,
        capacity,
        subscribers,
    );
    let wake = Rc::new(Notify::new());
    tally.progress = Some(Progress {
        counts: vec![0; capacity as usize],
        low: 0,
        wake: Rc::clone(&wake),
    });
    let tally = Rc::new(RefCell::new(tally));
    let mut readers = spawn_readers(clients, &tally);
    readers.spawn_local(read_replies(wire, read, Rc::clone(&tally)));

    let a = CpuSnapshot::take(pid);
    let (a, b, rss_kib, duration) = match burst {
        Some(messages) => {
            send_burst(write, wire, u64::from(messages), &tally).await;
            // The burst lasts until its last message is read (or given up).
            drain_wait(&tally).await;
            let b = CpuSnapshot::take(pid);
            (a, b, procs::rss_kib(pid), epoch.elapsed())
        }
        None => {
            let measure_from = epoch + warmup;
            let end = measure_from + duration;
            let sampler = tokio::task::spawn_local(async move {
                tokio::time::sleep_until(measure_from.into()).await;
                let a = CpuSnapshot::take(pid);
                tokio::time::sleep_until(end.into()).await;
                (a, CpuSnapshot::take(pid), procs::rss_kib(pid))
            });
            send_windowed(write, wire, &tally, &wake, end).await;
            let (a, b, rss) = sampler.await?;
            drain_wait(&tally).await;
            (a, b, rss, duration)
        }
    };
    let drain = epoch.elapsed();
    readers.abort_all();
    while readers.join_next().await.is_some() {}
    stage.server.stop();
    let t = tally.borrow();
    Ok(outcome(
        sc,
        &t,
        (subscribers, 0),
        drain,
        duration,
        rss_kib,
        procs::cpu_use(&a, &b, hz),
    ))
}

/// The publisher's connection, split so its replies are read while it
/// writes (a reply nobody reads would hold the server up).
async fn open_publisher(
    stage: &Stage,
    peer: Peer,
) -> anyhow::Result<(Wire, (OwnedReadHalf, BytesMut), OwnedWriteHalf)> {
    let (wire, stream, buf) = match brokers::protocol(peer) {
        Some(protocol) => {
            let conn = BrokerConn::connect(protocol, stage.addr, 64 * 1024).await?;
            let (stream, buf) = conn.into_parts();
            (Wire::Broker(protocol), stream, buf)
        }
        None => {
            let token = stage
                .writer_auth
                .strip_prefix("Bearer ")
                .context("the writer signs in with a token")?;
            let mut ws = Ws::connect(stage.addr, Some(token), 64 * 1024).await?;
            let welcome = ws.next_text().await?;
            anyhow::ensure!(
                contains(&welcome, br#""type":"welcome""#),
                "expected welcome, got {}",
                String::from_utf8_lossy(&welcome)
            );
            let (stream, buf) = ws.into_parts();
            (Wire::Pulsebase, stream, buf)
        }
    };
    let (read, write) = stream.into_split();
    Ok((wire, (read, buf), write))
}

/// Reads the publisher's replies: pulsebase's `ok`/`error` per publish,
/// Redis's receiver counts, NATS's errors. A refused publish is a write
/// error (its message counts as missed too, as it was sent).
async fn read_replies(
    wire: Wire,
    (mut read, mut buf): (OwnedReadHalf, BytesMut),
    tally: Rc<RefCell<Tally>>,
) {
    let fail = |text: String| {
        let mut t = tally.borrow_mut();
        t.write_errors += 1;
        t.first_error.get_or_insert(text);
    };
    loop {
        let mut walked = 0;
        match wire {
            Wire::Pulsebase => {
                while let Ok(Some((opcode, start, end))) = wire::parse_frame(&buf[walked..]) {
                    let payload = &buf[walked + start..walked + end];
                    if opcode == 0x8 || contains(payload, br#""type":"error""#) {
                        fail(String::from_utf8_lossy(payload).into_owned());
                    }
                    walked += end;
                }
            }
            Wire::Broker(protocol) => {
                let (used, error) = broker_wire::walk_replies(protocol, &buf);
                walked = used;
                if let Some(e) = error {
                    fail(e);
                }
            }
        }
        buf.advance(walked);
        buf.reserve(16 * 1024);
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Keeps `WINDOW` messages in flight until `end`: sends up to the window,
/// then waits for the slowest subscriber to read the oldest.
async fn send_windowed(
    mut write: OwnedWriteHalf,
    wire: Wire,
    tally: &Rc<RefCell<Tally>>,
    wake: &Notify,
    end: Instant,
) {
    let mut next = 0u64;
    let mut out = Vec::with_capacity(64 * 1024);
    while Instant::now() < end {
        let low = tally.borrow().progress.as_ref().map_or(0, |p| p.low);
        let upto = (low + WINDOW).min(MAX_MESSAGES).min(next + PER_WRITE);
        if next >= MAX_MESSAGES {
            tally
                .borrow_mut()
                .first_error
                .get_or_insert_with(|| format!("stopped at {MAX_MESSAGES} messages"));
            break;
        }
        if next >= upto {
            if tokio::time::timeout(STALL, wake.notified()).await.is_err() {
                tally.borrow_mut().first_error.get_or_insert_with(|| {
                    format!("stalled: message {low} not read by every subscriber within {STALL:?}")
                });
                break;
            }
            continue;
        }
        if !write_batch(&mut write, wire, next..upto, tally, &mut out).await {
            break;
        }
        next = upto;
    }
    let _ = write.shutdown().await;
}

async fn send_burst(
    mut write: OwnedWriteHalf,
    wire: Wire,
    messages: u64,
    tally: &Rc<RefCell<Tally>>,
) {
    let mut out = Vec::with_capacity(64 * 1024);
    let mut next = 0;
    while next < messages {
        let upto = (next + PER_WRITE).min(messages);
        if !write_batch(&mut write, wire, next..upto, tally, &mut out).await {
            break;
        }
        next = upto;
    }
}

/// Writes messages `range` in one write; false if the socket failed.
async fn write_batch(
    write: &mut OwnedWriteHalf,
    wire: Wire,
    range: std::ops::Range<u64>,
    tally: &Rc<RefCell<Tally>>,
    out: &mut Vec<u8>,
) -> bool {
    let sent_us = tally.borrow().since_epoch_us();
    out.clear();
    for n in range.clone() {
        wire.frame(n, sent_us, out);
    }
    let written = write.write_all(out).await;
    let mut t = tally.borrow_mut();
    match written {
        Ok(()) => {
            let now = t.since_epoch_us();
            for n in range {
                t.acknowledged(n);
                if now >= t.measure_from_us && now < t.end_us {
                    t.writes_done += 1;
                }
            }
            true
        }
        Err(e) => {
            t.write_errors += 1;
            t.first_error.get_or_insert_with(|| format!("{e:#}"));
            false
        }
    }
}
