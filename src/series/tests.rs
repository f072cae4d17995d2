//! Round trips, corruption and summaries of series blocks, over readings
//! from a seeded generator (reproducible: the seed is in the failure).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const NAMES: [&str; 5] = ["temp", "humidity", "site", "ok", "count"];
const TEXTS: [&str; 6] = ["", "gw-1", "ünïcødé 温度 🌡", "a\0b", "site-west", "x"];

fn weird_f64(rng: &mut StdRng) -> f64 {
    match rng.gen_range(0..10) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => f64::MAX,
        5 => f64::MIN_POSITIVE / 2.0,               // subnormal
        6 => f64::from_bits(0x7ff8_0000_dead_beef), // NaN with a payload
        _ => rng.gen_range(-1e6..1e6),
    }
}

fn weird_i64(rng: &mut StdRng) -> i64 {
    match rng.gen_range(0..6) {
        0 => i64::MIN,
        1 => i64::MAX,
        2 => 0,
        _ => rng.gen(),
    }
}

/// Readings with consecutive seqs, times mostly rising but late and out of
/// order, fields missing at random and changing type between readings.
fn readings(rng: &mut StdRng, n: usize) -> Vec<Reading> {
    let base_seq: u64 = rng.gen_range(0..u64::MAX / 2);
    let mut time: i64 = rng.gen_range(-1_000_000..2_000_000_000_000);
    (0..n)
        .map(|i| {
            time += rng.gen_range(0..2000);
            let late = if rng.gen_bool(0.1) {
                rng.gen_range(0..100_000)
            } else {
                0
            };
            let mut fields = Fields::new();
            for name in NAMES {
                if rng.gen_bool(0.3) {
                    continue;
                }
                let value = match rng.gen_range(0..10) {
                    0 => Value::Int(weird_i64(rng)),
                    1 => Value::Text(TEXTS[rng.gen_range(0..TEXTS.len())].to_owned()),
                    2 => Value::Bool(rng.gen()),
                    3 => Value::Number(weird_f64(rng)),
                    _ => Value::Number(rng.gen_range(-40.0..60.0)),
                };
                fields.insert(name.to_owned(), value);
            }
            Reading {
                seq: base_seq + i as u64,
                time: if rng.gen_bool(0.01) {
                    weird_i64(rng)
                } else {
                    time - late
                },
                created: time + rng.gen_range(0..50),
                owner: match rng.gen_range(0..3) {
                    0 => None,
                    1 => Some(String::new()),
                    _ => Some(format!("user-{}", rng.gen_range(0..4))),
                },
                series: TEXTS[rng.gen_range(0..TEXTS.len())].to_owned(),
                fields,
            }
        })
        .collect()
}

fn encode_ok(readings: &[Reading]) -> (Vec<u8>, Summary) {
    match encode(readings) {
        Ok(block) => block,
        Err(e) => panic!("encode failed: {e}"),
    }
}

#[test]
fn random_blocks_decode_to_their_input_exactly() {
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..300);
        let input = readings(&mut rng, n);
        let (bytes, _) = encode_ok(&input);
        assert_eq!(decode(&bytes), Ok(input), "seed {seed}");
    }
}

#[test]
fn one_reading_and_ten_thousand_readings_round_trip() {
    let mut rng = StdRng::seed_from_u64(7);
    for n in [1, 10_000] {
        let input = readings(&mut rng, n);
        let (bytes, _) = encode_ok(&input);
        assert_eq!(decode(&bytes), Ok(input), "n {n}");
    }
}

#[test]
fn a_reading_without_fields_or_owner_round_trips() {
    let input = vec![Reading {
        seq: u64::MAX,
        time: i64::MIN,
        created: i64::MAX,
        owner: None,
        series: String::new(),
        fields: Fields::new(),
    }];
    let (bytes, _) = encode_ok(&input);
    assert_eq!(decode(&bytes), Ok(input));
}

#[test]
fn an_empty_block_is_refused() {
    assert_eq!(encode(&[]).err(), Some(EncodeError::Empty));
}

#[test]
fn one_column_decodes_without_the_others() {
    let mut rng = StdRng::seed_from_u64(11);
    let input = readings(&mut rng, 500);
    let (bytes, _) = encode_ok(&input);
    let reader = BlockReader::open(&bytes).expect("a fresh block opens");
    assert_eq!(reader.len(), 500);
    let times: Vec<i64> = input.iter().map(|r| r.time).collect();
    assert_eq!(reader.times(), Ok(times));
    let temps: Vec<Option<Value>> = input
        .iter()
        .map(|r| r.fields.get("temp").cloned())
        .collect();
    assert_eq!(reader.field("temp"), Ok(temps));
    assert_eq!(reader.field("absent"), Ok(vec![None; 500]));
    let series: Vec<String> = input.iter().map(|r| r.series.clone()).collect();
    assert_eq!(reader.series(), Ok(series));
}

#[test]
fn every_truncation_is_an_error() {
    let mut rng = StdRng::seed_from_u64(3);
    let (bytes, _) = encode_ok(&readings(&mut rng, 50));
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn every_single_byte_flip_is_an_error() {
    let mut rng = StdRng::seed_from_u64(4);
    let (bytes, _) = encode_ok(&readings(&mut rng, 50));
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 1 << rng.gen_range(0..8);
        assert!(decode(&bad).is_err(), "flip at {i}");
    }
}

#[test]
fn an_unknown_version_is_named() {
    let (mut bytes, _) = encode_ok(&readings(&mut StdRng::seed_from_u64(5), 3));
    bytes[0] = 9;
    assert_eq!(decode(&bytes), Err(DecodeError::Version(9)));
}

/// Corruption that gets past the checksum (or a bug in an encoder) must
/// still give an error or some readings, never a panic or a huge
/// allocation: the parser and pco see the damaged bytes directly.
#[test]
fn corrupt_bodies_never_panic() {
    let mut rng = StdRng::seed_from_u64(6);
    for round in 0..300 {
        let n = rng.gen_range(1..40);
        let (bytes, _) = encode_ok(&readings(&mut rng, n));
        let mut body = bytes[..bytes.len() - 4].to_vec();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..body.len());
            body[i] = rng.gen();
        }
        if round % 3 == 0 {
            body.truncate(rng.gen_range(0..body.len()));
        }
        if let Ok(reader) = BlockReader::open_unchecked(&body) {
            let _ = reader.readings();
        }
    }
    for _ in 0..2000 {
        let soup: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
        if let Ok(reader) = BlockReader::open_unchecked(&soup) {
            let _ = reader.readings();
        }
    }
}

/// The summary, computed the slow way: one series at a time.
fn naive_summary(input: &[Reading]) -> Summary {
    let mut names: Vec<&str> = input.iter().map(|r| r.series.as_str()).collect();
    names.sort();
    names.dedup();
    let series = names
        .into_iter()
        .map(|name| {
            let rows: Vec<&Reading> = input.iter().filter(|r| r.series == name).collect();
            let newest = rows
                .iter()
                .max_by_key(|r| (r.time, r.seq))
                .expect("a named series has a reading");
            let mut field_names: Vec<&str> = rows.iter().flat_map(|r| r.fields.keys()).collect();
            field_names.sort();
            field_names.dedup();
            let fields = field_names
                .into_iter()
                .filter_map(|field| {
                    let xs: Vec<f64> = rows
                        .iter()
                        .filter_map(|r| match r.fields.get(field) {
                            Some(Value::Number(x)) => Some(*x),
                            Some(Value::Int(i)) => Some(*i as f64),
                            _ => None,
                        })
                        .filter(|x| x.is_finite())
                        .collect();
                    (!xs.is_empty()).then(|| FieldStats {
                        name: (*field).to_owned(),
                        count: xs.len() as u64,
                        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
                        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        sum: xs.iter().sum(),
                    })
                })
                .collect();
            SeriesSummary {
                name: name.to_owned(),
                count: rows.len() as u64,
                min_time: rows.iter().map(|r| r.time).min().unwrap_or_default(),
                max_time: rows.iter().map(|r| r.time).max().unwrap_or_default(),
                fields,
                last: LastReading {
                    seq: newest.seq,
                    time: newest.time,
                    created: newest.created,
                    owner: newest.owner.clone(),
                    fields: newest.fields.clone(),
                },
            }
        })
        .collect();
    Summary {
        version: SUMMARY_VERSION,
        min_seq: input.iter().map(|r| r.seq).min().unwrap_or_default(),
        max_seq: input.iter().map(|r| r.seq).max().unwrap_or_default(),
        count: input.len() as u64,
        min_time: input.iter().map(|r| r.time).min().unwrap_or_default(),
        max_time: input.iter().map(|r| r.time).max().unwrap_or_default(),
        series,
    }
}

#[test]
fn summary_equals_a_naive_computation() {
    for seed in 0..100 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..400);
        let input = readings(&mut rng, n);
        let (_, summary) = encode_ok(&input);
        assert_eq!(summary, naive_summary(&input), "seed {seed}");
    }
}

#[test]
fn summary_round_trips_bit_for_bit_with_its_version_first() {
    for seed in 0..200 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..300);
        let (_, mut summary) = encode_ok(&readings(&mut rng, n));
        if seed % 2 == 1 {
            // Owners are stored by name index, like field names.
            summary.series[0].last.owner = Some(TEXTS[seed as usize % TEXTS.len()].to_owned());
        }
        let bytes = summary.to_bytes();
        assert_eq!(bytes[0], SUMMARY_VERSION);
        let back = Summary::from_bytes(&bytes).expect("a fresh summary decodes");
        // Values compare bit for bit (NaN payloads, -0.0); NaN never reaches
        // the stats, so plain equality holds.
        assert_eq!(back, summary, "seed {seed}");
        for len in 0..bytes.len() {
            assert!(
                Summary::from_bytes(&bytes[..len]).is_err(),
                "seed {seed}: truncated to {len}"
            );
        }
    }
    assert!(matches!(
        Summary::from_bytes(&[9]),
        Err(SummaryError::Version(9))
    ));
}

#[test]
fn summaries_stored_in_the_first_format_still_decode() {
    let input = readings(&mut StdRng::seed_from_u64(8), 100);
    let (_, mut summary) = encode_ok(&input);
    summary.version = 1;
    let old = bincode::serialize(&summary).expect("bincode");
    assert_eq!(old[0], 1);
    assert_eq!(
        Summary::from_bytes(&old).expect("format 1 decodes"),
        summary
    );
}

/// 1000 readings of 100 sensors (temperature and humidity with one decimal,
/// a site name): the summary is paid on every block written, several times
/// over as sled rewrites its leaves.
#[test]
fn a_sensor_summary_takes_under_a_hundred_bytes_per_source() {
    let mut rng = StdRng::seed_from_u64(5);
    let input: Vec<Reading> = (0..1000u64)
        .map(|i| {
            let device = i % 100;
            let time = 1_732_262_400_000 + (i / 100) as i64 * 1000 + rng.gen_range(0..400);
            let mut fields = Fields::new();
            fields.insert("site".to_owned(), Value::Text(format!("s{}", device % 10)));
            let temp = f64::from(rng.gen_range(150..300)) / 10.0;
            fields.insert("temp".to_owned(), Value::Number(temp));
            let humidity = f64::from(rng.gen_range(300..700)) / 10.0;
            fields.insert("humidity".to_owned(), Value::Number(humidity));
            Reading {
                seq: 5_000_000 + i,
                time,
                created: 1_732_262_400_500,
                owner: None,
                series: format!("gw-{device:03}"),
                fields,
            }
        })
        .collect();
    let (_, summary) = encode_ok(&input);
    let bytes = summary.to_bytes();
    let per_source = bytes.len() / 100;
    assert!(per_source < 100, "{per_source} bytes per source");
    assert_eq!(Summary::from_bytes(&bytes).expect("decodes"), summary);
}

#[test]
fn summary_time_range_reads_the_encoded_bounds() {
    for seed in 0..50 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..50);
        let mut input = readings(&mut rng, n);
        // Negative and large times, so a wrong offset or byte order shows.
        for r in &mut input {
            r.time = rng.gen_range(-(1i64 << 50)..(1i64 << 50));
        }
        let (_, summary) = encode_ok(&input);
        for bytes in both_formats(&summary) {
            let range = Summary::time_range_of(&bytes).expect("a fresh summary has a range");
            assert_eq!(range, (summary.min_time, summary.max_time), "seed {seed}");
            // Cut inside the time range: format 1 at 40, format 2 (varints)
            // right after the version.
            let cut = if bytes[0] == 1 { 40 } else { 2 };
            assert!(Summary::time_range_of(&bytes[..cut]).is_err());
        }
    }
    assert!(matches!(
        Summary::time_range_of(&[9; 64]),
        Err(SummaryError::Version(9))
    ));
    assert!(Summary::time_range_of(&[]).is_err());
}

/// The statistics read in place from a summary's bytes are those of the
/// decoded summary, over readings with every value type and owners, so
/// the newest readings stepped over have every shape.
#[test]
fn summary_stats_read_in_place_equal_the_decoded_ones() {
    for seed in 0..100 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(1..300);
        let input = readings(&mut rng, n);
        let (_, summary) = encode_ok(&input);
        for bytes in both_formats(&summary) {
            let stats = Summary::stats_of(&bytes).expect("a fresh summary reads");
            assert_eq!(stats, summary.stats(), "seed {seed}, format {}", bytes[0]);
            for len in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                assert!(
                    Summary::stats_of(&bytes[..len]).is_err(),
                    "seed {seed}, format {}, cut at {len}",
                    bytes[0]
                );
            }
        }
    }
}

/// A summary as format 2 (written now) and format 1 (bincode, written by
/// earlier versions and still read).
fn both_formats(summary: &Summary) -> [Vec<u8>; 2] {
    let mut old = summary.clone();
    old.version = 1;
    [
        summary.to_bytes(),
        bincode::serialize(&old).expect("bincode"),
    ]
}

#[test]
fn summary_overlap_uses_from_inclusive_to_exclusive() {
    let mut input = readings(&mut StdRng::seed_from_u64(9), 1);
    input[0].time = 1000;
    let (_, summary) = encode_ok(&input);
    assert!(summary.overlaps(1000, 1001));
    assert!(!summary.overlaps(1001, 2000));
    assert!(!summary.overlaps(0, 1000));
}
