//! Formats [`Point`]s as line protocol, escaped so that the parser reads
//! back the same point: the tests' round trip, and a way for tools (the
//! benchmark, exports) to speak to InfluxDB-compatible software.

use std::fmt::Write as _;

use super::{FieldValue, Point, Precision};

/// A point that line protocol cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("empty measurement, key or tag value")]
    Empty,
    #[error("a measurement starting with '#' or a tab reads as a comment or indent")]
    LeadingChar,
    #[error("a point needs at least one field")]
    NoFields,
    #[error("line protocol has no escape for a newline")]
    Newline,
    #[error("field {0} is NaN or infinite")]
    NotFinite(String),
    #[error("the timestamp overflows the precision")]
    TimeOverflow,
}

/// Appends `point` as one line (with its `\n`), the timestamp in
/// `precision`. Tags are written in the point's order.
pub fn write_point(
    point: &Point,
    precision: Precision,
    out: &mut String,
) -> Result<(), WriteError> {
    if point.measurement.starts_with(['#', '\t']) {
        return Err(WriteError::LeadingChar);
    }
    if point.fields.is_empty() {
        return Err(WriteError::NoFields);
    }
    let start = out.len();
    let result = write_parts(point, precision, out);
    if result.is_err() {
        // Leave no half line behind for the caller to send.
        out.truncate(start);
    }
    result
}

fn write_parts(point: &Point, precision: Precision, out: &mut String) -> Result<(), WriteError> {
    escape(&point.measurement, |c| matches!(c, ',' | ' ' | '\\'), out)?;
    for (key, value) in &point.tags {
        out.push(',');
        escape(key, is_key_special, out)?;
        out.push('=');
        escape(value, is_key_special, out)?;
    }
    for (i, (key, value)) in point.fields.iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape(key, is_key_special, out)?;
        out.push('=');
        match value {
            // Rust's `{}` for f64 is the shortest text that reads back to
            // the same bits, and never uses `inf`/`NaN` for finite values.
            FieldValue::Float(x) if x.is_finite() => push(out, format_args!("{x}")),
            FieldValue::Float(_) => return Err(WriteError::NotFinite(key.to_string())),
            FieldValue::Integer(n) => push(out, format_args!("{n}i")),
            FieldValue::UInteger(n) => push(out, format_args!("{n}u")),
            FieldValue::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            FieldValue::String(s) => {
                out.push('"');
                escape_string(s, out)?;
                out.push('"');
            }
        }
    }
    if let Some(ms) = point.time_ms {
        let t = precision.from_ms(ms).ok_or(WriteError::TimeOverflow)?;
        push(out, format_args!(" {t}"));
    }
    out.push('\n');
    Ok(())
}

fn is_key_special(c: char) -> bool {
    matches!(c, ',' | '=' | ' ' | '\\')
}

fn push(out: &mut String, args: std::fmt::Arguments) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
}

fn escape(text: &str, special: fn(char) -> bool, out: &mut String) -> Result<(), WriteError> {
    if text.is_empty() {
        return Err(WriteError::Empty);
    }
    for c in text.chars() {
        if c == '\n' {
            return Err(WriteError::Newline);
        }
        if special(c) {
            out.push('\\');
        }
        out.push(c);
    }
    Ok(())
}

fn escape_string(text: &str, out: &mut String) -> Result<(), WriteError> {
    for c in text.chars() {
        match c {
            '\n' => return Err(WriteError::Newline),
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Ok(())
}
