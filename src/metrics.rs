//! Prometheus metrics. Events are recorded where they happen (requests in
//! the HTTP layer, fsyncs in the flusher, writes in the writer) through the
//! `metrics` facade; state (connections, seqs, storage) is sampled into
//! gauges when `/metrics` is scraped, so nothing pays for it between
//! scrapes. The exporter crate does all the text formatting.
//!
//! Every name is `pulsebase_*`; docs/operations.md lists them.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

pub const HTTP_REQUESTS: &str = "pulsebase_http_requests_total";
pub const HTTP_DURATION: &str = "pulsebase_http_request_duration_seconds";
pub const WRITES: &str = "pulsebase_writes_total";
pub const FLUSH_DURATION: &str = "pulsebase_flush_duration_seconds";
pub const FLUSH_ERRORS: &str = "pulsebase_flush_errors_total";
pub const CHORE_CHUNKS: &str = "pulsebase_housekeeping_chunks_total";
pub const DELIVERY_LAG: &str = "pulsebase_realtime_delivery_lag_seconds";

/// Seconds. From half a millisecond (a cached read) to 10 s (a large batch
/// on a slow SD card).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets. Without it
/// they pile up in memory until the next scrape, and nobody may scrape.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Longer than any sane scrape interval.
const GAUGE_IDLE: Duration = Duration::from_secs(600);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Several servers in one
/// process (tests) share it. (A program embedding pulsebase that installed
/// its own recorder first gets our metrics in that recorder instead.)
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            // Gauges are set at every scrape; one that stops being set (a
            // dropped collection's record count) disappears.
            .idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE))
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_ok() {
            describe();
        }
        handle
    })
}

/// Records a delivery lag ([`DELIVERY_LAG`]). Taken once per batch a
/// WebSocket takes and once per SSE or MQTT message (about 70,000 a second
/// at 1000 subscribers x 1000 writes/s), so the histogram's handle is
/// looked up once, not at each sample.
pub fn delivery_lag(lag: Duration) {
    static LAG: OnceLock<metrics::Histogram> = OnceLock::new();
    LAG.get_or_init(|| {
        // The recorder first: a handle taken before it is installed
        // would record nowhere, for good.
        handle();
        metrics::histogram!(DELIVERY_LAG)
    })
    .record(lag.as_secs_f64());
}

/// Installs the recorder and folds histogram samples on a timer, for as
/// long as the runtime lives (once per process).
pub fn spawn_upkeep() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    let handle = handle();
    STARTED.call_once(|| {
        tokio::spawn(upkeep(handle));
    });
}

async fn upkeep(handle: &'static PrometheusHandle) {
    let mut tick = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tick.tick().await;
        handle.run_upkeep();
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency (for WebSocket and SSE: until the response head)"
    );
    describe_counter!(
        WRITES,
        "Write requests the writer finished, by result (ok or error)"
    );
    describe_histogram!(FLUSH_DURATION, Unit::Seconds, "Group-commit fsync latency");
    describe_counter!(FLUSH_ERRORS, "Failed fsyncs (their writes answered 503)");
    describe_counter!(
        CHORE_CHUNKS,
        "Chunks of housekeeping run between write groups, by chore (purge, migrate, drop_index)"
    );
    describe_histogram!(
        DELIVERY_LAG,
        Unit::Seconds,
        "Delivery lag: how long the oldest message waiting for a connection had \
         waited when the connection took its next batch to write, from the server \
         serializing it (after the fsync, for a stored change)"
    );
    for (name, help) in GAUGES {
        describe_gauge!(*name, *help);
    }
    for (name, help) in SAMPLED_COUNTERS {
        describe_counter!(*name, *help);
    }
}

/// Gauges set at scrape time by the `/metrics` handler.
pub const GAUGES: &[(&str, &str)] = &[
    (
        "pulsebase_changelog_seq",
        "Newest change-log seq applied (every record change and custom-topic message takes one)",
    ),
    (
        "pulsebase_changelog_durable_seq",
        "Newest seq known to be on disk",
    ),
    (
        "pulsebase_changelog_oldest_seq",
        "Oldest change-log seq still kept (resume from before it: history_expired)",
    ),
    (
        "pulsebase_realtime_released_seq",
        "Newest seq released to subscribers",
    ),
    (
        "pulsebase_realtime_connections",
        "Open WebSocket, SSE and MQTT connections",
    ),
    (
        "pulsebase_realtime_transport_connections",
        "Open connections by transport (websocket, sse, mqtt)",
    ),
    (
        "pulsebase_realtime_subscriptions",
        "Subscriptions across all connections",
    ),
    (
        "pulsebase_realtime_outbox_depth",
        "Frames waiting in all outboxes",
    ),
    (
        "pulsebase_realtime_outbox_max",
        "Frames waiting in the fullest outbox",
    ),
    (
        "pulsebase_realtime_outbox_bytes",
        "Bytes waiting in all outboxes, a frame counted once per outbox",
    ),
    (
        "pulsebase_realtime_outbox_bytes_max",
        "Bytes waiting in the fullest outbox",
    ),
    (
        "pulsebase_realtime_paced_connections",
        "Busy connections whose writes are spaced to gather fuller batches",
    ),
    (
        "pulsebase_realtime_backlog_bytes",
        "Bytes of changes and messages waiting for the realtime hub",
    ),
    ("pulsebase_storage_bytes", "Bytes the database uses on disk"),
    ("pulsebase_records", "Records per collection"),
];

/// Counters kept elsewhere (the realtime hub counts on its own thread) and
/// copied at scrape time.
pub const SAMPLED_COUNTERS: &[(&str, &str)] = &[
    (
        "pulsebase_realtime_events_delivered_total",
        "Events and messages handed to outboxes since start",
    ),
    (
        "pulsebase_realtime_slow_consumer_closes_total",
        "Connections closed because their outbox was full, since start",
    ),
];
