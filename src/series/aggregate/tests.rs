//! Parsing of aggregate queries, the JSON shape of a bucket, and the edges
//! the property test does not reach: caps and extreme times. The timing of
//! the columnar path is `measure_add_block` (ignored; run in release).

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::*;
use crate::series::{encode, Fields, Value};

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn errors(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    AggregateQuery::parse(&params(pairs)).expect_err("the query is invalid")
}

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

#[test]
fn parses_the_documented_example() {
    let q = AggregateQuery::parse(&params(&[
        ("from", "2026-12-03T08:00:00Z"),
        ("to", "2026-12-03T10:00:00.500+02:00"),
        ("bucket", "1m"),
        ("agg", "avg(temp), MAX( temp ),count()"),
        ("group", "device, site"),
        ("filter", "temp > 0"),
        ("fill", "prev"),
    ]))
    .unwrap();
    assert_eq!(q.from, Some(1_796_284_800_000));
    assert_eq!(q.to, Some(1_796_284_800_500));
    assert_eq!(q.bucket_ms, 60_000);
    let labels: Vec<String> = q.aggs.iter().map(Agg::label).collect();
    assert_eq!(labels, ["avg(temp)", "max(temp)", "count()"]);
    assert_eq!(q.group, ["device", "site"]);
    assert_eq!(q.fill, Fill::Prev);
}

#[test]
fn parses_ms_times_spans_and_fills() {
    let q = AggregateQuery::parse(&params(&[
        ("from", "-1500"),
        ("to", "0"),
        ("bucket", "30d"),
        ("agg", "first(site),last(site),count(temp),count(temp)"),
        ("fill", "-2.5"),
    ]))
    .unwrap();
    assert_eq!((q.from, q.to), (Some(-1500), Some(0)));
    assert_eq!(q.bucket_ms, 30 * 86_400_000);
    assert_eq!(q.aggs.len(), 3, "a repeated function is kept once");
    assert!(q.group.is_empty());
    assert_eq!(q.fill, Fill::Value(-2.5));
    for (text, ms) in [
        ("1s", 1000),
        ("10s", 10_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
    ] {
        assert_eq!(parse_bucket(text), Ok(ms));
    }
}

#[test]
fn rejects_bad_parameters_each_by_name() {
    let e = errors(&[("bucket", "1m"), ("agg", "median(temp)")]);
    assert_eq!(
        e["agg"],
        "unknown function 'median'; use count, sum, avg, min, max, first, last"
    );
    let e = errors(&[
        ("from", "yesterday"),
        ("bucket", "500ms"),
        ("agg", "avg()"),
        ("group", "site,site"),
        ("fill", "linear"),
    ]);
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        ["agg", "bucket", "fill", "from", "group"]
    );
    assert!(e["agg"].contains("needs a field"), "{e:?}");
    assert_eq!(errors(&[])["bucket"], "required, e.g. 1m");
    assert_eq!(errors(&[])["agg"], "required, e.g. avg(temp),count()");
    let e = errors(&[
        ("from", "10"),
        ("to", "10"),
        ("bucket", "1s"),
        ("agg", "count()"),
    ]);
    assert_eq!(e["to"], "must be after from");
    for bucket in [
        "0s",
        "999ms",
        "31d",
        "1w",
        "m",
        "1.5m",
        "-1m",
        "99999999999999999999d",
    ] {
        let e = errors(&[("bucket", bucket), ("agg", "count()")]);
        assert!(e.contains_key("bucket"), "{bucket} was accepted");
    }
    for agg in ["avg(temp", "avg", "sum(a(b))", ",", "avg(temp),nope()"] {
        let e = errors(&[("bucket", "1m"), ("agg", agg)]);
        assert!(e.contains_key("agg"), "{agg} was accepted");
    }
    for fill in ["nan", "inf", "previous"] {
        let e = errors(&[("bucket", "1m"), ("agg", "count()"), ("fill", fill)]);
        assert!(e.contains_key("fill"), "{fill} was accepted");
    }
}

#[test]
fn bucket_json_has_the_contract_shape() {
    let bucket = Bucket {
        t: 1_796_284_800_000,
        group: serde_json::Map::from_iter([("device".to_owned(), json!("gw-1"))]),
        values: BTreeMap::from([
            ("avg(temp)".to_owned(), json!(21.3)),
            ("count()".to_owned(), json!(60)),
        ]),
    };
    assert_eq!(
        serde_json::to_value(&bucket).unwrap(),
        json!({"t": "2026-12-03T08:00:00.000Z", "group": {"device": "gw-1"},
               "values": {"avg(temp)": 21.3, "count()": 60}})
    );
}

fn query(bucket: &str, agg: &str, extra: &[(&str, &str)]) -> AggregateQuery {
    let mut p = params(&[("bucket", bucket), ("agg", agg)]);
    p.extend(params(extra));
    AggregateQuery::parse(&p).unwrap()
}

/// Answers big enough to be written on several threads come out as the
/// one-thread answer and as the buckets serialize, empty and filled
/// buckets included.
#[test]
fn answers_written_on_several_threads_equal_the_buckets() {
    let start = 1_796_284_800_000i64;
    for fill in ["none", "null", "prev", "1.5"] {
        let q = query(
            "1m",
            "avg(temp),max(temp),count(),last(device)",
            &[
                ("group", "device"),
                ("fill", fill),
                ("from", &start.to_string()),
                ("to", &(start + 200 * 60_000).to_string()),
            ],
        );
        let make = || {
            let mut agg = Aggregator::new(q.clone(), "device");
            let mut seq = 0;
            for minute in 0..200i64 {
                for device in 0..101 {
                    // Some minutes of some devices stay empty.
                    if (minute * 7 + device) % 5 == 0 {
                        continue;
                    }
                    seq += 1;
                    let temp = (minute * 31 + device * 17) as f64 / 8.0;
                    agg.add(&reading(
                        seq,
                        start + minute * 60_000 + device,
                        &format!("d{device}"),
                        temp,
                    ));
                }
            }
            agg
        };
        let expected = finish::buckets_json(&make().finish().unwrap());
        assert!(
            expected.len() > 10_000 * 50,
            "the answer is big enough to split"
        );
        for threads in [1, 2, 3, 7] {
            let got = make().finish_json(threads).unwrap();
            assert!(got == expected, "fill {fill}, {threads} threads");
        }
    }
}

/// Consecutive blocks reuse the series ids of the block before when their
/// dictionaries are equal, and only then: a reordered dictionary maps
/// anew, and a source whose rows were all masked out still makes no group.
#[test]
fn series_ids_carry_over_only_between_equal_dictionaries() {
    let q = query("1h", "count(),sum(temp)", &[("group", "device")]);
    let mut agg = Aggregator::new(q, "device");
    type Block<'a> = (&'a [(&'a str, f64)], &'a [bool]);
    let blocks: [Block; 4] = [
        (&[("a", 1.0), ("b", 2.0)], &[true, false]),
        (&[("a", 10.0), ("b", 20.0)], &[false, false]),
        (&[("b", 100.0), ("a", 200.0)], &[true, true]),
        (
            &[("b", 1000.0), ("a", 2000.0), ("c", 5.0)],
            &[true, true, false],
        ),
    ];
    let mut seq = 0;
    for (rows, keep) in blocks {
        let readings: Vec<Reading> = rows
            .iter()
            .map(|(device, temp)| {
                seq += 1;
                reading(seq, seq as i64, device, *temp)
            })
            .collect();
        let (bytes, _) = encode(&readings).unwrap();
        agg.add_block(&BlockReader::open(&bytes).unwrap(), Some(keep))
            .unwrap();
    }
    let got: Vec<(Json, Json, Json)> = agg
        .finish()
        .unwrap()
        .into_iter()
        .map(|b| {
            (
                b.group["device"].clone(),
                b.values["count()"].clone(),
                b.values["sum(temp)"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (json!("a"), json!(3), json!(2201.0)),
            (json!("b"), json!(2), json!(1100.0)),
        ]
    );
}

#[test]
fn buckets_floor_before_the_epoch() {
    let mut agg = Aggregator::new(query("1m", "count()", &[]), "device");
    for t in [-60_001, -60_000, -1, 0, 59_999] {
        agg.add(&reading(1, t, "a", 1.0));
    }
    let ts: Vec<(i64, Json)> = agg
        .finish()
        .unwrap()
        .into_iter()
        .map(|b| (b.t, b.values["count()"].clone()))
        .collect();
    assert_eq!(
        ts,
        [(-120_000, json!(1)), (-60_000, json!(2)), (0, json!(2))]
    );
}

#[test]
fn fill_prev_carries_the_previous_bucket_and_counts_stay_zero() {
    let q = query(
        "1s",
        "max(temp),count()",
        &[("fill", "prev"), ("from", "0"), ("to", "4000")],
    );
    let mut agg = Aggregator::new(q, "device");
    agg.add(&reading(1, 1500, "a", 3.0));
    let got: Vec<Json> = agg
        .finish()
        .unwrap()
        .iter()
        .map(|b| serde_json::to_value(b).unwrap())
        .collect();
    let values: Vec<&Json> = got.iter().map(|b| &b["values"]).collect();
    assert_eq!(
        values,
        [
            &json!({"max(temp)": null, "count()": 0}),
            &json!({"max(temp)": 3.0, "count()": 1}),
            &json!({"max(temp)": 3.0, "count()": 0}),
            &json!({"max(temp)": 3.0, "count()": 0}),
        ]
    );
    assert_eq!(got[3]["t"], "1970-01-01T00:00:03.000Z");
}

#[test]
fn a_fill_over_too_many_buckets_is_an_error() {
    let year = 365 * 86_400_000i64;
    let q = query(
        "1s",
        "count()",
        &[("fill", "null"), ("from", "0"), ("to", &year.to_string())],
    );
    let agg = Aggregator::new(q.clone(), "device");
    assert_eq!(agg.finish(), Err(AggregateError::TooManyBuckets));
    // Exactly at the cap is fine.
    let to = (MAX_BUCKETS as i64 * 1000).to_string();
    let q = query(
        "1s",
        "count()",
        &[("fill", "null"), ("from", "0"), ("to", &to)],
    );
    assert_eq!(
        Aggregator::new(q, "device").finish().map(|b| b.len()),
        Ok(MAX_BUCKETS)
    );
}

#[test]
fn holding_too_many_buckets_is_an_error() {
    let mut agg = Aggregator::new(query("1s", "count()", &[]), "device");
    for i in 0..=MAX_BUCKETS as i64 {
        agg.add(&reading(1, i * 1000, "a", 1.0));
    }
    assert_eq!(agg.finish(), Err(AggregateError::TooManyBuckets));
}

#[test]
fn extreme_times_do_not_panic() {
    let data = [
        reading(1, i64::MIN, "a", 1.0),
        reading(2, i64::MAX, "b", 1.0),
        reading(3, i64::MIN + 1, "c", 1.0),
    ];
    let q = query(
        "30d",
        "count(),first(temp)",
        &[("fill", "null"), ("group", "device")],
    );
    let mut rows = Aggregator::new(q.clone(), "device");
    for r in &data {
        rows.add(r);
    }
    let mut blocks = Aggregator::new(q, "device");
    let (bytes, _) = encode(&data).unwrap();
    blocks
        .add_block(&BlockReader::open(&bytes).unwrap(), None)
        .unwrap();
    // Within a bucket of i64::MIN a bucket start may not exist: those
    // readings are left out, and so are their groups.
    for buckets in [rows.finish().unwrap(), blocks.finish().unwrap()] {
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].group["device"], json!("b"));
        assert!(buckets[0].t > i64::MAX - 30 * 86_400_000);
    }
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat).
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// 10M readings of 100 devices over one day: avg and max of one field per
/// device per minute, in blocks of 1000 and of 10,000 readings, beside
/// the cost of decoding the three columns alone.
#[test]
#[ignore = "a measurement, not a check; run in release"]
fn measure_add_block() {
    const N: usize = 10_000_000;
    let start_ms = 1_796_284_800_000i64;
    let q = query("1m", "avg(temp),max(temp)", &[("group", "device")]);
    for per_block in [1000, 10_000] {
        let mut blocks = Vec::new();
        let mut temp = 20.0f64;
        for b in 0..N / per_block {
            let readings: Vec<Reading> = (0..per_block)
                .map(|i| {
                    let k = b * per_block + i;
                    temp = ((temp + ((k * 7919) % 3) as f64 * 0.01 - 0.01) * 100.0).round() / 100.0;
                    let time = start_ms + k as i64 * 86_400_000 / N as i64;
                    reading(k as u64, time, &format!("device-{}", k % 100), temp)
                })
                .collect();
            blocks.push(encode(&readings).unwrap());
        }
        let bytes: usize = blocks.iter().map(|b| b.0.len()).sum();
        // Best of three, in this thread's CPU time where Linux reports it:
        // the machine is shared, and wall time measured the neighbours.
        let best = |f: &dyn Fn() -> usize| {
            let mut secs = f64::MAX;
            let mut out = 0;
            for _ in 0..3 {
                let started = Instant::now();
                let cpu = cpu_ns();
                out = f();
                let took = match (cpu, cpu_ns()) {
                    (Some(a), Some(b)) => (b - a) as f64 / 1e9,
                    _ => started.elapsed().as_secs_f64(),
                };
                secs = secs.min(took);
            }
            (secs, out)
        };
        let (decode, _) = best(&|| {
            let mut rows = 0;
            for block in &blocks {
                let reader = BlockReader::open(&block.0).unwrap();
                rows += reader.times().unwrap().len();
                rows += reader.series_indexed().unwrap().1.len();
                rows += reader.field_typed("temp").unwrap().len();
            }
            rows
        });
        let (total, out) = best(&|| {
            let mut agg = Aggregator::new(q.clone(), "device");
            for (block, _) in &blocks {
                agg.add_block(&BlockReader::open(block).unwrap(), None)
                    .unwrap();
            }
            agg.finish().unwrap().len()
        });
        let (adds, _) = best(&|| {
            let mut agg = Aggregator::new(q.clone(), "device");
            for (block, _) in &blocks {
                agg.add_block(&BlockReader::open(block).unwrap(), None)
                    .unwrap();
            }
            agg.slots.len()
        });
        let answered = blocks
            .iter()
            .filter(|(_, s)| Aggregator::new(q.clone(), "device").add_summary(s))
            .count();
        let (with_summaries, _) = best(&|| {
            let mut agg = Aggregator::new(q.clone(), "device");
            for (block, summary) in &blocks {
                if !agg.add_summary(summary) {
                    agg.add_block(&BlockReader::open(block).unwrap(), None)
                        .unwrap();
                }
            }
            agg.finish().unwrap().len()
        });
        println!(
            "{per_block}-reading blocks ({:.2} B/reading): decoding time, series, temp \
             {:.1} M readings/s; add_block {:.1} M readings/s ({total:.3} s, {out} buckets)",
            bytes as f64 / N as f64,
            N as f64 / decode / 1e6,
            N as f64 / total / 1e6,
        );
        println!(
            "  add_block alone, without finish: {:.1} M readings/s",
            N as f64 / adds / 1e6
        );
        println!(
            "  with summaries ({answered} of {} blocks in one bucket): {:.1} M readings/s",
            blocks.len(),
            N as f64 / with_summaries / 1e6
        );
        assert_eq!(out, 100 * 1440);
    }
}

/// The unboxed accessors the columnar path uses read what `field` and
/// `series` read.
#[test]
fn typed_columns_agree_with_the_value_accessors() {
    let values = [
        Value::Number(1.5),
        Value::Int(-3),
        Value::Text("x".into()),
        Value::Text("".into()),
        Value::Bool(true),
        Value::Bool(false),
    ];
    let data: Vec<Reading> = (0..37)
        .map(|i: usize| {
            let mut r = reading(i as u64, i as i64, ["a", "b", "c"][i % 3], 0.0);
            r.fields.clear();
            if i % 4 != 0 {
                r.fields.insert("f", values[(i * 5) % values.len()].clone());
            }
            r
        })
        .collect();
    let (bytes, _) = encode(&data).unwrap();
    let block = BlockReader::open(&bytes).unwrap();
    let (dict, rows) = block.series_indexed().unwrap();
    let series: Vec<&str> = rows.iter().map(|&i| dict[i as usize]).collect();
    assert_eq!(series, block.series().unwrap());
    let mut rebuilt = vec![None; data.len()];
    for column in block.field_typed("f").unwrap() {
        let vals: Vec<Value> = match column.values {
            TypedValues::Number(v) => v.into_iter().map(Value::Number).collect(),
            TypedValues::Int(v) => v.into_iter().map(Value::Int).collect(),
            TypedValues::Bool(v) => v.into_iter().map(Value::Bool).collect(),
            TypedValues::Text { dict, indices } => indices
                .iter()
                .map(|&i| Value::Text(dict[i as usize].to_owned()))
                .collect(),
        };
        for (&row, v) in column.rows.iter().zip(vals) {
            assert!(rebuilt[row as usize].replace(v).is_none());
        }
    }
    assert_eq!(rebuilt, block.field("f").unwrap());
    assert!(block.field_typed("missing").unwrap().is_empty());
}
