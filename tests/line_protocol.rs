//! `/api/v2/write` as an InfluxDB user meets it: the official Python client
//! (`influxdb-client` from PyPI, tests/line_protocol/influx_client.py)
//! writes points at every precision, line protocol it rendered itself, bad
//! batches and a wrong token; then this test reads back over the REST API
//! that exactly the expected readings are stored.
//!
//! Needs Python 3 with `influxdb-client` (`.ci/run` installs it into a
//! virtualenv and names its interpreter in `PULSEBASE_PYTHON`; otherwise
//! `python3` is used). On a machine without it the test says SKIPPED and
//! passes, except under CI, where a missing client is a failure.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{client, send, TestServer};
use serde_json::{json, Value};

fn python() -> String {
    std::env::var("PULSEBASE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether `python` can import the client (and exists at all).
fn has_influx_client(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import influxdb_client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Milliseconds since the epoch, rounded down as the server must: a time
/// 1 ns before the epoch is in the millisecond before it, not at 0.
fn floor_ms(time: i64, precision: &str) -> i64 {
    match precision {
        "ns" => time.div_euclid(1_000_000),
        "us" => time.div_euclid(1_000),
        "ms" => time,
        "s" => time * 1_000,
        other => panic!("unknown precision {other}"),
    }
}

/// `2023-11-14T22:13:20.001Z` as milliseconds since the epoch.
fn parse_ms(text: &str) -> i64 {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"));
    i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap()
}

/// What identifies a reading and what it holds, comparable exactly: floats
/// as Rust's shortest round-trip text, equal only when the bits are (the
/// client sends them in full precision).
type Reading = (String, i64, String, String, String);

fn stored(item: &Value) -> Reading {
    (
        item["device"].as_str().unwrap().to_owned(),
        parse_ms(item["ts"].as_str().unwrap()),
        item["measurement"].as_str().unwrap().to_owned(),
        format!("{:?}", item["temp"].as_f64().unwrap()),
        format!("{:?}", item["humidity"].as_f64().unwrap()),
    )
}

fn sent(reading: &Value) -> Reading {
    (
        reading["device"].as_str().unwrap().to_owned(),
        floor_ms(
            reading["time"].as_i64().unwrap(),
            reading["precision"].as_str().unwrap(),
        ),
        reading["measurement"].as_str().unwrap().to_owned(),
        format!("{:?}", reading["temp"].as_f64().unwrap()),
        format!("{:?}", reading["humidity"].as_f64().unwrap()),
    )
}

/// Every reading of `collection`, following the cursors page by page.
async fn all_readings(server: &TestServer, token: &str, collection: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "1000".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (status, page) = send(
            client()
                .get(server.url(&format!("/api/collections/{collection}/records")))
                .bearer_auth(token)
                .query(&query),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let got = page["items"].as_array().unwrap();
        assert!(got.len() <= 1000, "a page holds at most its limit");
        items.extend(got.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Readings as a multiset: the same reading twice must be stored twice.
fn counted(readings: impl Iterator<Item = Reading>) -> BTreeMap<Reading, usize> {
    let mut out = BTreeMap::new();
    for reading in readings {
        *out.entry(reading).or_insert(0) += 1;
    }
    out
}

#[tokio::test]
async fn the_influxdb_python_client_writes_exactly_its_points() {
    let python = python();
    if !has_influx_client(&python) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the InfluxDB client test: {python} cannot import influxdb_client \
             (.ci/run installs it; or set PULSEBASE_PYTHON)"
        );
        eprintln!("SKIPPED: {python} cannot import influxdb_client (pip install influxdb-client)");
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "climate", "kind": "series", "series": "device", "time": "ts",
                "fields": {
                    "device": {"type": "string", "required": true},
                    "ts": {"type": "datetime"},
                    "measurement": {"type": "string"},
                    "temp": {"type": "number"},
                    "humidity": {"type": "number"}
                },
                "rules": {"create": "'device' in @user.roles"}
            }),
        )
        .await;
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "telegraf", "roles": ["device"]})),
    )
    .await;
    assert_eq!(status, 201, "{key}");

    let out = tempfile::tempdir().unwrap();
    let expected_file = out.path().join("expected.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/line_protocol/influx_client.py");
    let run = Command::new(&python)
        .arg(&script)
        .arg(&server.base)
        .arg(key["secret"].as_str().unwrap())
        .arg("climate")
        .arg(&expected_file)
        .output()
        .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "influx_client.py failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
    eprint!("{stdout}");

    let expected: Vec<Value> =
        serde_json::from_slice(&std::fs::read(&expected_file).unwrap()).unwrap();
    // 4 precisions x (4 single points + 5,000), and 3 x 1,000 lines.
    assert_eq!(expected.len(), 4 * (4 + 5_000) + 3 * 1_000 + 1_000);
    let readings = all_readings(&server, &admin, "climate").await;
    assert!(
        readings.iter().all(|r| r["device"] != "rejected"),
        "nothing of a refused batch is stored"
    );
    let want = counted(expected.iter().map(sent));
    let got = counted(readings.iter().map(stored));
    if got != want {
        let short = |a: &BTreeMap<Reading, usize>, b: &BTreeMap<Reading, usize>| {
            a.iter()
                .filter(|(r, n)| b.get(*r).unwrap_or(&0) < n)
                .map(|(r, _)| r.clone())
                .take(5)
                .collect::<Vec<_>>()
        };
        let (missing, extra) = (short(&want, &got), short(&got, &want));
        panic!("stored readings differ from the points sent:\nmissing {missing:?}\nunexpected {extra:?}");
    }
    assert_eq!(readings.len(), expected.len(), "one reading per point");
}

#[tokio::test]
async fn a_gzip_body_is_held_to_max_body_bytes_once_inflated() {
    use std::io::Write as _;
    let server = TestServer::start_with(common::Options {
        args: vec!["--max-body-bytes".into(), "1048576".into()],
        ..common::Options::default()
    });
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "climate", "kind": "series", "series": "device",
                   "fields": {"device": {"type": "string"}, "temp": {"type": "number"}}}),
        )
        .await;
    let gzip = |text: &[u8]| {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(text).unwrap();
        encoder.finish().unwrap()
    };
    let post = |body: Vec<u8>| {
        client()
            .post(server.url("/api/v2/write?bucket=climate&precision=ms"))
            .header("Authorization", format!("Token {admin}"))
            .header("Content-Encoding", "gzip")
            .body(body)
    };
    // 8 MiB of lines in a few KiB of gzip: refused, not inflated whole.
    let bomb: Vec<u8> = b"climate,device=d temp=1 1\n".repeat(8 << 20 >> 5);
    let (status, body) = send(post(gzip(&bomb))).await;
    assert_eq!(
        (status, common::error_code(&body)),
        (413, "payload_too_large"),
        "{body}"
    );
    let (status, body) = send(post(b"not gzip at all".to_vec())).await;
    assert_eq!(
        (status, common::error_code(&body)),
        (400, "bad_request"),
        "{body}"
    );
    let (status, body) = send(post(gzip(b"climate,device=d temp=1.5 1700000000000\n"))).await;
    assert_eq!(status, 204, "{body}");
    let (_, page) = send(
        client()
            .get(server.url("/api/collections/climate/records"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1), "{page}");
}
