//! Where a PUBLISH goes: `C` or `C/rest/of/topic` writes into the
//! collection `C` through the same services as REST (records, or readings
//! whose source defaults to the topic's last segment); any other first
//! segment is a custom topic, published under its `publish` rule (with
//! the retain flag, kept as the topic's retained message). A
//! refusal is the service's own [`ApiError`], which [`reason`] turns into
//! a PUBACK reason code.

use std::net::IpAddr;

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::Value;

use super::codec::PubAckReason;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::services::{records, series, topics};
use crate::state::AppState;

/// Writes or publishes one message; `Ok` once it is as durable as a 2xx
/// of the same request over REST. `retain` applies to custom topics only:
/// a collection keeps its records, and a subscriber catches up on them by
/// resuming a persistent session.
pub async fn apply(
    state: &AppState,
    principal: &Principal,
    peer: IpAddr,
    topic: &str,
    payload: Bytes,
    retain: bool,
) -> ApiResult<()> {
    let (name, rest) = split(topic)?;
    let Some(collection) = state.store.catalog().get(name) else {
        return publish_message(state, principal, peer, name, &payload, retain).await;
    };
    if collection.is_series() {
        series::ingest_messages(state, principal, name, vec![payload], source(rest)).await?;
        return Ok(());
    }
    let (items, is_batch) = match json(&payload)? {
        Value::Array(items) => (items, true),
        item => (vec![item], false),
    };
    records::create(state, principal, name, items, is_batch).await?;
    Ok(())
}

/// Whether consecutive messages to `topic` may be written together by
/// [`apply_all`]: readings of a series collection, whose appends are
/// all or nothing and cheaper by the batch. Records and custom topics go
/// one by one, as each is its own event.
pub fn batches(state: &AppState, topic: &str) -> bool {
    split(topic).is_ok_and(|(name, _)| {
        state
            .store
            .catalog()
            .get(name)
            .is_some_and(|c| c.is_series())
    })
}

/// Several messages to one topic, in one append when all are good: the
/// answer per message, in order. When the append is refused, each
/// message is tried alone (nothing of the refused append was written),
/// so a bad reading is refused by itself and the good ones beside it are
/// kept, as if they had come one at a time.
pub async fn apply_all(
    state: &AppState,
    principal: &Principal,
    peer: IpAddr,
    topic: &str,
    payloads: Vec<Bytes>,
    retain: bool,
) -> Vec<ApiResult<()>> {
    if let [payload] = payloads.as_slice() {
        return vec![apply(state, principal, peer, topic, payload.clone(), retain).await];
    }
    let together = match split(topic) {
        Ok((name, rest)) => {
            series::ingest_messages(state, principal, name, payloads.clone(), source(rest)).await
        }
        Err(e) => Err(e),
    };
    if together.is_ok() {
        return payloads.iter().map(|_| Ok(())).collect();
    }
    let alone = payloads
        .into_iter()
        .map(|payload| apply(state, principal, peer, topic, payload, retain));
    futures_util::future::join_all(alone).await
}

/// A topic's collection or custom topic name, and the rest after it.
fn split(topic: &str) -> ApiResult<(&str, Option<&str>)> {
    let (name, rest) = match topic.split_once('/') {
        Some((name, rest)) => (name, Some(rest)),
        None => (topic, None),
    };
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "the topic must start with a collection or topic name",
        ));
    }
    Ok((name, rest))
}

/// `readings/site-3/gw-7`: the device is the topic's last segment.
fn source(rest: Option<&str>) -> Option<String> {
    rest.and_then(|rest| rest.rsplit('/').next())
        .filter(|segment| !segment.is_empty())
        .map(str::to_owned)
}

/// A custom topic's message: the payload is its JSON `data`, at the same
/// rate per caller as `POST /api/topics/{t}/messages`. A retained empty
/// payload clears the topic's retained message and publishes nothing, as
/// MQTT has it.
async fn publish_message(
    state: &AppState,
    principal: &Principal,
    peer: IpAddr,
    name: &str,
    payload: &[u8],
    retain: bool,
) -> ApiResult<()> {
    let caller = match principal.id() {
        Some(id) => id,
        None => format!("address {peer}"),
    };
    state
        .realtime
        .publish_rates
        .allow(&caller, state.live.get().message_rate)?;
    if !retain {
        topics::publish(state, principal, name, json(payload)?).await?;
    } else if payload.is_empty() {
        topics::clear_retained(state, principal, name).await?;
    } else {
        topics::publish_retained(state, principal, name, json(payload)?).await?;
    }
    Ok(())
}

fn json(payload: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(payload)
        .map_err(|e| ApiError::bad_request(format!("the payload is not JSON: {e}")))
}

/// The MQTT 5 PUBACK reason for a refused write.
pub fn reason(error: &ApiError) -> PubAckReason {
    match error.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => PubAckReason::NotAuthorized,
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            PubAckReason::PayloadFormatInvalid
        }
        StatusCode::NOT_FOUND => PubAckReason::TopicNameInvalid,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => {
            PubAckReason::QuotaExceeded
        }
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => {
            PubAckReason::ImplementationSpecificError
        }
        _ => PubAckReason::UnspecifiedError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_the_reason_codes_a_device_can_act_on() {
        let cases = [
            (ApiError::forbidden("no"), PubAckReason::NotAuthorized),
            (ApiError::unauthorized("no"), PubAckReason::NotAuthorized),
            (
                ApiError::validation_details("bad", Value::Null),
                PubAckReason::PayloadFormatInvalid,
            ),
            (ApiError::not_found("no"), PubAckReason::TopicNameInvalid),
            (
                ApiError::rate_limited("slow down", 1),
                PubAckReason::QuotaExceeded,
            ),
            (
                ApiError::unavailable("disk"),
                PubAckReason::UnspecifiedError,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(reason(&error), expected, "{}", error.code);
        }
    }
}
