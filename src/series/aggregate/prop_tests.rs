//! The aggregator, row by row and block by block, against the plainest
//! computation of the documented semantics, over seeded random readings
//! and queries (the seed is in the failure message).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value as Json};

use super::*;
use crate::series::{encode, Fields, Summary, Value};

const SERIES_FIELD: &str = "device";
const AGGS: [&str; 14] = [
    "count()",
    "count(temp)",
    "sum(temp)",
    "avg(temp)",
    "min(temp)",
    "max(temp)",
    "first(temp)",
    "last(temp)",
    "first(site)",
    "last(device)",
    "count(device)",
    "max(device)",
    "min(ok)",
    "count(site)",
];
const SUMMARY_AGGS: [&str; 6] = [
    "count()",
    "sum(temp)",
    "avg(temp)",
    "min(temp)",
    "max(temp)",
    "min(ok)",
];
const GROUPS: [&[&str]; 6] = [
    &[],
    &["device"],
    &["site"],
    &["device", "site"],
    &["ok"],
    &["site", "ok"],
];
const BUCKETS: [i64; 4] = [1_000, 7_000, 60_000, 3_600_000];

fn readings(rng: &mut StdRng, bucket: i64) -> Vec<Reading> {
    let n = rng.gen_range(1..300);
    let base: i64 = match rng.gen_range(0..3) {
        0 => 0,
        1 => -5 * bucket,
        _ => 1_764_748_800_000,
    };
    let mut time = base;
    let mut seq = rng.gen_range(0..1000u64);
    (0..n)
        .map(|_| {
            time += rng.gen_range(0..bucket / 4 + 1);
            seq += 1;
            let at = match rng.gen_range(0..10) {
                // Late, out of order, possibly before the epoch.
                0 => time - rng.gen_range(0..bucket * 3),
                // Exactly on a bucket edge, or just before one.
                1 => time.div_euclid(bucket) * bucket,
                2 => time.div_euclid(bucket) * bucket - 1,
                // A tie with the previous time, broken by seq.
                _ => time,
            };
            let mut fields = Fields::new();
            let temp = match rng.gen_range(0..12) {
                0 => None,
                1 => Some(Value::Int(rng.gen_range(-50..50))),
                2 => Some(Value::Text("hot".into())),
                3 => Some(Value::Number(f64::NAN)),
                4 => Some(Value::Bool(true)),
                _ => Some(Value::Number(rng.gen_range(-400..600) as f64 / 8.0)),
            };
            if let Some(v) = temp {
                fields.insert("temp".to_owned(), v);
            }
            match rng.gen_range(0..6) {
                0 => {}
                1 => {
                    fields.insert("site".to_owned(), Value::Int(rng.gen_range(0..2)));
                }
                _ => {
                    let site = ["north", "south", ""][rng.gen_range(0..3)];
                    fields.insert("site".to_owned(), Value::Text(site.into()));
                }
            }
            if rng.gen_bool(0.7) {
                fields.insert("ok".to_owned(), Value::Bool(rng.gen()));
            }
            Reading {
                seq,
                time: at,
                created: at,
                owner: None,
                series: format!("gw-{}", rng.gen_range(0..4)),
                fields,
            }
        })
        .collect()
}

fn query(rng: &mut StdRng, bucket: i64, data: &[Reading]) -> AggregateQuery {
    let lo = data.iter().map(|r| r.time).min().unwrap_or(0);
    let hi = data.iter().map(|r| r.time).max().unwrap_or(0);
    let mut time = || match rng.gen_range(0..3) {
        0 => None,
        _ => Some(rng.gen_range(lo - bucket..=hi + bucket)),
    };
    let (mut from, mut to) = (time(), time());
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            (from, to) = (Some(t), Some(f + 1));
        }
    }
    // Often only what a block summary can answer, so that path is taken.
    let summary_shaped = rng.gen_bool(0.4);
    let pool: &[&str] = if summary_shaped { &SUMMARY_AGGS } else { &AGGS };
    // GROUPS[..2] (none, or the series) is what a summary can answer.
    let groups = if summary_shaped {
        &GROUPS[..2]
    } else {
        &GROUPS[..]
    };
    let mut aggs: Vec<&str> = pool.to_vec();
    aggs.shuffle(rng);
    aggs.truncate(rng.gen_range(1..6));
    let fill = match rng.gen_range(0..5) {
        0 | 1 => "none".to_owned(),
        2 => "null".to_owned(),
        3 => "prev".to_owned(),
        _ => "-1.5".to_owned(),
    };
    let mut params = HashMap::from([
        ("bucket".to_owned(), format!("{}s", bucket / 1000)),
        ("agg".to_owned(), aggs.join(",")),
        (
            "group".to_owned(),
            groups[rng.gen_range(0..groups.len())].join(","),
        ),
        ("fill".to_owned(), fill),
    ]);
    if let Some(f) = from {
        params.insert("from".to_owned(), f.to_string());
    }
    if let Some(t) = to {
        params.insert("to".to_owned(), t.to_string());
    }
    AggregateQuery::parse(&params).expect("generated queries are valid")
}

/// A group value as the docs order them: null, bools, ints, numbers, text.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Null,
    Bool(bool),
    Int(i64),
    Num(f64),
    Text(String),
}

fn rank(k: &Key) -> u8 {
    match k {
        Key::Null => 0,
        Key::Bool(_) => 1,
        Key::Int(_) => 2,
        Key::Num(_) => 3,
        Key::Text(_) => 4,
    }
}

fn cmp_keys(a: &[Key], b: &[Key]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Key::Bool(p), Key::Bool(q)) => p.cmp(q),
            (Key::Int(p), Key::Int(q)) => p.cmp(q),
            (Key::Num(p), Key::Num(q)) => p.total_cmp(q),
            (Key::Text(p), Key::Text(q)) => p.cmp(q),
            _ => rank(x).cmp(&rank(y)),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn value_of(r: &Reading, name: &str) -> Option<Value> {
    if name == SERIES_FIELD {
        Some(Value::Text(r.series.clone()))
    } else {
        r.fields.get(name).cloned()
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Number(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Int(i) => json!(i),
        Value::Text(s) => json!(s),
        Value::Bool(b) => json!(b),
    }
}

fn key_of(r: &Reading, name: &str) -> Key {
    match value_of(r, name) {
        None => Key::Null,
        Some(Value::Number(x)) if x.is_finite() => Key::Num(x),
        Some(Value::Number(_)) => Key::Null,
        Some(Value::Int(i)) => Key::Int(i),
        Some(Value::Text(s)) => Key::Text(s),
        Some(Value::Bool(b)) => Key::Bool(b),
    }
}

fn naive_values(rs: &[&Reading], q: &AggregateQuery) -> BTreeMap<String, Json> {
    let mut out = BTreeMap::new();
    for agg in &q.aggs {
        let field = agg.field.as_deref().unwrap_or("");
        let having: Vec<&&Reading> = rs.iter().filter(|r| value_of(r, field).is_some()).collect();
        let nums: Vec<f64> = rs
            .iter()
            .filter_map(|r| match value_of(r, field) {
                Some(Value::Number(x)) if x.is_finite() => Some(x),
                Some(Value::Int(i)) => Some(i as f64),
                _ => None,
            })
            .collect();
        let num = |x: Option<f64>| x.map_or(Json::Null, |x| json!(x));
        let value = match agg.func {
            AggFn::Count if agg.field.is_none() => json!(rs.len()),
            AggFn::Count => json!(having.len()),
            AggFn::Sum => num((!nums.is_empty()).then(|| nums.iter().sum())),
            AggFn::Avg => {
                num((!nums.is_empty()).then(|| nums.iter().sum::<f64>() / nums.len() as f64))
            }
            AggFn::Min => num(nums.iter().copied().reduce(f64::min)),
            AggFn::Max => num(nums.iter().copied().reduce(f64::max)),
            AggFn::First => having
                .iter()
                .min_by_key(|r| (r.time, r.seq))
                .map_or(Json::Null, |r| to_json(&value_of(r, field).unwrap())),
            AggFn::Last => having
                .iter()
                .max_by_key(|r| (r.time, r.seq))
                .map_or(Json::Null, |r| to_json(&value_of(r, field).unwrap())),
        };
        out.insert(agg.label(), value);
    }
    out
}

fn naive(data: &[Reading], keep: &[bool], q: &AggregateQuery) -> Vec<Bucket> {
    let b = q.bucket_ms;
    let rs: Vec<&Reading> = data
        .iter()
        .zip(keep)
        .filter(|(r, &k)| {
            k && q.from.is_none_or(|f| r.time >= f) && q.to.is_none_or(|t| r.time < t)
        })
        .map(|(r, _)| r)
        .collect();
    let mut groups: Vec<Vec<Key>> = Vec::new();
    for r in &rs {
        let key: Vec<Key> = q.group.iter().map(|g| key_of(r, g)).collect();
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let fill = q.fill != Fill::None;
    if q.group.is_empty() && fill && q.from.is_some() && q.to.is_some() && groups.is_empty() {
        groups.push(Vec::new());
    }
    groups.sort_by(|a, b| cmp_keys(a, b));
    let start_of = |t: i64| t.div_euclid(b) * b;
    let first = rs.iter().map(|r| start_of(r.time)).min();
    let last = rs.iter().map(|r| start_of(r.time)).max();
    let lo = q.from.map(start_of).or(first);
    let hi = q.to.map(|t| start_of(t - 1)).or(last);
    let mut out = Vec::new();
    for key in groups {
        let mine: Vec<&Reading> = rs
            .iter()
            .copied()
            .filter(|r| q.group.iter().map(|g| key_of(r, g)).collect::<Vec<_>>() == key)
            .collect();
        let group: serde_json::Map<String, Json> = q
            .group
            .iter()
            .zip(&key)
            .map(|(g, k)| {
                let v = match k {
                    Key::Null => Json::Null,
                    Key::Bool(x) => json!(x),
                    Key::Int(x) => json!(x),
                    Key::Num(x) => json!(x),
                    Key::Text(x) => json!(x),
                };
                (g.clone(), v)
            })
            .collect();
        let ts: Vec<i64> = match (fill, lo, hi) {
            (true, Some(lo), Some(hi)) => {
                (0..).map(|i| lo + i * b).take_while(|&t| t <= hi).collect()
            }
            (true, _, _) => Vec::new(),
            (false, _, _) => {
                let mut ts: Vec<i64> = mine.iter().map(|r| start_of(r.time)).collect();
                ts.sort();
                ts.dedup();
                ts
            }
        };
        let mut prev: Option<BTreeMap<String, Json>> = None;
        for t in ts {
            let inside: Vec<&Reading> = mine
                .iter()
                .copied()
                .filter(|r| start_of(r.time) == t)
                .collect();
            let values = if inside.is_empty() {
                q.aggs
                    .iter()
                    .map(|a| {
                        let v = match (&a.func, &q.fill) {
                            (AggFn::Count, _) => json!(0),
                            (_, Fill::Value(x)) => json!(x),
                            (_, Fill::Prev) => {
                                prev.as_ref().map_or(Json::Null, |p| p[&a.label()].clone())
                            }
                            _ => Json::Null,
                        };
                        (a.label(), v)
                    })
                    .collect()
            } else {
                naive_values(&inside, q)
            };
            prev = Some(values.clone());
            out.push(Bucket {
                t,
                group: group.clone(),
                values,
            });
        }
    }
    out
}

fn by_rows(data: &[Reading], keep: &[bool], q: &AggregateQuery) -> Aggregator {
    let mut agg = Aggregator::new(q.clone(), SERIES_FIELD);
    for (r, _) in data.iter().zip(keep).filter(|(_, &k)| k) {
        agg.add(r);
    }
    agg
}

/// Block lengths cutting `n` readings: short blocks often lie in one
/// bucket, where a summary may answer.
fn block_lens(rng: &mut StdRng, n: usize) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut at = 0;
    while at < n {
        let len = if rng.gen_bool(0.5) {
            rng.gen_range(1..4)
        } else {
            rng.gen_range(1..80)
        };
        let len = len.min(n - at);
        lens.push(len);
        at += len;
    }
    lens
}

/// How blocks reach the aggregator.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// `add_block` on this thread.
    AddBlock,
    /// Decoded by a `BlockPlan` on another thread, added in order with
    /// `add_decoded`, as the endpoint does.
    Decoded,
}

fn by_blocks(
    lens: &[usize],
    from_summary: &mut usize,
    data: &[Reading],
    keep: &[bool],
    masked: bool,
    q: &AggregateQuery,
    via: Via,
) -> Aggregator {
    let mut agg = Aggregator::new(q.clone(), SERIES_FIELD);
    let mut at = 0;
    let blocks: Vec<_> = lens
        .iter()
        .map(|len| {
            let block = encode(&data[at..at + len]).unwrap();
            at += len;
            block
        })
        .collect();
    let plan = agg.block_plan().clone();
    let decoded: Vec<DecodedBlock> = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                blocks
                    .iter()
                    .map(|(bytes, _)| plan.decode(&BlockReader::open(bytes).unwrap()).unwrap())
                    .collect()
            })
            .join()
            .unwrap()
    });
    let mut at = 0;
    for (((bytes, summary), len), decoded) in blocks.iter().zip(lens).zip(decoded) {
        let mask = masked.then(|| &keep[at..at + len]);
        at += len;
        // The endpoint reads a summary's statistics in place from its bytes.
        let encoded = summary.to_bytes();
        if mask.is_none() && agg.add_summary_stats(&Summary::stats_of(&encoded).unwrap()) {
            *from_summary += 1;
        } else if via == Via::AddBlock {
            agg.add_block(&BlockReader::open(bytes).unwrap(), mask)
                .unwrap();
        } else {
            agg.add_decoded(decoded, mask);
        }
    }
    agg
}

/// The answer as buckets, checking on the way that the bytes the endpoint
/// writes are those the buckets serialize to.
fn answer(mut make: impl FnMut() -> Aggregator, context: &str) -> (Vec<Bucket>, Vec<u8>) {
    let buckets = make().finish().unwrap();
    let json = make().finish_json(1).unwrap();
    let expected = finish::buckets_json(&buckets);
    assert!(
        json == expected,
        "finish_json differs: {context}\n got {}\nwant {}",
        String::from_utf8_lossy(&json),
        String::from_utf8_lossy(&expected)
    );
    (buckets, json)
}

/// The first difference, not two walls of buckets. Floats may differ in
/// the last bits: a summary adds per-block sums.
fn same(got: &[Bucket], expected: &[Bucket], context: &str) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let close = g.values.len() == e.values.len()
            && g.values.iter().zip(&e.values).all(|((lg, vg), (le, ve))| {
                lg == le
                    && match (vg.as_f64(), ve.as_f64()) {
                        (Some(x), Some(y)) if vg.is_f64() || ve.is_f64() => {
                            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                        }
                        _ => vg == ve,
                    }
            });
        assert!(
            g.t == e.t && g.group == e.group && close,
            "bucket {i} differs: {context}\n got {g:?}\nwant {e:?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "bucket counts differ: {context}");
}

#[test]
fn aggregator_matches_naive_computation() {
    let mut from_summary = 0;
    for seed in 0..400u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let bucket = BUCKETS[rng.gen_range(0..BUCKETS.len())];
        let data = readings(&mut rng, bucket);
        let q = query(&mut rng, bucket, &data);
        let masked = rng.gen_bool(0.5);
        let keep: Vec<bool> = data.iter().map(|_| !masked || rng.gen_bool(0.8)).collect();
        let expected = naive(&data, &keep, &q);
        let context = format!("seed {seed}, {q:?}");
        let (rows, _) = answer(|| by_rows(&data, &keep, &q), &context);
        same(&rows, &expected, &format!("rows, {context}"));
        let lens = block_lens(&mut rng, data.len());
        let mut summaries = 0;
        let (blocks, json) = answer(
            || by_blocks(&lens, &mut 0, &data, &keep, masked, &q, Via::AddBlock),
            &context,
        );
        same(&blocks, &expected, &format!("blocks, {context}"));
        let (_, decoded) = answer(
            || {
                by_blocks(
                    &lens,
                    &mut summaries,
                    &data,
                    &keep,
                    masked,
                    &q,
                    Via::Decoded,
                )
            },
            &context,
        );
        // Bit for bit: the same additions in the same order.
        assert!(json == decoded, "decoded elsewhere differs: {context}");
        from_summary += summaries / 2;
    }
    assert!(
        from_summary > 100,
        "summaries answered {from_summary} blocks"
    );
}
