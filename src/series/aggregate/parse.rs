//! The text forms of an aggregate query: functions (`avg(temp)`), bucket
//! and grace spans (`5m`), fill modes, group lists and times. Each parser
//! returns a message fit for the client, keyed by the caller under the
//! parameter's name.

use std::collections::HashMap;

use super::{Agg, AggFn, AggregateQuery, Fill, MAX_AGGS, MAX_GROUP_FIELDS};
use crate::clock;

const SECOND: i64 = 1000;
const DAY: i64 = 86_400 * SECOND;
pub(crate) const MIN_BUCKET_MS: i64 = SECOND;
pub(crate) const MAX_BUCKET_MS: i64 = 30 * DAY;

pub(crate) type Errors = std::collections::BTreeMap<String, String>;

impl AggregateQuery {
    /// Reads a query from URL parameters: `from`, `to` (ms since the epoch
    /// or RFC 3339), `bucket` (required), `agg` (required), `group`,
    /// `fill`. Other parameters are left to the caller (`filter` belongs
    /// to the rules language, which turns it into the readings or keep
    /// masks it hands the [`super::Aggregator`]). Every bad parameter is
    /// reported, not only the first.
    pub fn parse(params: &HashMap<String, String>) -> Result<AggregateQuery, Errors> {
        let mut errors = Errors::new();
        let get = |name: &str| params.get(name).map(|s| s.trim()).filter(|s| !s.is_empty());
        let mut time = |name: &str| match get(name) {
            None => None,
            Some(text) => {
                let ms = parse_time(text);
                if ms.is_none() {
                    errors.insert(
                        name.to_owned(),
                        format!("'{text}' is neither ms since the epoch nor an RFC 3339 time"),
                    );
                }
                ms
            }
        };
        let from = time("from");
        let to = time("to");
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                errors.insert("to".into(), "must be after from".into());
            }
        }
        let bucket_ms = match get("bucket").map(parse_bucket) {
            None => {
                errors.insert("bucket".into(), "required, e.g. 1m".into());
                0
            }
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                errors.insert("bucket".into(), e);
                0
            }
        };
        let aggs = match get("agg").map(parse_aggs) {
            None => {
                errors.insert("agg".into(), "required, e.g. avg(temp),count()".into());
                Vec::new()
            }
            Some(Ok(aggs)) => aggs,
            Some(Err(e)) => {
                errors.insert("agg".into(), e);
                Vec::new()
            }
        };
        let group = match parse_group(get("group").unwrap_or("").split(',')) {
            Ok(group) => group,
            Err(e) => {
                errors.insert("group".into(), e);
                Vec::new()
            }
        };
        let fill = match get("fill").map(parse_fill).unwrap_or(Ok(Fill::None)) {
            Ok(fill) => fill,
            Err(e) => {
                errors.insert("fill".into(), e);
                Fill::None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AggregateQuery {
            from,
            to,
            bucket_ms,
            aggs,
            group,
            fill,
        })
    }
}

/// Integer milliseconds since the epoch, or RFC 3339 with an optional
/// fraction and `Z` or an offset.
pub fn parse_time(text: &str) -> Option<i64> {
    match text.parse::<i64>() {
        Ok(ms) => Some(ms),
        Err(_) => clock::parse_ms(text),
    }
}

/// `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`, in milliseconds.
pub(crate) fn parse_span(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => SECOND,
        "m" => 60 * SECOND,
        "h" => 3600 * SECOND,
        "d" => DAY,
        _ => return None,
    };
    amount.checked_mul(unit_ms)
}

pub(crate) fn parse_bucket(text: &str) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a bucket size from 1s to 30d (units s, m, h, d)");
    if text.ends_with("ms") {
        return Err(bad());
    }
    match parse_span(text) {
        Some(ms) if (MIN_BUCKET_MS..=MAX_BUCKET_MS).contains(&ms) => Ok(ms),
        _ => Err(bad()),
    }
}

/// A comma-separated list (`avg(temp), count()`); the same function
/// written twice is kept once.
pub(crate) fn parse_aggs(text: &str) -> Result<Vec<Agg>, String> {
    parse_agg_list(text.split(','))
}

pub(crate) fn parse_agg_list<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<Agg>, String> {
    let mut aggs: Vec<Agg> = Vec::new();
    for item in items {
        let agg = parse_agg(item.trim())?;
        if !aggs.contains(&agg) {
            aggs.push(agg);
        }
    }
    if aggs.is_empty() {
        return Err("at least one function, e.g. count()".into());
    }
    if aggs.len() > MAX_AGGS {
        return Err(format!("at most {MAX_AGGS} functions"));
    }
    Ok(aggs)
}

fn parse_agg(text: &str) -> Result<Agg, String> {
    let shape = || format!("'{text}' is not a function call like avg(temp) or count()");
    let (name, rest) = text.split_once('(').ok_or_else(shape)?;
    let arg = rest.strip_suffix(')').ok_or_else(shape)?.trim();
    if arg.contains(['(', ')']) {
        return Err(shape());
    }
    let func = match name.trim().to_ascii_lowercase().as_str() {
        "count" => AggFn::Count,
        "sum" => AggFn::Sum,
        "avg" => AggFn::Avg,
        "min" => AggFn::Min,
        "max" => AggFn::Max,
        "first" => AggFn::First,
        "last" => AggFn::Last,
        other => {
            return Err(format!(
                "unknown function '{other}'; use count, sum, avg, min, max, first, last"
            ))
        }
    };
    let field = match arg {
        "" if func == AggFn::Count => None,
        "" => {
            return Err(format!(
                "'{text}' needs a field, e.g. {}(temp)",
                func.name()
            ))
        }
        field => Some(field.to_owned()),
    };
    Ok(Agg { func, field })
}

pub(crate) fn parse_group<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut group: Vec<String> = Vec::new();
    for name in items.map(str::trim).filter(|s| !s.is_empty()) {
        if group.iter().any(|g| g == name) {
            return Err(format!("'{name}' is named twice"));
        }
        group.push(name.to_owned());
    }
    if group.len() > MAX_GROUP_FIELDS {
        return Err(format!("at most {MAX_GROUP_FIELDS} fields"));
    }
    Ok(group)
}

fn parse_fill(text: &str) -> Result<Fill, String> {
    match text {
        "none" => Ok(Fill::None),
        "null" => Ok(Fill::Null),
        "prev" => Ok(Fill::Prev),
        _ => match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Fill::Value(x)),
            _ => Err(format!("'{text}' is not none, null, prev or a number")),
        },
    }
}
