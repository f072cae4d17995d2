//! `GET /metrics`: Prometheus text for admins, or for whoever presents the
//! `metrics_token` (a scraper should not hold an admin's credentials).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq as _;

use super::error::{ApiError, ApiResult};
use super::extract::{header_credentials, one_credential};
use super::AppState;
use crate::auth::Principal;
use crate::metrics::{self as names, handle};

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    authorize(&state, &headers)?;
    sample(&state).await?;
    Ok(([(CONTENT_TYPE, TEXT_FORMAT)], handle().render()).into_response())
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut credentials = header_credentials(headers)?;
    // The metrics token is not a credential `Auth` knows: taken out first,
    // so whatever comes with it is checked like any other credential.
    let is_metrics_token = |presented: &&str| {
        state
            .settings
            .metrics_token
            .as_ref()
            .is_some_and(|token| bool::from(presented.as_bytes().ct_eq(token.as_bytes())))
    };
    let scraper = credentials.iter().any(is_metrics_token);
    credentials.retain(|c| !is_metrics_token(c));
    let presented = one_credential(&state.auth, &credentials)?;
    match (scraper, presented) {
        (true, None) => Ok(()),
        (true, Some(other)) => {
            state.auth.authenticate(other)?;
            Err(ApiError::bad_request(
                "more than one credential: send only the metrics_token",
            ))
        }
        (false, None) => Err(ApiError::unauthorized(
            "sign in as an admin or present the metrics_token",
        )),
        (false, Some(presented)) => match state.auth.authenticate(presented)? {
            principal if principal.is_admin() => Ok(()),
            Principal::Anonymous => Err(ApiError::unauthorized("sign in as an admin")),
            _ => Err(ApiError::forbidden("admins or the metrics_token only")),
        },
    }
}

/// Copies the server's state into gauges just before rendering.
async fn sample(state: &AppState) -> Result<(), ApiError> {
    let realtime = state.realtime.stats().await;
    let store = state.store.clone();
    // Counters and sizes are read from disk.
    let (oldest_seq, storage_bytes, records) = tokio::task::spawn_blocking(move || {
        let mut records = Vec::new();
        for collection in store.catalog().all() {
            records.push((
                collection.def.name.clone(),
                store.record_count(collection.id)?,
            ));
        }
        Ok::<_, crate::store::StoreError>((store.first_seq()?, store.size_on_disk(), records))
    })
    .await
    .map_err(ApiError::internal)??;

    let gauges = [
        (
            "pulsebase_changelog_seq",
            *state.writer.committed_seq().borrow(),
        ),
        (
            "pulsebase_changelog_durable_seq",
            *state.writer.durable_seq().borrow(),
        ),
        ("pulsebase_changelog_oldest_seq", oldest_seq),
        ("pulsebase_realtime_released_seq", realtime.seq),
        ("pulsebase_realtime_connections", realtime.connections),
        ("pulsebase_realtime_subscriptions", realtime.subscriptions),
        ("pulsebase_realtime_outbox_depth", realtime.outbox_depth),
        ("pulsebase_realtime_outbox_max", realtime.outbox_max),
        ("pulsebase_realtime_outbox_bytes", realtime.outbox_bytes),
        (
            "pulsebase_realtime_outbox_bytes_max",
            realtime.outbox_bytes_max,
        ),
        (
            "pulsebase_realtime_paced_connections",
            state.realtime.paced_connections() as u64,
        ),
        ("pulsebase_realtime_backlog_bytes", realtime.backlog_bytes),
        ("pulsebase_storage_bytes", storage_bytes),
    ];
    for (name, value) in gauges {
        debug_assert!(names::GAUGES.iter().any(|(n, _)| *n == name));
        metrics::gauge!(name).set(value as f64);
    }
    let transports = [
        ("websocket", realtime.websocket_connections),
        ("sse", realtime.sse_connections),
        ("mqtt", realtime.mqtt_connections),
    ];
    for (transport, count) in transports {
        metrics::gauge!("pulsebase_realtime_transport_connections", "transport" => transport)
            .set(count as f64);
    }
    for (collection, count) in records {
        metrics::gauge!("pulsebase_records", "collection" => collection).set(count as f64);
    }
    metrics::counter!("pulsebase_realtime_events_delivered_total")
        .absolute(realtime.events_delivered);
    metrics::counter!("pulsebase_realtime_slow_consumer_closes_total")
        .absolute(realtime.slow_consumer_closes);
    Ok(())
}
