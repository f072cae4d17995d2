//! A block: the readings of one write group of one series collection,
//! stored column by column.
//!
//! Layout (all integers LEB128 varints unless marked):
//! ```text
//! u8 FORMAT_VERSION | n readings | c columns | c × (u8 kind [| name] | bytes)
//!   | u32 LE crc32 of everything before it
//! ```
//! The checksum turns a flipped or torn block into an error before any
//! column is decoded (pco has no checksum of its own).
//! `bytes` is length-prefixed, so a reader skips the columns it does not
//! need: a time-range filter decodes only `time`, an aggregate of `temp`
//! only `time`, `series` and the `temp` columns. Column payloads:
//! - seq, time, created: pco over all n values (pco finds the deltas and
//!   delta-of-deltas of consecutive seqs and near-regular times itself);
//! - series, owner: a dictionary of distinct strings and one pco index per
//!   reading (index 0 is "no owner");
//! - one column per (field, value type): a presence bitmap of n bits, then
//!   the present values only: pco for numbers and ints, a dictionary for
//!   text, a bitmap for bools. A field that holds a number in one reading
//!   and text in another gets two columns with disjoint bitmaps.
//!
//! Numbers are stored bit for bit, NaN and ±inf included: the codec does
//! not judge values (validation belongs to the ingest layer), and the
//! summary leaves non-finite values out of its statistics.
//!
//! A reading's `id` is not stored: the layer above derives it from the
//! collection and seq, which locates the block.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::columns::{decode_dict, decode_nums, encode_dict, encode_nums};
use super::fields::Fields;
use super::summary::Summary;
use super::wire::{bit, bitmap, put_bytes, put_varint, Cursor};

/// Bumped when the layout changes; decoders refuse versions they do not know.
pub const FORMAT_VERSION: u8 = 1;

/// pco compression level. Measured by `series::measure` (1000-reading
/// blocks of 100 devices: ms times with jitter, temperature and humidity
/// random walks, device index): bytes/reading for those 4 columns were
/// 3.75 at level 0, 2.73 at 2, 2.64 at 4 and 2.63 at 6, 8 and 12. Encoding
/// (best of three on a shared 2-core machine) ran 3.9 M readings/s at 4,
/// 3.1 M at 8 (pco's default) and 2.0 M at 12; below 8 the speeds are
/// within the noise. Above 4 buys nothing on sensor data.
pub const PCO_LEVEL: usize = 4;

/// One write group is a few thousand readings; the cap keeps a corrupt
/// count from allocating without bound.
pub const MAX_READINGS: usize = 1 << 20;

const SEQ: u8 = 1;
const TIME: u8 = 2;
const CREATED: u8 = 3;
const SERIES: u8 = 4;
const OWNER: u8 = 5;
const NUMBER: u8 = 16;
const INT: u8 = 17;
const TEXT: u8 = 18;
const BOOL: u8 = 19;

/// A field value of a reading. A missing field is absent from the map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Value {
    Number(f64),
    Int(i64),
    Text(String),
    Bool(bool),
}

/// Numbers compare bit for bit, so a stored NaN equals itself and the
/// round-trip tests check exactly what is stored.
impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.to_bits() == b.to_bits(),
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Text(a), Value::Text(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        }
    }
}

/// One reading as the codec sees it: system fields and user fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub seq: u64,
    /// The reading's time, in milliseconds since the epoch.
    pub time: i64,
    /// When the server received it, in milliseconds since the epoch.
    pub created: i64,
    pub owner: Option<String>,
    pub series: String,
    pub fields: Fields,
}

/// One field's values, one entry per reading (`None`: missing).
pub type FieldColumn = Vec<Option<Value>>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EncodeError {
    #[error("a block holds at least one reading")]
    Empty,
    #[error("a block holds at most {MAX_READINGS} readings")]
    TooLarge,
    #[error("numeric codec: {0}")]
    Codec(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("block format version {0} is not known")]
    Version(u8),
    #[error("block checksum does not match")]
    Checksum,
    #[error("block is truncated")]
    Truncated,
    #[error("block is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("numeric codec: {0}")]
    Codec(String),
}

/// Encodes readings (in the order given, normally seq order) into a block
/// and builds its summary in the same pass over the input.
pub fn encode(readings: &[Reading]) -> Result<(Vec<u8>, Summary), EncodeError> {
    if readings.is_empty() {
        return Err(EncodeError::Empty);
    }
    if readings.len() > MAX_READINGS {
        return Err(EncodeError::TooLarge);
    }
    let mut columns: Vec<(u8, Option<&str>, Vec<u8>)> = vec![
        (SEQ, None, encode_nums(&collect(readings, |r| r.seq))?),
        (TIME, None, encode_nums(&collect(readings, |r| r.time))?),
        (
            CREATED,
            None,
            encode_nums(&collect(readings, |r| r.created))?,
        ),
        (
            SERIES,
            None,
            encode_dict(readings.iter().map(|r| Some(r.series.as_str())))?,
        ),
        (
            OWNER,
            None,
            encode_dict(readings.iter().map(|r| r.owner.as_deref()))?,
        ),
    ];
    // Field columns in name order, then kind order, so equal input gives
    // equal bytes.
    let mut kinds: BTreeMap<(&str, u8), ()> = BTreeMap::new();
    for r in readings {
        for (name, value) in &r.fields {
            kinds.insert((name, kind_of(value)), ());
        }
    }
    for &(name, kind) in kinds.keys() {
        columns.push((kind, Some(name), encode_field(readings, name, kind)?));
    }

    let mut out = vec![FORMAT_VERSION];
    put_varint(&mut out, readings.len() as u64);
    put_varint(&mut out, columns.len() as u64);
    for (kind, name, bytes) in &columns {
        out.push(*kind);
        if let Some(name) = name {
            put_bytes(&mut out, name.as_bytes());
        }
        put_bytes(&mut out, bytes);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok((out, Summary::of(readings)))
}

/// Decodes every reading of a block.
pub fn decode(bytes: &[u8]) -> Result<Vec<Reading>, DecodeError> {
    BlockReader::open(bytes)?.readings()
}

fn collect<T>(readings: &[Reading], f: impl Fn(&Reading) -> T) -> Vec<T> {
    readings.iter().map(f).collect()
}

fn kind_of(value: &Value) -> u8 {
    match value {
        Value::Number(_) => NUMBER,
        Value::Int(_) => INT,
        Value::Text(_) => TEXT,
        Value::Bool(_) => BOOL,
    }
}

fn encode_field(readings: &[Reading], name: &str, kind: u8) -> Result<Vec<u8>, EncodeError> {
    // One look-up per reading serves both the bitmap and the values.
    let cells: Vec<Option<&Value>> = readings
        .iter()
        .map(|r| r.fields.get(name).filter(|v| kind_of(v) == kind))
        .collect();
    let present: Vec<&Value> = cells.iter().flatten().copied().collect();
    let mut out = Vec::new();
    put_bytes(&mut out, &bitmap(cells.iter().map(Option::is_some)));
    let values = match kind {
        NUMBER => encode_nums(&collect_values(&present, |v| match v {
            Value::Number(x) => Some(*x),
            _ => None,
        }))?,
        INT => encode_nums(&collect_values(&present, |v| match v {
            Value::Int(x) => Some(*x),
            _ => None,
        }))?,
        TEXT => encode_dict(present.iter().map(|v| match v {
            Value::Text(s) => Some(s.as_str()),
            _ => None,
        }))?,
        _ => bitmap(present.iter().map(|v| matches!(v, Value::Bool(true)))),
    };
    out.extend_from_slice(&values);
    Ok(out)
}

fn collect_values<T>(present: &[&Value], f: impl Fn(&Value) -> Option<T>) -> Vec<T> {
    present.iter().filter_map(|v| f(v)).collect()
}

/// A parsed block directory: the count and where each column lies. Opening
/// reads only the directory; each column is decoded when asked for.
pub struct BlockReader<'a> {
    n: usize,
    columns: Vec<(u8, Option<&'a str>, &'a [u8])>,
}

impl<'a> BlockReader<'a> {
    pub fn open(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let body_len = bytes.len().checked_sub(4).ok_or(DecodeError::Truncated)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body).to_le_bytes() != crc {
            // A known version with a bad checksum is damage; an unknown
            // version may simply be newer.
            return match body.first() {
                Some(&v) if v != FORMAT_VERSION => Err(DecodeError::Version(v)),
                _ => Err(DecodeError::Checksum),
            };
        }
        Self::open_unchecked(body)
    }

    /// Parses a block body without its checksum; the tests use it to feed
    /// the parser and pco corrupt bytes that a checksum would stop.
    pub(crate) fn open_unchecked(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut cur = Cursor::new(bytes);
        let version = cur.u8()?;
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let n = usize::try_from(cur.varint()?).map_err(|_| DecodeError::Corrupt("count"))?;
        if n == 0 || n > MAX_READINGS {
            return Err(DecodeError::Corrupt("reading count out of range"));
        }
        let c = cur.count()?;
        let mut columns = Vec::with_capacity(c);
        for _ in 0..c {
            let kind = cur.u8()?;
            let name = match kind {
                SEQ | TIME | CREATED | SERIES | OWNER => None,
                NUMBER | INT | TEXT | BOOL => Some(cur.str()?),
                _ => return Err(DecodeError::Corrupt("unknown column kind")),
            };
            columns.push((kind, name, cur.bytes()?));
        }
        if !cur.is_empty() {
            return Err(DecodeError::Corrupt("bytes after the last column"));
        }
        Ok(BlockReader { n, columns })
    }

    /// How many readings the block holds.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Never true: an empty block cannot be encoded or opened.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn system(&self, kind: u8) -> Result<&'a [u8], DecodeError> {
        self.columns
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, _, bytes)| *bytes)
            .ok_or(DecodeError::Corrupt("system column missing"))
    }

    pub fn seqs(&self) -> Result<Vec<u64>, DecodeError> {
        decode_nums(self.system(SEQ)?, self.n)
    }

    pub fn times(&self) -> Result<Vec<i64>, DecodeError> {
        decode_nums(self.system(TIME)?, self.n)
    }

    pub fn created(&self) -> Result<Vec<i64>, DecodeError> {
        decode_nums(self.system(CREATED)?, self.n)
    }

    pub fn series(&self) -> Result<Vec<String>, DecodeError> {
        decode_dict(self.system(SERIES)?, self.n)?
            .into_iter()
            .map(|s| s.ok_or(DecodeError::Corrupt("reading without series")))
            .collect()
    }

    pub fn owners(&self) -> Result<Vec<Option<String>>, DecodeError> {
        decode_dict(self.system(OWNER)?, self.n)
    }

    /// The names of the fields present in at least one reading.
    pub fn field_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = self.columns.iter().filter_map(|(_, n, _)| *n).collect();
        names.dedup();
        names
    }

    /// One field's values, decoding only that field's columns.
    pub fn field(&self, name: &str) -> Result<FieldColumn, DecodeError> {
        let mut out: FieldColumn = vec![None; self.n];
        for &(kind, _, bytes) in self.columns.iter().filter(|(_, n, _)| *n == Some(name)) {
            let mut cur = Cursor::new(bytes);
            let present = cur.bytes()?;
            if present.len() != self.n.div_ceil(8) {
                return Err(DecodeError::Corrupt("presence bitmap size"));
            }
            let rows: Vec<usize> = (0..self.n).filter(|&i| bit(present, i)).collect();
            let rest = cur.rest();
            let values: Vec<Value> = match kind {
                NUMBER => decode_nums::<f64>(rest, rows.len())?
                    .into_iter()
                    .map(Value::Number)
                    .collect(),
                INT => decode_nums::<i64>(rest, rows.len())?
                    .into_iter()
                    .map(Value::Int)
                    .collect(),
                TEXT => decode_dict(rest, rows.len())?
                    .into_iter()
                    .map(|s| s.map(Value::Text))
                    .collect::<Option<_>>()
                    .ok_or(DecodeError::Corrupt("text value without string"))?,
                _ => {
                    if rest.len() != rows.len().div_ceil(8) {
                        return Err(DecodeError::Corrupt("bool bitmap size"));
                    }
                    (0..rows.len()).map(|i| Value::Bool(bit(rest, i))).collect()
                }
            };
            for (row, value) in rows.into_iter().zip(values) {
                // Same name twice at one row: two columns claim one value.
                if out[row].replace(value).is_some() {
                    return Err(DecodeError::Corrupt("field present twice in a reading"));
                }
            }
        }
        Ok(out)
    }

    /// The series column as its dictionary and one 0-based dictionary
    /// index per reading: a caller that works per distinct series (an
    /// aggregate grouping by it) resolves each name once per block instead
    /// of allocating a string per reading.
    pub fn series_indexed(&self) -> Result<(Vec<&'a str>, Vec<u32>), DecodeError> {
        dict_indexed(self.system(SERIES)?, self.n)
    }

    /// One field's columns with their values unboxed (one entry per value
    /// type the field holds in this block), for scans that would otherwise
    /// build a [`Value`] per reading.
    pub fn field_typed(&self, name: &str) -> Result<Vec<TypedColumn<'a>>, DecodeError> {
        let mut out = Vec::new();
        for &(kind, _, bytes) in self.columns.iter().filter(|(_, n, _)| *n == Some(name)) {
            let mut cur = Cursor::new(bytes);
            let present = cur.bytes()?;
            if present.len() != self.n.div_ceil(8) {
                return Err(DecodeError::Corrupt("presence bitmap size"));
            }
            let rows = present_rows(present, self.n);
            let rest = cur.rest();
            let values = match kind {
                NUMBER => TypedValues::Number(decode_nums(rest, rows.len())?),
                INT => TypedValues::Int(decode_nums(rest, rows.len())?),
                TEXT => {
                    let (dict, indices) = dict_indexed(rest, rows.len())?;
                    TypedValues::Text { dict, indices }
                }
                _ => {
                    if rest.len() != rows.len().div_ceil(8) {
                        return Err(DecodeError::Corrupt("bool bitmap size"));
                    }
                    TypedValues::Bool((0..rows.len()).map(|i| bit(rest, i)).collect())
                }
            };
            out.push(TypedColumn { rows, values });
        }
        Ok(out)
    }

    /// Every reading, all columns decoded.
    pub fn readings(&self) -> Result<Vec<Reading>, DecodeError> {
        let seqs = self.seqs()?;
        let times = self.times()?;
        let created = self.created()?;
        let series = self.series()?;
        let owners = self.owners()?;
        let mut fields: Vec<Fields> = vec![Fields::new(); self.n];
        for name in self.field_names() {
            for (row, value) in self.field(name)?.into_iter().enumerate() {
                if let Some(value) = value {
                    fields[row].insert(name.to_owned(), value);
                }
            }
        }
        let rows = seqs
            .into_iter()
            .zip(times)
            .zip(created)
            .zip(series)
            .zip(owners);
        Ok(rows
            .zip(fields)
            .map(
                |(((((seq, time), created), series), owner), fields)| Reading {
                    seq,
                    time,
                    created,
                    owner,
                    series,
                    fields,
                },
            )
            .collect())
    }
}

/// The values of one (field, value type) column: `rows[i]` holds the i-th
/// value, rows ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedColumn<'a> {
    pub rows: Vec<u32>,
    pub values: TypedValues<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TypedValues<'a> {
    Number(Vec<f64>),
    Int(Vec<i64>),
    /// A 0-based index into `dict` per value.
    Text {
        dict: Vec<&'a str>,
        indices: Vec<u32>,
    },
    Bool(Vec<bool>),
}

/// A dictionary column whose every value is present, with its indices
/// made 0-based; a missing value is corruption here.
fn dict_indexed(bytes: &[u8], n: usize) -> Result<(Vec<&str>, Vec<u32>), DecodeError> {
    let mut cur = Cursor::new(bytes);
    let size = cur.count()?;
    let mut dict = Vec::with_capacity(size);
    for _ in 0..size {
        dict.push(cur.str()?);
    }
    let mut indices: Vec<u32> = decode_nums(cur.rest(), n)?;
    for i in &mut indices {
        if *i == 0 || *i as usize > dict.len() {
            return Err(DecodeError::Corrupt("dictionary index out of range"));
        }
        *i -= 1;
    }
    Ok((dict, indices))
}

/// The set rows of a presence bitmap below `n`, ascending; a whole byte
/// at a time, because dense fields are the common case.
fn present_rows(map: &[u8], n: usize) -> Vec<u32> {
    let mut rows = Vec::with_capacity(n);
    for (i, &byte) in map.iter().enumerate() {
        let base = (i * 8) as u32;
        if byte == 0xff {
            rows.extend(base..base + 8);
        } else {
            for b in 0..8 {
                if byte & (1 << b) != 0 {
                    rows.push(base + b);
                }
            }
        }
    }
    // Bits past `n` in the last byte are padding; a corrupt block may set them.
    while rows.last().is_some_and(|&r| r as usize >= n) {
        rows.pop();
    }
    rows
}
