//! `GET /metrics` against the real server: who may scrape, that the text
//! parses as Prometheus exposition format 0.0.4 (strictly, below), and that
//! the values move when things happen.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::live::Ws;
use common::{client, error_code, header, send, Options, TestServer};
use serde_json::json;

const METRICS_TOKEN: &str = "scrape-token-0123456789";

/// One scrape, parsed: `name{sorted labels}` → value, and `name` → type.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in {:#?}", self.samples.keys()))
    }

    fn get_or_zero(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// A strict reader of the text format: every line is a `# HELP`, a `# TYPE`
/// (before its samples, once per name) or a sample with a valid name,
/// well-quoted labels and a float; no series twice; histograms have
/// increasing `le` buckets ending in `+Inf`, cumulative counts, and
/// `_count` equal to the `+Inf` bucket.
fn parse(text: &str) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen_sample_of: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_else(|| panic!("{at}: no name"));
            assert!(valid_name(name), "{at}: bad metric name");
            match keyword {
                "HELP" => {}
                "TYPE" => {
                    let kind = parts.next().unwrap_or_else(|| panic!("{at}: no type"));
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{at}: unknown type"
                    );
                    assert!(
                        types.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "{at}: second TYPE for {name}"
                    );
                    assert!(
                        !seen_sample_of.iter().any(|s| s == name),
                        "{at}: TYPE after samples of {name}"
                    );
                }
                _ => panic!("{at}: unknown comment keyword"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{at}: no value"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("{at}: bad value")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{at}: unclosed labels"));
                (name, parse_labels(body, &at))
            }
        };
        assert!(valid_name(name), "{at}: bad metric name");
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            types.contains_key(family) || types.contains_key(name),
            "{at}: no TYPE for {name}"
        );
        seen_sample_of.push(family.to_owned());
        let key = series_key(name, &labels);
        assert!(
            samples.insert(key, value).is_none(),
            "{at}: series repeated"
        );
    }
    check_histograms(&samples, &types);
    Scrape { samples, types }
}

fn parse_labels(body: &str, at: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("{at}: bad label"));
        assert!(
            valid_name(key) && !key.contains(':'),
            "{at}: bad label name {key}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => panic!("{at}: bad escape {other:?}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("{at}: unterminated label value"),
            }
        };
        assert!(
            labels.insert(key.to_owned(), value).is_none(),
            "{at}: label twice"
        );
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn series_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn check_histograms(samples: &BTreeMap<String, f64>, types: &HashMap<String, String>) {
    for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
        // Group buckets by their labels without `le`.
        let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (series, value) in samples {
            let Some(rest) = series.strip_prefix(&format!("{family}_bucket{{")) else {
                continue;
            };
            let labels = parse_labels(rest.trim_end_matches('}'), series);
            let le = match labels["le"].as_str() {
                "+Inf" => f64::INFINITY,
                le => le.parse().expect("le is a float"),
            };
            let mut others = labels.clone();
            others.remove("le");
            groups
                .entry(series_key("", &others))
                .or_default()
                .push((le, *value));
        }
        assert!(!groups.is_empty(), "histogram {family} has no buckets");
        for (labels, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert_eq!(
                buckets.last().map(|b| b.0),
                Some(f64::INFINITY),
                "{family}{labels}: no +Inf"
            );
            for pair in buckets.windows(2) {
                assert!(
                    pair[0].1 <= pair[1].1,
                    "{family}{labels}: buckets not cumulative"
                );
            }
            let count = samples[&format!("{family}_count{labels}")];
            assert_eq!(
                count,
                buckets.last().map(|b| b.1).unwrap_or(-1.0),
                "{family}{labels}: _count"
            );
            assert!(
                samples.contains_key(&format!("{family}_sum{labels}")),
                "{family}{labels}: no _sum"
            );
        }
    }
}

async fn scrape(server: &TestServer, token: &str) -> Scrape {
    let response = client()
        .get(server.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    let content_type = header(&response, "content-type");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.expect("body"))
}

fn with_token() -> Options {
    Options {
        env: vec![("PULSEBASE_METRICS_TOKEN".into(), METRICS_TOKEN.into())],
        ..Options::default()
    }
}

#[tokio::test]
async fn only_admins_and_the_metrics_token_may_scrape() {
    let server = TestServer::start_with(with_token());
    let admin = server.admin_token().await;
    let user = server.plain_user_token(&admin, "u@example.com").await;

    let (status, body) = send(client().get(server.url("/metrics"))).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (status, body) = send(client().get(server.url("/metrics")).bearer_auth(&user)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = send(
        client()
            .get(server.url("/metrics"))
            .bearer_auth("scrape-token-0123456780"),
    )
    .await;
    assert_eq!(status, 401, "a token one character off");

    let by_token = scrape(&server, METRICS_TOKEN).await;
    let by_admin = scrape(&server, &admin).await;
    assert_eq!(
        by_token.types["pulsebase_http_request_duration_seconds"],
        "histogram"
    );
    assert_eq!(by_admin.types["pulsebase_realtime_connections"], "gauge");

    // The token itself never shows in the settings.
    let (_, settings) = send(
        client()
            .get(server.url("/api/settings"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(settings["metrics_token"]["value"], "(set)");
    assert!(!settings.to_string().contains(METRICS_TOKEN));
}

#[tokio::test]
async fn values_move_when_things_happen() {
    let server = TestServer::start_with(with_token());
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "readings", "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    let before = scrape(&server, METRICS_TOKEN).await;
    assert_eq!(
        before.get("pulsebase_records{collection=\"readings\"}"),
        0.0
    );
    assert_eq!(before.get("pulsebase_realtime_connections"), 0.0);
    assert!(before.get("pulsebase_storage_bytes") > 0.0);

    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    for n in 0..5 {
        let (status, _) = send(
            client()
                .post(server.url("/api/collections/readings/records"))
                .bearer_auth(&admin)
                .json(&json!({"n": n})),
        )
        .await;
        assert_eq!(status, 201);
    }
    for _ in 0..5 {
        assert_eq!(ws.next().await["type"], "event");
    }
    let (status, _) = send(
        client()
            .get(server.url("/api/collections/readings/records/nope"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 404);

    let after = scrape(&server, METRICS_TOKEN).await;
    let moved = |series: &str| after.get_or_zero(series) - before.get_or_zero(series);
    assert_eq!(after.get("pulsebase_records{collection=\"readings\"}"), 5.0);
    assert_eq!(moved("pulsebase_writes_total{result=\"ok\"}"), 5.0);
    assert_eq!(moved("pulsebase_changelog_seq"), 5.0);
    assert_eq!(
        after.get("pulsebase_changelog_durable_seq"),
        after.get("pulsebase_changelog_seq")
    );
    assert_eq!(
        after.get("pulsebase_realtime_released_seq"),
        after.get("pulsebase_changelog_seq")
    );
    assert_eq!(after.get("pulsebase_realtime_connections"), 1.0);
    assert_eq!(after.get("pulsebase_realtime_subscriptions"), 1.0);
    assert_eq!(moved("pulsebase_realtime_events_delivered_total"), 5.0);
    // One lag sample per batch the connection took: the five events went
    // in one to five batches.
    let lag_samples = moved("pulsebase_realtime_delivery_lag_seconds_count");
    assert!((1.0..=5.0).contains(&lag_samples), "{lag_samples}");
    let lag_sum = moved("pulsebase_realtime_delivery_lag_seconds_sum");
    assert!((0.0..lag_samples * 5.0).contains(&lag_sum), "{lag_sum}");
    assert!(
        after.get("pulsebase_flush_duration_seconds_count") >= 5.0,
        "sync mode: an fsync per lone write"
    );
    let created = "{method=\"POST\",route=\"/api/collections/{name}/records\",status=\"201\"}";
    assert_eq!(
        moved(&format!("pulsebase_http_requests_total{created}")),
        5.0
    );
    assert_eq!(
        moved(&format!(
            "pulsebase_http_request_duration_seconds_count{created}"
        )),
        5.0
    );
    // Record ids never become labels: the 404 is counted under the pattern.
    let missing = "{method=\"GET\",route=\"/api/collections/{name}/records/{id}\",status=\"404\"}";
    assert_eq!(
        after.get(&format!("pulsebase_http_requests_total{missing}")),
        1.0
    );
    assert!(!after.samples.keys().any(|k| k.contains("nope")));

    // Made-up methods share one label value: a client cannot grow the
    // series without bound.
    for made_up in ["FROB", "ZAP1", "ZAP2"] {
        let method = reqwest::Method::from_bytes(made_up.as_bytes()).expect("a method token");
        let response = client()
            .request(method, server.url("/api/health"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405);
    }
    let odd = scrape(&server, METRICS_TOKEN).await;
    assert!(!odd
        .samples
        .keys()
        .any(|k| k.contains("FROB") || k.contains("ZAP")));
    assert_eq!(
        odd.get(
            "pulsebase_http_requests_total{method=\"other\",route=\"/api/health\",status=\"405\"}"
        ),
        3.0
    );

    drop(ws);
    // The hub hears of the close asynchronously.
    for _ in 0..50 {
        let now = scrape(&server, METRICS_TOKEN).await;
        if now.get("pulsebase_realtime_connections") == 0.0 {
            assert_eq!(now.get("pulsebase_realtime_subscriptions"), 0.0);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the closed connection is still counted");
}

#[test]
fn a_short_metrics_token_stops_the_start() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(tempfile::tempdir().expect("dir").path())
        .env("PULSEBASE_METRICS_TOKEN", "tiny-t0ken")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metrics_token") && stderr.contains("16"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tiny-t0ken"),
        "the token is not echoed: {stderr}"
    );
}
