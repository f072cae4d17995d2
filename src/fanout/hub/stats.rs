//! The hub's counts for the dashboard and metrics.

use super::*;

/// Counts for the dashboard and metrics, taken on the hub thread.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct HubStats {
    pub connections: u64,
    /// Of `connections`: over WebSocket, SSE and MQTT.
    pub websocket_connections: u64,
    pub sse_connections: u64,
    pub mqtt_connections: u64,
    pub subscriptions: u64,
    /// Events and messages handed to outboxes since start.
    pub events_delivered: u64,
    pub slow_consumer_closes: u64,
    /// The last seq released to subscribers.
    pub seq: u64,
    /// Frames waiting in all outboxes, and in the fullest one.
    pub outbox_depth: u64,
    pub outbox_max: u64,
    /// Bytes waiting in all outboxes (a frame counts once per outbox it
    /// is in), and in the fullest one.
    pub outbox_bytes: u64,
    pub outbox_bytes_max: u64,
    /// Bytes of changes and messages waiting for the hub (see `backlog`).
    pub backlog_bytes: u64,
}

impl Hub {
    /// Taken on the hub thread, so they agree with each other.
    pub(super) fn stats(&self) -> HubStats {
        let mut outbox_depth = 0;
        let mut outbox_max = 0;
        let mut outbox_bytes = 0;
        let mut outbox_bytes_max = 0;
        for conn in self.conns.values() {
            let (bytes, frames) = conn.handle.outbox.queued();
            let (bytes, frames) = (bytes as u64, frames as u64);
            outbox_depth += frames;
            outbox_max = outbox_max.max(frames);
            outbox_bytes += bytes;
            outbox_bytes_max = outbox_bytes_max.max(bytes);
        }
        let count = |transport: Transport| {
            let on = self
                .conns
                .values()
                .filter(|c| c.handle.transport == transport);
            on.count() as u64
        };
        HubStats {
            outbox_depth,
            outbox_max,
            outbox_bytes,
            outbox_bytes_max,
            connections: self.conns.len() as u64,
            websocket_connections: count(Transport::WebSocket),
            sse_connections: count(Transport::Sse),
            mqtt_connections: count(Transport::Mqtt),
            subscriptions: self.conns.values().map(|c| c.topics.len() as u64).sum(),
            events_delivered: self.delivered,
            slow_consumer_closes: self.slow_closes,
            seq: self.next - 1,
            backlog_bytes: self.backlog.bytes() as u64,
        }
    }
}
