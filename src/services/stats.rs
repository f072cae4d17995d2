//! What the admin dashboard charts. Counters only grow (`events_delivered`,
//! `seq`), so a client polling them derives events/s and writes/s from the
//! difference between two readings.

use serde_json::{json, Map, Value};

use crate::access::AdminPermit;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn collect(state: &AppState, _: &AdminPermit) -> ApiResult<Value> {
    let realtime = state.realtime.stats().await;
    let store = state.store.clone();
    // Walking the data files and reading counters touches the disk.
    let (storage_bytes, collections, series, mqtt_sessions) =
        tokio::task::spawn_blocking(move || {
            let mut collections = Map::new();
            let mut series = Map::new();
            for collection in store.catalog().all() {
                let count = store.record_count(collection.id)?;
                collections.insert(collection.def.name.clone(), json!(count));
                if collection.is_series() {
                    let (bytes, blocks) = store.series_size(collection.id)?;
                    let size = json!({"readings": count, "blocks": blocks, "bytes": bytes});
                    series.insert(collection.def.name.clone(), size);
                }
            }
            let sessions = store.mqtt_session_count();
            Ok::<_, crate::store::StoreError>((store.size_on_disk(), collections, series, sessions))
        })
        .await
        .map_err(ApiError::internal)??;
    Ok(json!({
        "seq": *state.writer.committed_seq().borrow(),
        "released_seq": realtime.seq,
        "connections": realtime.connections,
        "transports": {
            "websocket": realtime.websocket_connections,
            "sse": realtime.sse_connections,
            "mqtt": realtime.mqtt_connections,
        },
        "subscriptions": realtime.subscriptions,
        "events_delivered": realtime.events_delivered,
        "slow_consumer_closes": realtime.slow_consumer_closes,
        "mqtt_sessions": mqtt_sessions,
        "backlog_bytes": realtime.backlog_bytes,
        "outbox_bytes": realtime.outbox_bytes,
        "outbox_bytes_max": realtime.outbox_bytes_max,
        "storage_bytes": storage_bytes,
        "records": collections,
        "series": series,
    }))
}
