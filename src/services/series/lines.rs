//! Readings that arrive as InfluxDB line protocol (`POST /api/v2/write`)
//! or as device messages (MQTT), handed to [`ingest_parsed`] like a JSON
//! batch: each point becomes an item as soon as its line is parsed and is
//! checked at once, on the same parser thread, with no list of items
//! built in between.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::{ingest_parsed, series_collection, Batch, IngestOptions, ItemSink};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::Collection;
use crate::series::line_protocol::{self, FieldValue};
use crate::services::items;
use crate::state::AppState;

/// `POST /api/v2/write`: InfluxDB line protocol into a series collection,
/// all or nothing. Tags and fields become fields of the same names, the
/// timestamp the time field, the measurement the field `measurement` when
/// the collection defines one. A bad line is 400 with its number, and so
/// is a refused reading (the client counts lines, not points).
pub async fn ingest_lines(
    state: &AppState,
    principal: &Principal,
    name: &str,
    body: bytes::Bytes,
    precision: line_protocol::Precision,
    idempotency_key: Option<String>,
) -> ApiResult<()> {
    let collection = series_collection(state, name)?;
    let limits = limits(state);
    // Each point's line, once every line has parsed: only then can the
    // batch be refused by item, and only such refusals are renumbered.
    let parsed_lines = Arc::new(Mutex::new(None));
    let parsed = parsed_lines.clone();
    let arrived_bytes = body.len();
    let parse = move |sink: ItemSink| {
        let mut numbers = Vec::new();
        let mut each = |item, line| {
            numbers.push(line);
            sink(item)
        };
        for_each_point(&collection, &body, precision, &limits, &mut each)?;
        *parsed.lock().unwrap_or_else(|e| e.into_inner()) = Some(numbers);
        Ok(())
    };
    let batch = Batch {
        parse,
        arrived_bytes,
        on_blocking_thread: arrived_bytes > crate::parse_pool::INLINE_BYTES,
    };
    let options = IngestOptions {
        idempotency_key,
        return_items: false,
    };
    let Err(mut e) = ingest_parsed(state, principal, name, batch, options).await else {
        return Ok(());
    };
    let Some(lines) = parsed_lines
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
    else {
        return Err(e);
    };
    // A batch of one point was refused without an item number.
    if lines.len() == 1 && e.details.as_ref().is_some_and(|d| d.get("items").is_none()) {
        let why = e.details.take().unwrap_or(Value::Null);
        e.details = Some(json!({ "lines": { lines[0].to_string(): why } }));
        return Err(e);
    }
    if let Some(Value::Object(bad)) = e.details.as_mut().and_then(|d| d.get_mut("items")) {
        let by_line: Map<String, Value> = std::mem::take(bad)
            .into_iter()
            .map(|(index, why)| {
                let line = index.parse::<usize>().ok().and_then(|i| lines.get(i));
                (line.map_or(index, |l| l.to_string()), why)
            })
            .collect();
        e.details = Some(json!({ "lines": by_line }));
    }
    Err(e)
}

/// Devices' messages for a series collection (MQTT), all or nothing: each
/// a JSON object, a JSON array of them, or line protocol, told apart by
/// its first byte. Readings that do not name their source get `source`
/// (the device the messages came from). Several messages of one
/// connection go in one append, so they cost the writer one item, not
/// one each.
pub async fn ingest_messages(
    state: &AppState,
    principal: &Principal,
    name: &str,
    payloads: Vec<bytes::Bytes>,
    source: Option<String>,
) -> ApiResult<Value> {
    let collection = series_collection(state, name)?;
    let limits = limits(state);
    let arrived_bytes = payloads.iter().map(|p| p.len()).sum();
    let parse = move |sink: ItemSink| {
        let series_field = collection.series.as_ref().map(|s| s.series_field.clone());
        // Readings that do not name their source are the device's.
        let mut with_source = |mut item: Value| {
            if let (Some(source), Some(field), Value::Object(fields)) =
                (&source, &series_field, &mut item)
            {
                if !fields.contains_key(field) {
                    fields.insert(field.clone(), Value::String(source.clone()));
                }
            }
            sink(item)
        };
        for payload in &payloads {
            match payload.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | Some(b'[') => {
                    items::for_each(payload, items::Framing::Json, &mut with_source)?;
                }
                _ => {
                    let precision = line_protocol::Precision::default();
                    let mut each = |item, _line| with_source(item);
                    for_each_point(&collection, payload, precision, &limits, &mut each)?;
                }
            }
        }
        Ok(())
    };
    let batch = Batch {
        parse,
        arrived_bytes,
        on_blocking_thread: false,
    };
    ingest_parsed(state, principal, name, batch, IngestOptions::default()).await
}

fn limits(state: &AppState) -> line_protocol::Limits {
    line_protocol::Limits {
        max_lines: state.live.get().max_batch,
        ..line_protocol::Limits::default()
    }
}

/// Hands each point of `body` to `each` as a JSON item, with its line
/// number, as soon as its line is parsed. The first bad line ends the
/// batch; a body with no points is refused.
fn for_each_point(
    collection: &Collection,
    body: &[u8],
    precision: line_protocol::Precision,
    limits: &line_protocol::Limits,
    each: &mut dyn FnMut(Value, usize) -> ApiResult<()>,
) -> ApiResult<()> {
    let Some(shape) = &collection.series else {
        return Err(ApiError::bad_request("not a series collection"));
    };
    let keeps_measurement = collection.def.fields.contains_key("measurement");
    let mut points = 0usize;
    let mut lines = line_protocol::parse_lines(body, precision, limits);
    while let Some(point) = lines.next() {
        let point = point.map_err(|e| {
            ApiError::bad_request(e.to_string())
                .with_details(json!({"line": e.line, "column": e.column}))
        })?;
        let mut item = Map::new();
        if keeps_measurement {
            item.insert(
                "measurement".into(),
                Value::String(point.measurement.into_owned()),
            );
        }
        for (key, value) in point.tags {
            item.insert(key.into_owned(), Value::String(value.into_owned()));
        }
        for (key, value) in point.fields {
            let value = match value {
                FieldValue::Float(f) => {
                    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                }
                FieldValue::Integer(i) => Value::from(i),
                FieldValue::UInteger(u) => Value::from(u),
                FieldValue::Boolean(b) => Value::Bool(b),
                FieldValue::String(s) => Value::String(s.into_owned()),
            };
            item.insert(key.into_owned(), value);
        }
        if let (Some(field), Some(ms)) = (&shape.time_field, point.time_ms) {
            item.insert(field.clone(), Value::from(ms));
        }
        points += 1;
        each(Value::Object(item), lines.line())?;
    }
    if points == 0 {
        return Err(ApiError::bad_request("no points in the body"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::testing::{admin, refused, state_with_series, stop};

    async fn write(state: &AppState, body: &'static [u8]) -> ApiResult<()> {
        let body = bytes::Bytes::from_static(body);
        let precision = line_protocol::Precision::Ms;
        ingest_lines(state, &admin(), "readings", body, precision, None).await
    }

    #[tokio::test]
    async fn a_bad_line_after_one_good_point_is_named_by_its_line_and_column() {
        let (_dir, state) = state_with_series().await;
        let e = refused(write(&state, b"m,device=a temp=1.5\nm,device=b temp=\n").await);
        assert_eq!(e.code, "bad_request", "{e:?}");
        let details = e.details.expect("details");
        assert_eq!(details["line"], 2, "{details}");
        assert!(details["column"].is_u64(), "{details}");
        stop(state).await;
    }

    #[tokio::test]
    async fn a_refused_point_is_named_by_its_line_not_its_index() {
        let (_dir, state) = state_with_series().await;
        let body = b"# two points\n\nm,device=a temp=1.5\nm,device=b temp=\"hot\"\n";
        let e = refused(write(&state, body).await);
        assert_eq!(e.code, "validation_failed", "{e:?}");
        let lines = &e.details.expect("details")["lines"];
        let named: Vec<&String> = lines.as_object().expect("by line").keys().collect();
        assert_eq!(named, ["4"], "{lines}");
        let one = refused(write(&state, b"\nm,device=b temp=\"hot\"\n").await);
        assert!(one.details.expect("details")["lines"]["2"].is_object());
        stop(state).await;
    }
}
