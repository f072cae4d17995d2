//! Retention: removes records past a collection's `max_age` or beyond its
//! `max_records`, oldest first, through the ordinary write path, so each
//! removal is a change-log `delete` with reason `expired`. The same loop
//! trims the change log to `changelog_retain` entries or 24 hours, whichever
//! keeps more, and forgets expired sign-in sessions, persistent MQTT
//! sessions past their expiry, and day-old ingest `Idempotency-Key`s. Series collections drop whole blocks instead
//! (`max_age`, `max_bytes`), each round in one write with one `expired`
//! notice.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::model::Collection;
use crate::state::AppState;
use crate::store::writer::{Mutation, RecordOp, Truncation};

const INTERVAL: Duration = Duration::from_secs(2);
/// Removals per write, so retention never holds the writer for long.
const CHUNK: usize = 1000;
/// Removals per collection per round; the rest waits for the next round.
const ROUND: usize = 50_000;
/// Expired refresh tokens and old revoke markers go every half hour.
const SESSION_PRUNE_ROUNDS: u64 = 900;
/// Ingest `Idempotency-Key`s older than a day go every ten minutes.
const IDEMPOTENCY_PRUNE_ROUNDS: u64 = 300;
const IDEMPOTENCY_KEEP_MS: i64 = 24 * 3600 * 1000;
/// Expired MQTT sessions go every ten seconds: a scan of the stored
/// sessions, which are few next to records.
const MQTT_SESSION_PRUNE_ROUNDS: u64 = 5;

/// A session is kept while its client is connected, whatever its last
/// save says: expiry counts from the connection's end.
async fn forget_expired_mqtt_sessions(state: &AppState) {
    let connected = state.realtime.mqtt_client_ids().await;
    let store = state.store.clone();
    let now = crate::clock::now_ms();
    let pruned = tokio::task::spawn_blocking(move || {
        store.prune_mqtt_sessions(now, |id| connected.contains(id))
    });
    match pruned.await {
        Ok(Ok(0)) => {}
        Ok(Ok(forgotten)) => tracing::info!(forgotten, "expired MQTT sessions forgotten"),
        Ok(Err(e)) => tracing::warn!(error = %e, "MQTT session pruning failed"),
        Err(e) => tracing::warn!(error = %e, "MQTT session pruning task failed"),
    }
}

pub async fn run(state: AppState, mut stop: watch::Receiver<bool>) {
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        if rounds % SESSION_PRUNE_ROUNDS == 0 {
            let auth = state.auth.clone();
            match tokio::task::spawn_blocking(move || auth.prune_sessions()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(forgotten)) => tracing::info!(forgotten, "old sign-in sessions forgotten"),
                Ok(Err(e)) => tracing::warn!(error = %e, "session pruning failed"),
                Err(e) => tracing::warn!(error = %e, "session pruning task failed"),
            }
        }
        if rounds % MQTT_SESSION_PRUNE_ROUNDS == 0 {
            forget_expired_mqtt_sessions(&state).await;
        }
        rounds += 1;
        let store = state.store.clone();
        let keep = state.live.get().changelog_retain;
        match tokio::task::spawn_blocking(move || {
            store.trim_changelog(keep, crate::store::CHANGELOG_MIN_AGE_MS)
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "change log trimmed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "change-log trim failed"),
            Err(e) => tracing::warn!(error = %e, "change-log trim task failed"),
        }
        if rounds % IDEMPOTENCY_PRUNE_ROUNDS == 1 {
            if let Err(e) = forget_idempotency_keys(&state).await {
                tracing::warn!(error = %e, "forgetting old Idempotency-Keys failed");
            }
        }
        for collection in state.store.catalog().all() {
            if collection.def.retention.is_none() {
                continue;
            }
            let enforced = if collection.is_series() {
                enforce_series(&state, &collection).await
            } else {
                enforce(&state, &collection).await
            };
            if let Err(e) = enforced {
                tracing::warn!(collection = %collection.def.name, error = %e, "retention round failed");
            }
            if *stop.borrow() {
                return;
            }
        }
    }
}

/// A series collection drops whole blocks: those whose newest reading is
/// past `max_age`, then the oldest while its blocks hold more than
/// `max_bytes`. The writer is asked only when something is due.
async fn enforce_series(state: &AppState, collection: &Arc<Collection>) -> anyhow::Result<()> {
    let Some(shape) = &collection.series else {
        return Ok(());
    };
    let before_ms = collection
        .max_age
        .map(|age| crate::clock::now_ms() - age.as_millis() as i64);
    let store = state.store.clone();
    let id = collection.id;
    let max_bytes = shape.max_bytes;
    let due =
        tokio::task::spawn_blocking(move || store.series_due(id, before_ms, max_bytes)).await??;
    if !due {
        return Ok(());
    }
    let truncation = Truncation {
        before_ms,
        exact: false,
        max_bytes,
    };
    state
        .writer
        .submit(Mutation::Truncate {
            collection: collection.clone(),
            truncation,
        })
        .await?;
    tracing::info!(collection = %collection.def.name, "retention dropped old blocks");
    Ok(())
}

async fn forget_idempotency_keys(state: &AppState) -> anyhow::Result<()> {
    let store = state.store.clone();
    let before = crate::clock::now_ms() - IDEMPOTENCY_KEEP_MS;
    let keys = tokio::task::spawn_blocking(move || store.idempotency_keys_before(before)).await??;
    for chunk in keys.chunks(CHUNK) {
        state
            .writer
            .submit(Mutation::ForgetIdempotencyKeys(chunk.to_vec()))
            .await?;
    }
    Ok(())
}

async fn enforce(state: &AppState, collection: &Arc<Collection>) -> anyhow::Result<()> {
    let store = state.store.clone();
    let target = collection.clone();
    let ids = tokio::task::spawn_blocking(move || expired_ids(&store, &target)).await??;
    for chunk in ids.chunks(CHUNK) {
        let ops = chunk
            .iter()
            .map(|id| RecordOp::Delete {
                id: id.clone(),
                expected_rev: None,
                expired: true,
                permit: crate::access::system(),
            })
            .collect();
        state
            .writer
            .submit(Mutation::Records {
                collection: collection.clone(),
                ops,
                actor: None,
            })
            .await?;
    }
    if !ids.is_empty() {
        tracing::info!(collection = %collection.def.name, removed = ids.len(), "retention");
    }
    Ok(())
}

fn expired_ids(
    store: &crate::store::Store,
    collection: &Collection,
) -> Result<Vec<String>, crate::store::StoreError> {
    let mut ids = Vec::new();
    if let Some(max_age) = collection.max_age {
        let cutoff_ms = crate::clock::now_ms() - max_age.as_millis() as i64;
        let cutoff = crate::clock::format_ms(cutoff_ms);
        ids = store.oldest_ids(collection.id, Some(&cutoff), ROUND)?;
    }
    let max_records = collection
        .def
        .retention
        .as_ref()
        .and_then(|r| r.max_records);
    if let Some(max) = max_records {
        let count = store.record_count(collection.id)?;
        let remaining = count.saturating_sub(ids.len() as u64);
        if remaining > max {
            let excess = (remaining - max) as usize;
            let wanted = (ids.len() + excess).min(ROUND);
            // The oldest `wanted` include the ones already past max_age.
            ids = store.oldest_ids(collection.id, None, wanted)?;
        }
    }
    Ok(ids)
}
