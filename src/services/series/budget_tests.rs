//! Every way readings arrive waits for room in the ingest budget before
//! its batch is parsed, and gives the room back once it is written.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::series::line_protocol;
use crate::services::testing::{admin, state_with_series, stop};

/// Runs `ingest` while the whole budget is held elsewhere: it must not
/// finish until the budget is given back, and then must.
async fn waits_for_room<F>(state: &AppState, ingest: F)
where
    F: std::future::Future<Output = ApiResult<()>>,
{
    let held = state
        .ingest_budget
        .admit(usize::MAX)
        .await
        .expect("never closed");
    tokio::pin!(ingest);
    let early = tokio::time::timeout(Duration::from_millis(200), &mut ingest).await;
    assert!(early.is_err(), "written while the budget was full");
    drop(held);
    tokio::time::timeout(Duration::from_secs(10), ingest)
        .await
        .expect("written once there was room")
        .expect("written");
}

async fn readings_stored(state: &AppState) -> usize {
    let params = SeriesListParams::default();
    let listed = list(state, &admin(), "readings", params)
        .await
        .expect("listed");
    listed["items"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_json_batch_waits_for_room_and_gives_it_back() {
    let (_dir, state) = state_with_series().await;
    let items = vec![json!({"device": "a", "temp": 1.5}), json!({"device": "b"})];
    let ingest = async {
        let options = IngestOptions::default();
        ingest(&state, &admin(), "readings", items, 64, options)
            .await
            .map(|_| ())
    };
    waits_for_room(&state, ingest).await;
    assert_eq!(readings_stored(&state).await, 2);
    let whole = state.ingest_budget.bytes() as usize;
    let again = tokio::time::timeout(Duration::from_secs(1), state.ingest_budget.admit(whole));
    assert!(again.await.is_ok(), "the batch's room was given back");
    stop(state).await;
}

#[tokio::test]
async fn line_protocol_waits_for_room_before_its_lines_are_parsed() {
    let (_dir, state) = state_with_series().await;
    let body = bytes::Bytes::from_static(b"m,device=a temp=1.5 1700000000000000000\n");
    let precision = line_protocol::Precision::default();
    let admin = admin();
    let ingest = ingest_lines(&state, &admin, "readings", body, precision, None);
    waits_for_room(&state, ingest).await;
    assert_eq!(readings_stored(&state).await, 1);
    stop(state).await;
}

#[tokio::test]
async fn device_messages_wait_for_room() {
    let (_dir, state) = state_with_series().await;
    let payloads = vec![bytes::Bytes::from_static(br#"{"temp": 2.5}"#)];
    let source = Some("gw-1".to_owned());
    let ingest = async {
        ingest_messages(&state, &admin(), "readings", payloads, source)
            .await
            .map(|_| ())
    };
    waits_for_room(&state, ingest).await;
    assert_eq!(readings_stored(&state).await, 1);
    stop(state).await;
}
