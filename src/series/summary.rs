//! The summary kept beside each block: enough to skip a block that a query
//! cannot match, and to answer count/min/max/sum/latest over whole blocks
//! without decoding them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::block::{Reading, Value};

/// Bumped when the summary's stored form changes (`summary_codec`);
/// format 1, bincode, is still read.
pub const SUMMARY_VERSION: u8 = super::summary_codec::FORMAT;
/// The first stored form: bincode with fixed-width integers.
const BINCODE_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub version: u8,
    pub min_seq: u64,
    pub max_seq: u64,
    pub count: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// In series name order.
    pub series: Vec<SeriesSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    pub name: String,
    pub count: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// Numeric fields (numbers and ints), in name order.
    pub fields: Vec<FieldStats>,
    /// The newest reading of the series: greatest time, then greatest seq.
    pub last: LastReading,
}

/// Statistics over the finite values of one numeric field. Ints count as
/// numbers here (an i64 beyond 2^53 loses precision in `sum`, as it would
/// in any average); NaN and ±inf are stored in the block but left out so
/// one bad sensor value does not poison min, max and sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    pub name: String,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LastReading {
    pub seq: u64,
    pub time: i64,
    pub created: i64,
    pub owner: Option<String>,
    pub fields: BTreeMap<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("summary format version {0} is not known")]
    Version(u8),
    #[error("summary is corrupt: {0}")]
    Corrupt(String),
}

impl Summary {
    /// Builds the summary of a block's readings (the seq and time bounds
    /// of an empty slice are 0; `encode` never builds one).
    pub fn of(readings: &[Reading]) -> Summary {
        // The newest reading is kept as a reference and cloned once at the
        // end: in time order every reading is the newest so far, and
        // cloning each one's fields made encoding markedly slower.
        let mut series: BTreeMap<&str, (SeriesSummary, &Reading)> = BTreeMap::new();
        let mut stats: BTreeMap<(&str, &str), FieldStats> = BTreeMap::new();
        for r in readings {
            let (s, newest) = series.entry(&r.series).or_insert_with(|| {
                let s = SeriesSummary {
                    name: r.series.clone(),
                    count: 0,
                    min_time: r.time,
                    max_time: r.time,
                    fields: Vec::new(),
                    last: LastReading::default(),
                };
                (s, r)
            });
            s.count += 1;
            s.min_time = s.min_time.min(r.time);
            s.max_time = s.max_time.max(r.time);
            if (r.time, r.seq) > (newest.time, newest.seq) {
                *newest = r;
            }
            for (name, value) in &r.fields {
                let x = match value {
                    Value::Number(x) => *x,
                    Value::Int(i) => *i as f64,
                    _ => continue,
                };
                if !x.is_finite() {
                    continue;
                }
                let f = stats
                    .entry((&r.series, name))
                    .or_insert_with(|| FieldStats {
                        name: name.clone(),
                        count: 0,
                        min: x,
                        max: x,
                        sum: 0.0,
                    });
                f.count += 1;
                f.min = f.min.min(x);
                f.max = f.max.max(x);
                f.sum += x;
            }
        }
        for ((name, _), f) in stats {
            if let Some((s, _)) = series.get_mut(name) {
                s.fields.push(f);
            }
        }
        let series = series
            .into_values()
            .map(|(mut s, newest)| {
                s.last = last_of(newest);
                s
            })
            .collect();
        Summary {
            version: SUMMARY_VERSION,
            min_seq: readings.iter().map(|r| r.seq).min().unwrap_or_default(),
            max_seq: readings.iter().map(|r| r.seq).max().unwrap_or_default(),
            count: readings.len() as u64,
            min_time: readings.iter().map(|r| r.time).min().unwrap_or_default(),
            max_time: readings.iter().map(|r| r.time).max().unwrap_or_default(),
            series,
        }
    }

    /// The stored form; its first byte is the format version.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::summary_codec::encode(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Summary, SummaryError> {
        match bytes.first() {
            Some(&SUMMARY_VERSION) => {
                return super::summary_codec::decode(bytes)
                    .map_err(|e| SummaryError::Corrupt(e.to_string()))
            }
            Some(&BINCODE_VERSION) => {}
            Some(&v) => return Err(SummaryError::Version(v)),
            None => return Err(SummaryError::Corrupt("empty".into())),
        }
        // A limit keeps a corrupt length prefix from allocating gigabytes.
        use bincode::Options;
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .with_limit(bytes.len() as u64 * 4 + 1024)
            .deserialize(bytes)
            .map_err(|e| SummaryError::Corrupt(e.to_string()))
    }

    /// Whether any reading of the block may fall in `[from, to)`.
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.min_time < to && self.max_time >= from
    }
}

fn last_of(r: &Reading) -> LastReading {
    LastReading {
        seq: r.seq,
        time: r.time,
        created: r.created,
        owner: r.owner.clone(),
        fields: r.fields.clone(),
    }
}
