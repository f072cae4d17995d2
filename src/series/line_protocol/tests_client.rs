//! Line protocol written by the official InfluxDB Python client (see
//! src/series/line_protocol/testdata/generate.py): every line parses to what the
//! client was given.

use serde_json::Value;

use super::*;

const LINES: &str = include_str!("testdata/influxdb_client.lp");
const EXPECTED: &str = include_str!("testdata/expected.json");

fn expected_value(v: &Value) -> FieldValue<'static> {
    let value = &v["value"];
    match v["type"].as_str() {
        // Written as Python's repr: serde_json's own float reading can be
        // one ulp off.
        Some("float") => FieldValue::Float(
            value
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("a float"),
        ),
        Some("integer") => FieldValue::Integer(value.as_i64().expect("an i64")),
        Some("boolean") => FieldValue::Boolean(value.as_bool().expect("a bool")),
        Some("string") => FieldValue::String(value.as_str().expect("a string").to_owned().into()),
        other => panic!("unknown type {other:?}"),
    }
}

fn pair(v: &Value) -> (&str, &Value) {
    (v[0].as_str().expect("a key"), &v[1])
}

#[test]
fn influxdb_python_client_lines_parse_to_what_it_was_given() {
    let points = parse_batch(LINES.as_bytes(), Precision::Ns, &Limits::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<Value> = serde_json::from_str(EXPECTED).expect("expected.json is JSON");
    assert_eq!(points.len(), expected.len());
    assert_eq!(points.len(), 300);
    for (i, (p, want)) in points.iter().zip(&expected).enumerate() {
        let line = i + 1;
        assert_eq!(
            p.measurement,
            want["measurement"].as_str().unwrap(),
            "line {line}"
        );
        assert_eq!(p.time_ms, want["time_ms"].as_i64(), "line {line}");
        // The client sorts tags and fields by key; compare sorted.
        let mut got_tags: Vec<(&str, &str)> = p.tags.iter().map(|(k, v)| (&**k, &**v)).collect();
        let mut want_tags: Vec<(&str, &str)> = want["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| (pair(t).0, t[1].as_str().unwrap()))
            .collect();
        got_tags.sort();
        want_tags.sort();
        assert_eq!(got_tags, want_tags, "line {line}");
        let mut got_fields: Vec<(&str, &FieldValue)> =
            p.fields.iter().map(|(k, v)| (&**k, v)).collect();
        let mut want_fields: Vec<(&str, FieldValue)> = want["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (pair(f).0, expected_value(pair(f).1)))
            .collect();
        got_fields.sort_by_key(|f| f.0);
        want_fields.sort_by_key(|f| f.0);
        let want_fields: Vec<(&str, &FieldValue)> =
            want_fields.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(got_fields, want_fields, "line {line}");
    }
}
