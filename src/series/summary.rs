//! The summary kept beside each block: enough to skip a block that a query
//! cannot match, and to answer count/min/max/sum/latest over whole blocks
//! without decoding them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::block::{Reading, Value};
use super::fields::Fields;

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
    pub fields: Fields,
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
            // A source's readings mostly carry the same fields, in name
            // order: the stats of the n-th numeric field are looked for at
            // position n first, then along the rest (a map keyed by source
            // and field cost a tenth of a write group's encoding).
            let mut position = 0;
            for (name, value) in &r.fields {
                let x = match value {
                    Value::Number(x) => *x,
                    Value::Int(i) => *i as f64,
                    _ => continue,
                };
                if !x.is_finite() {
                    continue;
                }
                let found = match s.fields.get(position) {
                    Some(f) if f.name == *name => Some(position),
                    _ => s.fields.iter().position(|f| f.name == *name),
                };
                match found {
                    Some(at) => {
                        let f = &mut s.fields[at];
                        f.count += 1;
                        f.min = f.min.min(x);
                        f.max = f.max.max(x);
                        f.sum += x;
                        position = at + 1;
                    }
                    None => {
                        s.fields.push(FieldStats {
                            name: name.to_owned(),
                            count: 1,
                            min: x,
                            max: x,
                            sum: 0.0 + x,
                        });
                        position = s.fields.len();
                    }
                }
            }
        }
        let series = series
            .into_values()
            .map(|(mut s, newest)| {
                s.last = last_of(newest);
                s.fields.sort_unstable_by(|a, b| a.name.cmp(&b.name));
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

    /// `(min_time, max_time)` of an encoded summary without decoding the
    /// rest: a scan over a long range needs only these of most blocks, and
    /// decoding a summary (a name, statistics and a newest reading per
    /// source) costs far more. With fixed-width integers the fields before
    /// `series` lie at fixed offsets.
    pub fn time_range_of(bytes: &[u8]) -> Result<(i64, i64), SummaryError> {
        match bytes.first() {
            Some(&SUMMARY_VERSION) => {
                return super::summary_codec::time_range(bytes)
                    .map_err(|e| SummaryError::Corrupt(e.to_string()))
            }
            Some(&BINCODE_VERSION) => {}
            Some(&v) => return Err(SummaryError::Version(v)),
            None => return Err(SummaryError::Corrupt("empty".into())),
        }
        // version u8, min_seq, max_seq, count: 1 + 3 × 8 bytes.
        let at = |offset: usize| {
            bytes
                .get(offset..offset + 8)
                .and_then(|b| b.try_into().ok())
                .map(i64::from_le_bytes)
                .ok_or_else(|| SummaryError::Corrupt("short".into()))
        };
        Ok((at(25)?, at(33)?))
    }

    /// Whether any reading of the block may fall in `[from, to)`.
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.min_time < to && self.max_time >= from
    }
}

/// What an aggregate reads of a summary, borrowed from its bytes: counts
/// and statistics without the newest readings, whose fields (a map of
/// owned values per source) were most of the cost of a full decode.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryStats<'a> {
    pub min_time: i64,
    pub max_time: i64,
    pub series: Vec<SeriesStats<'a>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesStats<'a> {
    pub name: &'a str,
    pub count: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// In name order.
    pub fields: Vec<FieldStatsRef<'a>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FieldStatsRef<'a> {
    pub name: &'a str,
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
}

impl Summary {
    /// The statistics of an encoded summary, read in place: names are
    /// borrowed and each newest reading is stepped over, not built.
    pub fn stats_of(bytes: &[u8]) -> Result<SummaryStats<'_>, SummaryError> {
        match bytes.first() {
            Some(&SUMMARY_VERSION) => {
                return super::summary_codec::stats(bytes)
                    .map_err(|e| SummaryError::Corrupt(e.to_string()))
            }
            Some(&BINCODE_VERSION) => {}
            Some(&v) => return Err(SummaryError::Version(v)),
            None => return Err(SummaryError::Corrupt("empty".into())),
        }
        let mut r = Reader { bytes, at: 1 };
        // min_seq, max_seq, count
        r.skip(24)?;
        let min_time = r.i64()?;
        let max_time = r.i64()?;
        let n = r.len(40)?;
        let mut series = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str()?;
            let count = r.u64()?;
            let min_time = r.i64()?;
            let max_time = r.i64()?;
            let n_fields = r.len(40)?;
            let mut fields = Vec::with_capacity(n_fields);
            for _ in 0..n_fields {
                fields.push(FieldStatsRef {
                    name: r.str()?,
                    count: r.u64()?,
                    min: f64::from_bits(r.u64()?),
                    max: f64::from_bits(r.u64()?),
                    sum: f64::from_bits(r.u64()?),
                });
            }
            r.skip_last()?;
            series.push(SeriesStats {
                name,
                count,
                min_time,
                max_time,
                fields,
            });
        }
        if r.at != bytes.len() {
            return Err(SummaryError::Corrupt("bytes after the last series".into()));
        }
        Ok(SummaryStats {
            min_time,
            max_time,
            series,
        })
    }

    /// The statistics of a decoded summary, as `stats_of` reads them.
    pub fn stats(&self) -> SummaryStats<'_> {
        SummaryStats {
            min_time: self.min_time,
            max_time: self.max_time,
            series: self
                .series
                .iter()
                .map(|s| SeriesStats {
                    name: &s.name,
                    count: s.count,
                    min_time: s.min_time,
                    max_time: s.max_time,
                    fields: s
                        .fields
                        .iter()
                        .map(|f| FieldStatsRef {
                            name: &f.name,
                            count: f.count,
                            min: f.min,
                            max: f.max,
                            sum: f.sum,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A cursor over a summary's bincode bytes (fixed-width little-endian
/// integers, u64 lengths, u32 enum tags, u8 option tags and bools), in
/// the field order of [`Summary`], [`SeriesSummary`] and [`LastReading`].
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SummaryError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or_else(|| SummaryError::Corrupt("truncated".into()))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), SummaryError> {
        self.take(n).map(|_| ())
    }

    fn u64(&mut self) -> Result<u64, SummaryError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, SummaryError> {
        self.u64().map(|v| v as i64)
    }

    fn u8(&mut self) -> Result<u8, SummaryError> {
        Ok(self.take(1)?[0])
    }

    /// A length of items of at least `min_item` bytes each, checked
    /// against the bytes left so a corrupt one cannot allocate much.
    fn len(&mut self, min_item: usize) -> Result<usize, SummaryError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(SummaryError::Corrupt("length past the end".into()));
        }
        Ok(n as usize)
    }

    fn raw_str(&mut self) -> Result<&'a [u8], SummaryError> {
        let n = self.len(1)?;
        self.take(n)
    }

    fn str(&mut self) -> Result<&'a str, SummaryError> {
        std::str::from_utf8(self.raw_str()?)
            .map_err(|_| SummaryError::Corrupt("name is not UTF-8".into()))
    }

    /// Steps over a [`LastReading`]: seq, time, created, owner, fields.
    fn skip_last(&mut self) -> Result<(), SummaryError> {
        self.skip(24)?;
        match self.u8()? {
            0 => {}
            1 => {
                self.raw_str()?;
            }
            _ => return Err(SummaryError::Corrupt("owner tag".into())),
        }
        let n = self.len(13)?;
        for _ in 0..n {
            self.raw_str()?;
            let mut tag = [0; 4];
            tag.copy_from_slice(self.take(4)?);
            // Value's variants in order: Number, Int, Text, Bool.
            match u32::from_le_bytes(tag) {
                0 | 1 => self.skip(8)?,
                2 => {
                    self.raw_str()?;
                }
                3 => self.skip(1)?,
                _ => return Err(SummaryError::Corrupt("value tag".into())),
            }
        }
        Ok(())
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
