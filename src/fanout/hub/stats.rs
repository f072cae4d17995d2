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
    /// Bytes of changes and messages waiting for the hub (see `backlog`).
    pub backlog_bytes: u64,
}

impl Hub {
    /// Taken on the hub thread, so they agree with each other.
    pub(super) fn stats(&self) -> HubStats {
        let queued = self.conns.values().map(|c| {
            let outbox = &c.handle.outbox;
            (outbox.max_capacity() - outbox.capacity()) as u64
        });
        let (outbox_depth, outbox_max) = queued.fold((0, 0), |(sum, max), n| (sum + n, max.max(n)));
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
