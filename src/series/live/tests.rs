use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::*;
use crate::series::aggregate::{AggregateQuery, Aggregator};
use crate::series::{Fields, Value};

fn reading(seq: u64, time: i64, series: &str, temp: f64) -> Reading {
    Reading {
        seq,
        time,
        created: time,
        owner: None,
        series: series.to_owned(),
        fields: Fields::from([("temp".to_owned(), Value::Number(temp))]),
    }
}

fn live(spec: Json) -> LiveBuckets {
    LiveBuckets::new(BucketSpec::parse(&spec).unwrap(), "device")
}

#[test]
fn parses_a_spec_with_defaults() {
    let spec =
        BucketSpec::parse(&json!({"bucket": "1m", "agg": ["avg(temp)", "count()"]})).unwrap();
    assert_eq!(spec.bucket_ms, 60_000);
    assert_eq!(spec.aggs.len(), 2);
    assert!(spec.group.is_empty());
    assert_eq!(spec.grace_ms, DEFAULT_GRACE_MS);
    let spec = BucketSpec::parse(
        &json!({"bucket": "10s", "agg": "max(temp)", "group": ["device"], "grace": "500ms"}),
    )
    .unwrap();
    assert_eq!((spec.bucket_ms, spec.grace_ms), (10_000, 500));
    assert_eq!(spec.group, ["device"]);
}

#[test]
fn rejects_bad_specs_each_by_field() {
    let e = BucketSpec::parse(&json!({
        "bucket": "0s", "agg": ["median(temp)"], "group": [1], "grace": "2h", "every": 1
    }))
    .unwrap_err();
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        ["agg", "bucket", "every", "grace", "group"]
    );
    let e = BucketSpec::parse(&json!({})).unwrap_err();
    assert_eq!(e.keys().collect::<Vec<_>>(), ["agg", "bucket"]);
    assert!(BucketSpec::parse(&json!([1])).is_err());
    assert!(BucketSpec::parse(&json!({"bucket": "1m", "agg": [], "grace": 2})).is_err());
}

#[test]
fn a_bucket_closes_only_after_its_grace() {
    let mut l = live(json!({"bucket": "1m", "agg": ["count()"], "grace": "2s"}));
    l.add(&reading(1, 10_000, "a", 1.0));
    l.add(&reading(2, 59_999, "a", 1.0));
    l.add(&reading(3, 60_000, "a", 1.0));
    assert!(l.close_due(61_999).is_empty());
    // Within the grace a reading for the first bucket still counts.
    l.add(&reading(4, 30_000, "a", 1.0));
    let closed = l.close_due(62_000);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].t, 0);
    assert_eq!(closed[0].values["count()"], json!(3));
    assert_eq!(l.open_len(), 1);
}

#[test]
fn readings_for_closed_buckets_are_late() {
    let mut l = live(json!({"bucket": "1m", "agg": ["count()"], "grace": "0s"}));
    assert!(l.close_due(120_000).is_empty());
    // Both earlier buckets are closed, though nothing was in them.
    l.add(&reading(1, 119_999, "a", 1.0));
    l.add(&reading(2, -5, "a", 1.0));
    l.add(&reading(3, 120_000, "a", 1.0));
    assert_eq!(l.late(), 2);
    // Time going backwards reopens nothing.
    assert!(l.close_due(60_000).is_empty());
    l.add(&reading(4, 100_000, "a", 1.0));
    assert_eq!(l.late(), 3);
    let closed = l.close_due(180_000);
    assert_eq!(closed.len(), 1);
    assert_eq!(
        (closed[0].t, &closed[0].values["count()"]),
        (120_000, &json!(1))
    );
}

#[test]
fn buckets_close_in_time_then_group_order() {
    let mut l =
        live(json!({"bucket": "1s", "agg": ["last(temp)"], "group": "device", "grace": "0s"}));
    for (seq, (t, dev)) in [
        (1500, "b"),
        (1200, "a"),
        (100, "b"),
        (900, "a"),
        (2500, "c"),
    ]
    .into_iter()
    .enumerate()
    {
        l.add(&reading(seq as u64, t, dev, t as f64));
    }
    let got: Vec<(i64, Json, Json)> = l
        .close_due(2000)
        .into_iter()
        .map(|b| {
            (
                b.t,
                b.group["device"].clone(),
                b.values["last(temp)"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (0, json!("a"), json!(900.0)),
            (0, json!("b"), json!(100.0)),
            (1000, json!("a"), json!(1200.0)),
            (1000, json!("b"), json!(1500.0)),
        ]
    );
    assert_eq!(l.open_len(), 1);
}

#[test]
fn open_buckets_are_capped() {
    let mut l = live(json!({"bucket": "1m", "agg": ["count()"], "group": ["device"]}));
    for i in 0..=MAX_OPEN {
        l.add(&reading(i as u64, 0, &format!("d{i}"), 1.0));
    }
    l.add(&reading(0, 1, "d0", 1.0));
    assert_eq!((l.open_len(), l.overflow()), (MAX_OPEN, 1));
    let closed = l.close_due(i64::MAX);
    assert_eq!(closed.len(), MAX_OPEN);
    assert_eq!(l.open_len(), 0);
    assert_eq!(
        closed
            .iter()
            .map(|b| b.values["count()"].as_u64().unwrap())
            .sum::<u64>(),
        MAX_OPEN as u64 + 1
    );
}

/// With nothing late, live buckets hold exactly what a query over the
/// same readings returns (without fill), in t order instead of group
/// order.
#[test]
fn live_values_match_the_query_aggregator() {
    for seed in 0..50u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let aggs = "count(),avg(temp),min(temp),first(temp),last(temp),last(device)";
        let mut l = live(json!({"bucket": "5s", "agg": aggs, "group": ["device"], "grace": "1h"}));
        let params = HashMap::from([
            ("bucket".to_owned(), "5s".to_owned()),
            ("agg".to_owned(), aggs.to_owned()),
            ("group".to_owned(), "device".to_owned()),
        ]);
        let mut agg = Aggregator::new(AggregateQuery::parse(&params).unwrap(), "device");
        let mut time = rng.gen_range(-20_000..20_000);
        for seq in 0..200 {
            time += rng.gen_range(0..500);
            let at = time - rng.gen_range(0..3000);
            let r = reading(
                seq,
                at,
                ["x", "y", "z"][rng.gen_range(0..3)],
                rng.gen_range(-10..10) as f64,
            );
            l.add(&r);
            agg.add(&r);
        }
        let key = |b: &Bucket| (b.t, b.group["device"].to_string());
        let mut expected = agg.finish().unwrap();
        expected.sort_by_key(key);
        let got = l.close_due(i64::MAX);
        assert_eq!(got, expected, "seed {seed}");
        assert_eq!(l.late(), 0);
    }
}

#[test]
fn buckets_built_in_two_parts_equal_buckets_built_in_one() {
    for seed in 0..20 {
        let mut rng = StdRng::seed_from_u64(seed);
        let spec = json!({
            "bucket": "5s", "group": ["device"], "grace": "1h",
            "agg": "count(),count(temp),avg(temp),min(temp),max(temp),sum(temp),first(temp),last(temp),last(device)"
        });
        let (mut whole, mut seeded, mut live_part) =
            (live(spec.clone()), live(spec.clone()), live(spec));
        let mut time = 0;
        for seq in 0..300 {
            time += rng.gen_range(0..400);
            let r = reading(
                seq,
                time - rng.gen_range(0..3000),
                ["x", "y", "z"][rng.gen_range(0..3)],
                rng.gen_range(-10..10) as f64,
            );
            whole.add(&r);
            // Stored readings seed one part, later ones arrive live.
            if rng.gen_bool(0.5) {
                seeded.add(&r);
            } else {
                live_part.add(&r);
            }
        }
        live_part.absorb(seeded);
        assert_eq!(
            live_part.close_due(i64::MAX),
            whole.close_due(i64::MAX),
            "seed {seed}"
        );
    }
}

#[test]
fn absorbed_buckets_already_closed_count_as_late() {
    let spec = json!({"bucket": "1m", "agg": ["count()"], "grace": "0s"});
    let (mut seeded, mut here) = (live(spec.clone()), live(spec));
    seeded.add(&reading(1, 0, "x", 1.0));
    seeded.add(&reading(2, 120_000, "x", 1.0));
    assert!(here.close_due(60_000).is_empty());
    here.absorb(seeded);
    assert_eq!(here.late(), 1);
    let sent = here.close_due(i64::MAX);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].t, 120_000);
    assert_eq!(here.open_from(150_000), 120_000);
}
