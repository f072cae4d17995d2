//! Size and speed of blocks on sensor-like data. Ignored by default; run
//! in release for meaningful speeds:
//! `cargo test --release --lib series::measure -- --ignored --nocapture`

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const DEVICES: usize = 100;
const PER_BLOCK: usize = 1000;

/// 100 devices reporting in turn: ms times with jitter, temperature as a
/// random walk of 0.01 steps, humidity of 0.1 steps.
fn sensor_blocks(blocks: usize) -> Vec<Vec<Reading>> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut temp = vec![20.0f64; DEVICES];
    let mut hum = vec![50.0f64; DEVICES];
    let mut time: i64 = 1_764_748_800_000;
    let mut seq = 1u64;
    (0..blocks)
        .map(|_| {
            (0..PER_BLOCK)
                .map(|i| {
                    let d = i % DEVICES;
                    time += 10;
                    temp[d] =
                        ((temp[d] + rng.gen_range(-1..=1) as f64 * 0.01) * 100.0).round() / 100.0;
                    hum[d] = ((hum[d] + rng.gen_range(-1..=1) as f64 * 0.1) * 10.0).round() / 10.0;
                    seq += 1;
                    Reading {
                        seq,
                        time: time + rng.gen_range(-5..=5),
                        created: time + rng.gen_range(0..3),
                        owner: Some("gateway-1".to_owned()),
                        series: format!("device-{d}"),
                        fields: Fields::from([
                            ("temp".to_owned(), Value::Number(temp[d])),
                            ("humidity".to_owned(), Value::Number(hum[d])),
                        ]),
                    }
                })
                .collect()
        })
        .collect()
}

/// The spike's four columns of a block, compressed at `level`: bytes.
fn four_columns(block: &[Reading], level: usize) -> usize {
    let ts: Vec<i64> = block.iter().map(|r| r.time).collect();
    let idx: Vec<u32> = (0..block.len()).map(|i| (i % DEVICES) as u32).collect();
    let num = |name: &str| -> Vec<f64> {
        block
            .iter()
            .map(|r| match r.fields.get(name) {
                Some(Value::Number(x)) => *x,
                _ => 0.0,
            })
            .collect()
    };
    pco_bytes(&ts, level)
        + pco_bytes(&num("temp"), level)
        + pco_bytes(&num("humidity"), level)
        + pco_bytes(&idx, level)
}

fn pco_bytes<T: pco::data_types::Number>(nums: &[T], level: usize) -> usize {
    pco::standalone::simpler_compress(nums, level).map_or(0, |b| b.len())
}

#[test]
#[ignore = "a measurement, not a check"]
fn measure_levels_and_speed() {
    let blocks = sensor_blocks(200);
    let n = (blocks.len() * PER_BLOCK) as f64;
    println!("pco level: bytes/reading for ts, temp, humidity, device index (4 columns)");
    for level in [0, 2, 4, 6, 8, 12] {
        // Best of three: the machine is shared, and the slowest runs
        // measure the neighbours rather than pco.
        let mut secs = f64::MAX;
        let mut total = 0;
        for _ in 0..3 {
            let start = Instant::now();
            total = blocks.iter().map(|b| four_columns(b, level)).sum::<usize>();
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        println!(
            "  level {level:2}: {:.2} B/reading, {:.2} M readings/s",
            total as f64 / n,
            n / secs / 1e6
        );
    }

    let start = Instant::now();
    let encoded: Vec<Vec<u8>> = blocks
        .iter()
        .map(|b| encode(b).map(|(bytes, _)| bytes).unwrap_or_default())
        .collect();
    let encode_secs = start.elapsed().as_secs_f64();
    let size: usize = encoded.iter().map(Vec::len).sum();
    let start = Instant::now();
    for bytes in &encoded {
        assert!(decode(bytes).is_ok());
    }
    let decode_secs = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for bytes in &encoded {
        let reader = BlockReader::open(bytes).expect("a fresh block opens");
        assert!(reader.times().is_ok() && reader.field("temp").is_ok());
    }
    let column_secs = start.elapsed().as_secs_f64();
    println!(
        "whole blocks at level {PCO_LEVEL} (seq, time, created, series, owner, temp, humidity): \
         {:.2} B/reading; encode with summary {:.2} M readings/s; decode all {:.2} M readings/s; \
         decode time+temp only {:.2} M readings/s",
        size as f64 / n,
        n / encode_secs / 1e6,
        n / decode_secs / 1e6,
        n / column_secs / 1e6
    );
}
