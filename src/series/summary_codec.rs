//! The stored form of a [`Summary`] (format 2).
//!
//! A summary is written with every block, and sled rewrites a value several
//! times as its leaf is consolidated and split, so its size is paid about
//! four times over on disk. Format 1 (bincode with fixed-width integers)
//! took about 250 bytes per source: for a block of 1000 readings from 100
//! sources the summary was five times the block. This format stores the
//! same values in about a third of that:
//!
//! ```text
//! u8 2 | min_seq | max_seq - min_seq | count | z(min_time) | max_time - min_time
//!   | names: n × str          (field names and owners, referred to by index)
//!   | series: n × (str name | count | z(min_time - block min_time)
//!       | z(max_time - min_time) | fields: n × (name index | count | f min | f max | f sum)
//!       | last: z(seq - min_seq) | z(time - series min_time) | z(created - time)
//!       | owner (0 = none, else name index + 1) | n × (name index | value))
//! ```
//! Integers are LEB128 varints, `z` a zigzag varint (wrapping, so any i64
//! round-trips). A float `f` is stored as a decimal when that gives back
//! the very same bits (`21.4` = 214 / 10: one byte of scale and a varint),
//! else as its 8 raw bytes: sensor values are short decimals, sums often
//! are not. A value is a tag byte then a float, a zigzag varint, a str or
//! one byte.

use std::collections::BTreeMap;

use super::block::{DecodeError, Value};
use super::fields::Fields;
use super::summary::{
    FieldStats, FieldStatsRef, LastReading, SeriesStats, SeriesSummary, Summary, SummaryStats,
};
use super::wire::{put_bytes, put_varint, Cursor};

pub const FORMAT: u8 = 2;

/// Decimal scales tried for a float: 10^0 ..= 10^MAX_SCALE.
const MAX_SCALE: u8 = 6;
/// A float stored as its raw bits.
const RAW_FLOAT: u8 = 0xff;
/// Mantissas up to this convert to f64 exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

const NUMBER: u8 = 0;
const INT: u8 = 1;
const TEXT: u8 = 2;
const BOOL: u8 = 3;

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_z(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

fn put_float(out: &mut Vec<u8>, x: f64) {
    // -0.0 would come back as 0.0: it takes the raw form.
    if x.is_finite() && !(x == 0.0 && x.is_sign_negative()) {
        let mut scale = 1.0;
        for k in 0..=MAX_SCALE {
            let m = (x * scale).round();
            // Division is correctly rounded, so m / 10^k is the nearest
            // double to the decimal, the one a parser gave for it.
            if m.abs() < MAX_EXACT && (m / scale).to_bits() == x.to_bits() {
                out.push(k);
                put_z(out, m as i64);
                return;
            }
            scale *= 10.0;
        }
    }
    out.push(RAW_FLOAT);
    out.extend_from_slice(&x.to_le_bytes());
}

/// Indexes of the names (field names, owners) a summary refers to.
#[derive(Default)]
struct Names<'a> {
    order: Vec<&'a str>,
    index: BTreeMap<&'a str, u64>,
}

impl<'a> Names<'a> {
    fn add(&mut self, name: &'a str) {
        if !self.index.contains_key(name) {
            self.index.insert(name, self.order.len() as u64);
            self.order.push(name);
        }
    }

    fn add_all(&mut self, last: &'a LastReading) {
        if let Some(owner) = &last.owner {
            self.add(owner);
        }
        for name in last.fields.keys() {
            self.add(name);
        }
    }

    fn put(&self, out: &mut Vec<u8>, name: &str) {
        put_varint(out, self.index.get(name).copied().unwrap_or_default());
    }
}

pub fn encode(summary: &Summary) -> Vec<u8> {
    let mut names = Names::default();
    for s in &summary.series {
        for f in &s.fields {
            names.add(&f.name);
        }
        names.add_all(&s.last);
    }
    let mut out = Vec::with_capacity(64 + summary.series.len() * 96);
    out.push(FORMAT);
    put_varint(&mut out, summary.min_seq);
    put_varint(&mut out, summary.max_seq.wrapping_sub(summary.min_seq));
    put_varint(&mut out, summary.count);
    put_z(&mut out, summary.min_time);
    put_z(&mut out, summary.max_time.wrapping_sub(summary.min_time));
    put_varint(&mut out, names.order.len() as u64);
    for name in &names.order {
        put_bytes(&mut out, name.as_bytes());
    }
    put_varint(&mut out, summary.series.len() as u64);
    for s in &summary.series {
        put_bytes(&mut out, s.name.as_bytes());
        put_varint(&mut out, s.count);
        put_z(&mut out, s.min_time.wrapping_sub(summary.min_time));
        put_z(&mut out, s.max_time.wrapping_sub(s.min_time));
        put_varint(&mut out, s.fields.len() as u64);
        for f in &s.fields {
            names.put(&mut out, &f.name);
            put_varint(&mut out, f.count);
            put_float(&mut out, f.min);
            put_float(&mut out, f.max);
            put_float(&mut out, f.sum);
        }
        let last = &s.last;
        put_z(&mut out, last.seq.wrapping_sub(summary.min_seq) as i64);
        put_z(&mut out, last.time.wrapping_sub(s.min_time));
        put_z(&mut out, last.created.wrapping_sub(last.time));
        match &last.owner {
            None => put_varint(&mut out, 0),
            Some(owner) => put_varint(
                &mut out,
                names.index.get(owner.as_str()).map_or(0, |i| i + 1),
            ),
        }
        put_varint(&mut out, last.fields.len() as u64);
        for (name, value) in &last.fields {
            names.put(&mut out, name);
            match value {
                Value::Number(x) => {
                    out.push(NUMBER);
                    put_float(&mut out, *x);
                }
                Value::Int(i) => {
                    out.push(INT);
                    put_z(&mut out, *i);
                }
                Value::Text(t) => {
                    out.push(TEXT);
                    put_bytes(&mut out, t.as_bytes());
                }
                Value::Bool(b) => {
                    out.push(BOOL);
                    out.push(u8::from(*b));
                }
            }
        }
    }
    out
}

struct Reader<'a> {
    cursor: Cursor<'a>,
    names: Vec<&'a str>,
}

impl<'a> Reader<'a> {
    fn z(&mut self) -> Result<i64, DecodeError> {
        self.cursor.varint().map(unzigzag)
    }

    fn float(&mut self) -> Result<f64, DecodeError> {
        match self.cursor.u8()? {
            RAW_FLOAT => {
                let bytes = self.cursor.take(8)?;
                let bits: [u8; 8] = bytes.try_into().map_err(|_| DecodeError::Truncated)?;
                Ok(f64::from_le_bytes(bits))
            }
            k if k <= MAX_SCALE => {
                let m = self.z()? as f64;
                Ok(m / 10f64.powi(i32::from(k)))
            }
            _ => Err(DecodeError::Corrupt("float scale")),
        }
    }

    fn name(&mut self) -> Result<String, DecodeError> {
        self.name_ref().map(str::to_owned)
    }

    fn name_ref(&mut self) -> Result<&'a str, DecodeError> {
        let i = self.cursor.varint()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| self.names.get(i))
            .copied()
            .ok_or(DecodeError::Corrupt("name index"))
    }

    fn skip_value(&mut self) -> Result<(), DecodeError> {
        match self.cursor.u8()? {
            NUMBER => {
                self.float()?;
            }
            INT => {
                self.z()?;
            }
            TEXT => {
                self.cursor.str()?;
            }
            BOOL => {
                self.cursor.u8()?;
            }
            _ => return Err(DecodeError::Corrupt("value tag")),
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Value, DecodeError> {
        Ok(match self.cursor.u8()? {
            NUMBER => Value::Number(self.float()?),
            INT => Value::Int(self.z()?),
            TEXT => Value::Text(self.cursor.str()?.to_owned()),
            BOOL => Value::Bool(self.cursor.u8()? != 0),
            _ => return Err(DecodeError::Corrupt("value tag")),
        })
    }
}

/// The fields before the name table.
struct Header {
    min_seq: u64,
    max_seq: u64,
    count: u64,
    min_time: i64,
    max_time: i64,
}

impl<'a> Reader<'a> {
    fn open(bytes: &'a [u8]) -> Result<(Reader<'a>, Header), DecodeError> {
        let mut r = Reader {
            cursor: Cursor::new(bytes),
            names: Vec::new(),
        };
        let version = r.cursor.u8()?;
        if version != FORMAT {
            return Err(DecodeError::Version(version));
        }
        let min_seq = r.cursor.varint()?;
        let max_seq = min_seq.wrapping_add(r.cursor.varint()?);
        let count = r.cursor.varint()?;
        let min_time = r.z()?;
        let max_time = min_time.wrapping_add(r.z()?);
        let header = Header {
            min_seq,
            max_seq,
            count,
            min_time,
            max_time,
        };
        Ok((r, header))
    }

    /// One source's name, counts, time range and field statistics: what
    /// both `stats` and `decode` read before its newest reading.
    fn series_stats(&mut self, block_min_time: i64) -> Result<SeriesStats<'a>, DecodeError> {
        let name = self.cursor.str()?;
        let count = self.cursor.varint()?;
        let min_time = block_min_time.wrapping_add(self.z()?);
        let max_time = min_time.wrapping_add(self.z()?);
        let n_fields = self.cursor.count()?;
        let mut fields = Vec::with_capacity(n_fields);
        for _ in 0..n_fields {
            fields.push(FieldStatsRef {
                name: self.name_ref()?,
                count: self.cursor.varint()?,
                min: self.float()?,
                max: self.float()?,
                sum: self.float()?,
            });
        }
        Ok(SeriesStats {
            name,
            count,
            min_time,
            max_time,
            fields,
        })
    }

    fn read_names(&mut self) -> Result<(), DecodeError> {
        for _ in 0..self.cursor.count()? {
            let name = self.cursor.str()?;
            self.names.push(name);
        }
        Ok(())
    }
}

/// `(min_time, max_time)` from the header alone.
pub fn time_range(bytes: &[u8]) -> Result<(i64, i64), DecodeError> {
    let (_, header) = Reader::open(bytes)?;
    Ok((header.min_time, header.max_time))
}

/// The statistics, read in place: names borrowed, each newest reading
/// stepped over rather than built.
pub fn stats(bytes: &[u8]) -> Result<SummaryStats<'_>, DecodeError> {
    let (
        mut r,
        Header {
            min_time, max_time, ..
        },
    ) = Reader::open(bytes)?;
    r.read_names()?;
    let n_series = r.cursor.count()?;
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        series.push(r.series_stats(min_time)?);
        // The newest reading: seq, time, created, owner, then its fields.
        for _ in 0..4 {
            r.cursor.varint()?;
        }
        for _ in 0..r.cursor.count()? {
            r.name_ref()?;
            r.skip_value()?;
        }
    }
    if !r.cursor.is_empty() {
        return Err(DecodeError::Corrupt("bytes after the summary"));
    }
    Ok(SummaryStats {
        min_time,
        max_time,
        series,
    })
}

pub fn decode(bytes: &[u8]) -> Result<Summary, DecodeError> {
    let (
        mut r,
        Header {
            min_seq,
            max_seq,
            count,
            min_time,
            max_time,
        },
    ) = Reader::open(bytes)?;
    r.read_names()?;
    let n_series = r.cursor.count()?;
    let mut series = Vec::with_capacity(n_series);
    for _ in 0..n_series {
        let stats = r.series_stats(min_time)?;
        let (name, count, s_min, s_max) = (
            stats.name.to_owned(),
            stats.count,
            stats.min_time,
            stats.max_time,
        );
        let fields: Vec<FieldStats> = stats
            .fields
            .iter()
            .map(|f| FieldStats {
                name: f.name.to_owned(),
                count: f.count,
                min: f.min,
                max: f.max,
                sum: f.sum,
            })
            .collect();
        let seq = min_seq.wrapping_add(r.z()? as u64);
        let time = s_min.wrapping_add(r.z()?);
        let created = time.wrapping_add(r.z()?);
        let owner = match r.cursor.varint()? {
            0 => None,
            i => Some(
                usize::try_from(i - 1)
                    .ok()
                    .and_then(|i| r.names.get(i))
                    .map(|name| (*name).to_owned())
                    .ok_or(DecodeError::Corrupt("owner index"))?,
            ),
        };
        let mut last_fields = Fields::new();
        for _ in 0..r.cursor.count()? {
            let name = r.name()?;
            last_fields.insert(name, r.value()?);
        }
        series.push(SeriesSummary {
            name,
            count,
            min_time: s_min,
            max_time: s_max,
            fields,
            last: LastReading {
                seq,
                time,
                created,
                owner,
                fields: last_fields,
            },
        });
    }
    if !r.cursor.is_empty() {
        return Err(DecodeError::Corrupt("bytes after the summary"));
    }
    Ok(Summary {
        version: FORMAT,
        min_seq,
        max_seq,
        count,
        min_time,
        max_time,
        series,
    })
}
