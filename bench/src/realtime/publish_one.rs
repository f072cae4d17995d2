//! Publishing from one connection: one WebSocket client publishes to a
//! `history: 0` topic as fast as the server answers, with `window`
//! publishes awaiting their reply at once, and no subscriber. What a
//! single sensor gateway or game server pushing through one socket gets.

use super::*;
use std::time::Instant;

use hdrhistogram::Histogram;
use hyper::Method;
use serde_json::json;

use crate::load;
use crate::procs::{self, CpuSnapshot};
use crate::wire::Ws;

pub(super) async fn publish_one(
    mut stage: Stage,
    args: &Args,
    sc: Scenario,
    window: usize,
    hz: u64,
) -> anyhow::Result<Outcome> {
    // The per-connection rate limit (100/s by default) is what this
    // measures past.
    load::request_ok(
        stage.addr,
        Method::PATCH,
        "/api/settings",
        Some(&stage.writer_auth),
        Some(json!({"message_rate": 10_000_000})),
    )
    .await?;
    let token = stage
        .writer_auth
        .strip_prefix("Bearer ")
        .context("the writer signs in with a token")?
        .to_owned();
    let mut ws = Ws::connect(stage.addr, Some(&token), 256 * 1024).await?;
    let welcome = ws.next_text().await?;
    anyhow::ensure!(
        contains(&welcome, br#""type":"welcome""#),
        "expected welcome, got {}",
        String::from_utf8_lossy(&welcome)
    );
    let pid = stage.server.pid();
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let epoch = Instant::now();
    let measure_from = epoch + warmup;
    let end = measure_from + duration;
    // The send time of each publish in flight, by its id (n % window).
    let mut sent_at = vec![epoch; window];
    let mut hist: Histogram<u64> = flow::new_hist();
    let (mut next, mut answered, mut done, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut first_error = None;
    let mut a = None;
    let publish = |n: u64| {
        format!(
            r#"{{"action":"publish","id":"{}","topic":"bench","data":{{"n":{n}}}}}"#,
            n % window as u64
        )
    };
    while next < window as u64 {
        ws.send_text(&publish(next)).await?;
        sent_at[next as usize] = Instant::now();
        next += 1;
    }
    while answered < next {
        if !ws.fill().await? {
            bail!("the server closed the connection");
        }
        let mut replies = Vec::new();
        ws.drain(|frame| {
            let ok = contains(frame, br#""type":"ok""#);
            if ok || contains(frame, br#""type":"error""#) {
                replies.push((ok, String::from_utf8_lossy(frame).into_owned()));
            }
        })?;
        ws.answer_pings().await?;
        let now = Instant::now();
        if a.is_none() && now >= measure_from {
            a = Some(CpuSnapshot::take(pid));
        }
        for (ok, text) in replies {
            // Replies come in the order of the publishes.
            let slot = (answered % window as u64) as usize;
            answered += 1;
            if !ok {
                errors += 1;
                first_error.get_or_insert(text);
            } else if now >= measure_from && now < end {
                done += 1;
                let us = now.duration_since(sent_at[slot]).as_micros() as u64;
                hist.saturating_record(us.max(1));
            }
            if now < end {
                ws.send_text(&publish(next)).await?;
                sent_at[(next % window as u64) as usize] = Instant::now();
                next += 1;
            }
        }
    }
    let b = CpuSnapshot::take(pid);
    let a = a.context("the run ended before the measured window")?;
    let rss_kib = procs::rss_kib(pid);
    stage.server.stop();
    let max = hist.max().max(1);
    let q = |q: f64| hist.value_at_quantile(q).min(max);
    Ok(Outcome {
        scenario: sc,
        measured: Measured::Flow(Flow {
            subscribers: 0,
            rate: 0,
            writes_done: done,
            writes_acked: answered - errors,
            write_errors: errors,
            first_error,
            write_p50_us: q(0.50),
            write_p99_us: q(0.99),
            deliveries: 0,
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
            missed: 0,
            duplicates: 0,
            closed: 0,
            close_reasons: Vec::new(),
            drain: Duration::ZERO,
            events_per_read: 0.0,
        }),
        duration,
        rss_kib,
        cpu: procs::cpu_use(&a, &b, hz),
    })
}
