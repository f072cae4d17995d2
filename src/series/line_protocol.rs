//! InfluxDB line protocol (the v2 reference), parsed into [`Point`]s that
//! borrow from the request body: a name or value is copied only when it
//! holds an escape sequence. This is the parser layer only; the endpoint maps a
//! point to a reading (tags and fields become fields of the same names, the
//! timestamp `time`, the measurement `measurement`).
//!
//! ```text
//! weather,device=gw-1,site=a temp=21.5,humidity=40i 1764748800000000000
//! ```
//!
//! Escapes (a backslash before any other character is a literal backslash,
//! as the reference says):
//! - measurement: `\,` `\ ` `\\`
//! - tag keys, tag values, field keys: `\,` `\=` `\ ` `\\`
//! - string field values (in double quotes): `\"` `\\`
//!
//! Field values: float (`1.5`, `-1e3`; no NaN or infinity), integer (`1i`),
//! unsigned (`1u`), boolean (`t T true True TRUE`, `f F false False FALSE`),
//! string (`"..."`). Lines starting with `#` are comments; blank lines and a
//! `\r` before the `\n` are ignored. Line numbers count every physical line.
//!
//! A batch is all or nothing: [`parse_batch`] answers the first bad line.
//! Beyond the reference, a key used twice in one line (as tag or field) is
//! refused, because both become fields of one reading.

use std::borrow::Cow;

mod write;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_client;

pub use write::{write_point, WriteError};

/// One field's value, typed as line protocol types it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Float(f64),
    Integer(i64),
    UInteger(u64),
    Boolean(bool),
    String(Cow<'a, str>),
}

/// One line: a measurement, its tags and fields in line order, and the
/// timestamp in milliseconds (None when the line has none: the endpoint
/// uses the time of arrival).
#[derive(Debug, Clone, PartialEq)]
pub struct Point<'a> {
    pub measurement: Cow<'a, str>,
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub fields: Vec<(Cow<'a, str>, FieldValue<'a>)>,
    pub time_ms: Option<i64>,
}

/// The unit of the timestamps in a batch (`precision=` on the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// InfluxDB's default.
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// The `precision` query value (`ns`, `us`, `ms`, `s`), as InfluxDB v2.
    pub fn from_query(value: &str) -> Option<Self> {
        match value {
            "ns" => Some(Self::Ns),
            "us" => Some(Self::Us),
            "ms" => Some(Self::Ms),
            "s" => Some(Self::S),
            _ => None,
        }
    }

    /// A timestamp in this unit as milliseconds, rounded down (floor, also
    /// before 1970: -1 ns is -1 ms), so a reading never moves into a later
    /// bucket. None when seconds overflow an i64 of milliseconds.
    pub fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Self::Ns => Some(t.div_euclid(1_000_000)),
            Self::Us => Some(t.div_euclid(1_000)),
            Self::Ms => Some(t),
            Self::S => t.checked_mul(1_000),
        }
    }

    /// Milliseconds in this unit (for the writer); None on overflow.
    pub fn from_ms(self, ms: i64) -> Option<i64> {
        match self {
            Self::Ns => ms.checked_mul(1_000_000),
            Self::Us => ms.checked_mul(1_000),
            Self::Ms => Some(ms),
            Self::S => Some(ms.div_euclid(1_000)),
        }
    }
}

/// Caps that hold against hostile input, checked before any work that
/// grows with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one line, without its line end.
    pub max_line_bytes: usize,
    /// Tags and fields together in one line (the duplicate-key check is
    /// quadratic in this).
    pub max_fields_per_line: usize,
    /// Points in one batch; blank and comment lines do not count.
    pub max_lines: usize,
}

impl Default for Limits {
    /// 64 KiB lines (InfluxDB's own default is 64 KiB), 200 keys a line,
    /// 100,000 points a batch (clients send 1,000-5,000 by default).
    fn default() -> Self {
        Self {
            max_line_bytes: 64 * 1024,
            max_fields_per_line: 200,
            max_lines: 100_000,
        }
    }
}

/// Why a line was refused. `line` is 1-based; `column` (1-based, in bytes)
/// points at where the parser stopped, when that says something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    pub line: usize,
    pub column: Option<usize>,
    pub message: String,
}

/// Parses a whole batch, all or nothing: the points, or the first bad line.
pub fn parse_batch<'a>(
    input: &'a [u8],
    precision: Precision,
    limits: &Limits,
) -> Result<Vec<Point<'a>>, LineError> {
    // A guess from the size (typical lines are 50-100 bytes) saves the
    // vector's regrowth copies on large batches; capped so a short line
    // count cannot reserve much.
    let mut points = Vec::with_capacity((input.len() / 64).min(limits.max_lines));
    for point in parse_lines(input, precision, limits) {
        points.push(point?);
    }
    Ok(points)
}

/// The points of a batch one at a time, for callers that stream; after
/// the `max_lines` error it ends.
pub fn parse_lines<'a>(input: &'a [u8], precision: Precision, limits: &Limits) -> Lines<'a> {
    Lines {
        rest: Some(input),
        line: 0,
        points: 0,
        precision,
        limits: *limits,
    }
}

/// Iterator behind [`parse_lines`].
pub struct Lines<'a> {
    rest: Option<&'a [u8]>,
    line: usize,
    points: usize,
    precision: Precision,
    limits: Limits,
}

impl Lines<'_> {
    /// The 1-based number of the line the last point came from.
    pub fn line(&self) -> usize {
        self.line
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Point<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rest = self.rest?;
            let (raw, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.rest = next.filter(|r| !r.is_empty());
            self.line += 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let err = |column: Option<usize>, message: String| LineError {
                line: self.line,
                column,
                message,
            };
            if raw.len() > self.limits.max_line_bytes {
                return Some(Err(err(
                    None,
                    format!("line longer than {} bytes", self.limits.max_line_bytes),
                )));
            }
            let text = match std::str::from_utf8(raw) {
                Ok(text) => text,
                Err(e) => {
                    return Some(Err(err(
                        Some(e.valid_up_to() + 1),
                        "not valid UTF-8".to_owned(),
                    )))
                }
            };
            let start = text.len() - text.trim_start_matches([' ', '\t']).len();
            if start == text.len() || text.as_bytes()[start] == b'#' {
                continue;
            }
            self.points += 1;
            if self.points > self.limits.max_lines {
                self.rest = None;
                return Some(Err(err(
                    None,
                    format!("batch has more than {} points", self.limits.max_lines),
                )));
            }
            let parser = LineParser {
                text,
                bytes: text.as_bytes(),
                pos: start,
                limits: &self.limits,
            };
            return Some(
                parser
                    .point(self.precision)
                    .map_err(|(column, message)| err(Some(column + 1), message)),
            );
        }
    }
}

/// A failure inside one line: the 0-based byte offset and the message.
type Fail = (usize, String);

struct LineParser<'a, 'l> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    limits: &'l Limits,
}

fn measurement_escape(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'\\')
}

fn key_escape(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ' | b'\\')
}

impl<'a> LineParser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn fail<T>(&self, message: String) -> Result<T, Fail> {
        Err((self.pos, message))
    }

    /// Reads up to the first unescaped stop byte; borrows unless an escape
    /// had to be removed. `stop` is generic so that each caller's test is
    /// inlined into this per-byte loop rather than called through a pointer.
    fn token(&mut self, stop: impl Fn(u8) -> bool, escapable: fn(u8) -> bool) -> Cow<'a, str> {
        let start = self.pos;
        let mut escaped = false;
        while let Some(b) = self.peek() {
            if b == b'\\' && self.bytes.get(self.pos + 1).is_some_and(|&n| escapable(n)) {
                escaped = true;
                self.pos += 2;
            } else if stop(b) {
                break;
            } else {
                self.pos += 1;
            }
        }
        let raw = &self.text[start..self.pos];
        if escaped {
            Cow::Owned(unescape(raw, escapable))
        } else {
            Cow::Borrowed(raw)
        }
    }

    fn point(mut self, precision: Precision) -> Result<Point<'a>, Fail> {
        let measurement = self.token(|b| b == b',' || b == b' ', measurement_escape);
        if measurement.is_empty() {
            return self.fail("measurement missing".to_owned());
        }
        let mut tags = Vec::new();
        while self.peek() == Some(b',') {
            self.pos += 1;
            let key = self.token(|b| matches!(b, b',' | b'=' | b' '), key_escape);
            if key.is_empty() {
                return self.fail("tag key missing".to_owned());
            }
            if self.peek() != Some(b'=') {
                return self.fail(format!("tag {key} has no '=' and value"));
            }
            self.pos += 1;
            // An unescaped '=' inside a tag value is taken literally, as
            // InfluxDB does.
            let value = self.token(|b| b == b',' || b == b' ', key_escape);
            if value.is_empty() {
                return self.fail(format!("tag value missing for key {key}"));
            }
            tags.push((key, value));
            self.check_count(tags.len())?;
        }
        if self.peek().is_none() {
            return self.fail("no fields (a point needs at least one)".to_owned());
        }
        if self.peek() != Some(b' ') {
            return self.fail("expected a space before the fields".to_owned());
        }
        self.skip_spaces();
        if self.peek().is_none() {
            return self.fail("no fields (a point needs at least one)".to_owned());
        }
        let mut fields = Vec::new();
        loop {
            let key = self.token(|b| matches!(b, b',' | b'=' | b' '), key_escape);
            if key.is_empty() {
                return self.fail("field key missing".to_owned());
            }
            if self.peek() != Some(b'=') {
                return self.fail(format!("field value missing for key {key}"));
            }
            self.pos += 1;
            let value = self.field_value(&key)?;
            fields.push((key, value));
            self.check_count(tags.len() + fields.len())?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                _ => break,
            }
        }
        let time_ms = self.timestamp(precision)?;
        check_unique(&tags, &fields).or_else(|key| self.fail(key))?;
        Ok(Point {
            measurement,
            tags,
            fields,
            time_ms,
        })
    }

    fn check_count(&self, n: usize) -> Result<(), Fail> {
        if n > self.limits.max_fields_per_line {
            return self.fail(format!(
                "more than {} tags and fields",
                self.limits.max_fields_per_line
            ));
        }
        Ok(())
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn field_value(&mut self, key: &str) -> Result<FieldValue<'a>, Fail> {
        if self.peek() == Some(b'"') {
            return self.string_value(key);
        }
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b',' && b != b' ') {
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        let fail = |message: String| Err((start, message));
        let value = match raw.as_bytes() {
            [] => return fail(format!("field value missing for key {key}")),
            b"t" | b"T" | b"true" | b"True" | b"TRUE" => FieldValue::Boolean(true),
            b"f" | b"F" | b"false" | b"False" | b"FALSE" => FieldValue::Boolean(false),
            [.., b'i'] => match raw[..raw.len() - 1].parse::<i64>() {
                Ok(n) => FieldValue::Integer(n),
                Err(_) => return fail(format!("invalid integer {raw} for key {key}")),
            },
            [.., b'u'] => match raw[..raw.len() - 1].parse::<u64>() {
                Ok(n) => FieldValue::UInteger(n),
                Err(_) => return fail(format!("invalid unsigned integer {raw} for key {key}")),
            },
            _ => match parse_float(raw) {
                Some(x) => FieldValue::Float(x),
                None => return fail(format!("invalid field value {raw} for key {key}")),
            },
        };
        Ok(value)
    }

    fn string_value(&mut self, key: &str) -> Result<FieldValue<'a>, Fail> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => {
                    return Err((
                        open,
                        format!("string value for key {key} has no closing quote"),
                    ))
                }
                Some(b'\\') if matches!(self.bytes.get(self.pos + 1), Some(b'"' | b'\\')) => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        let raw = &self.text[start..self.pos];
        self.pos += 1;
        if !matches!(self.peek(), None | Some(b',' | b' ')) {
            return self.fail(format!(
                "unexpected text after the string value for key {key}"
            ));
        }
        Ok(FieldValue::String(if escaped {
            Cow::Owned(unescape(raw, |b| b == b'"' || b == b'\\'))
        } else {
            Cow::Borrowed(raw)
        }))
    }

    fn timestamp(&mut self, precision: Precision) -> Result<Option<i64>, Fail> {
        self.skip_spaces();
        let start = self.pos;
        while self.peek().is_some_and(|b| b != b' ') {
            self.pos += 1;
        }
        let raw = &self.text[start..self.pos];
        self.skip_spaces();
        if raw.is_empty() {
            return Ok(None);
        }
        if self.peek().is_some() {
            return self.fail("unexpected text after the timestamp".to_owned());
        }
        let fail = |message: String| Err((start, message));
        // i64::from_str also takes a leading '+', which the reference does not.
        let t = match raw.parse::<i64>() {
            Ok(t) if !raw.starts_with('+') => t,
            _ => return fail(format!("invalid timestamp {raw}")),
        };
        match precision.to_ms(t) {
            Some(ms) => Ok(Some(ms)),
            None => fail(format!(
                "timestamp {raw} out of range in precision {precision:?}"
            )),
        }
    }
}

/// Floats as the reference writes them: digits, sign, point, exponent.
/// `f64::from_str` alone would also take `inf`, `NaN` and `infinity`.
fn parse_float(raw: &str) -> Option<f64> {
    let ok = raw
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok {
        return None;
    }
    raw.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Drops the backslash of each escape sequence. Escapes are ASCII, so the
/// result stays valid UTF-8 byte for byte.
fn unescape(raw: &str, escapable: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c == '\\' {
            if let Some(&(_, n)) = chars.peek() {
                if n.is_ascii() && escapable(n as u8) {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// A key seen twice in one line, as tag or field. Quadratic, but lines
/// hold a handful of keys and `max_fields_per_line` bounds the worst case.
fn check_unique(
    tags: &[(Cow<'_, str>, Cow<'_, str>)],
    fields: &[(Cow<'_, str>, FieldValue<'_>)],
) -> Result<(), String> {
    let keys = || tags.iter().map(|t| &t.0).chain(fields.iter().map(|f| &f.0));
    for (i, a) in keys().enumerate() {
        if keys().skip(i + 1).any(|b| a == b) {
            return Err(format!(
                "key {a} appears twice (tags and fields become fields of one reading)"
            ));
        }
    }
    Ok(())
}

impl Point<'_> {
    /// The same point owning its strings, to keep past the request body.
    pub fn into_owned(self) -> Point<'static> {
        let own = |s: Cow<'_, str>| Cow::Owned(s.into_owned());
        Point {
            measurement: own(self.measurement),
            tags: self
                .tags
                .into_iter()
                .map(|(k, v)| (own(k), own(v)))
                .collect(),
            fields: self
                .fields
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        FieldValue::String(s) => FieldValue::String(own(s)),
                        FieldValue::Float(x) => FieldValue::Float(x),
                        FieldValue::Integer(n) => FieldValue::Integer(n),
                        FieldValue::UInteger(n) => FieldValue::UInteger(n),
                        FieldValue::Boolean(b) => FieldValue::Boolean(b),
                    };
                    (own(k), v)
                })
                .collect(),
            time_ms: self.time_ms,
        }
    }
}
