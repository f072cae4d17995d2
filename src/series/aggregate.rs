//! Time-bucketed aggregates of series readings: `avg(temp)` per minute
//! per device, and the like.
//!
//! Buckets are aligned to the Unix epoch: a reading at `time` falls in the
//! bucket starting at `floor(time / bucket) * bucket` (floored for times
//! before 1970 too). `from` is inclusive and `to` exclusive, so the first
//! and last buckets may be cut by them. Each bucket of each group reports:
//! - `count()`: readings; `count(f)`: readings that have `f`, of any type;
//! - `sum`, `avg`, `min`, `max`: over the finite numbers and ints of `f`
//!   (text, bools, NaN and ±inf are skipped); null when there are none;
//! - `first(f)`, `last(f)`: the value of `f` in the reading with the
//!   smallest (greatest) `(time, seq)` among the bucket's readings that
//!   have `f`.
//!
//! A group field is the collection's series field (read from
//! `Reading::series`) or any other field; a reading without it groups
//! under null.
//!
//! [`Aggregator::add_block`] reads only the columns the query needs and
//! resolves each distinct series of a block once: `measure_add_block`
//! found 7 to 11 ns of CPU per reading beyond pco's decoding;
//! [`Aggregator::add_summary`] answers a block that lies in one bucket
//! from its summary, without decoding it, when the query allows.

mod columnar;
mod finish;
mod from_summary;
mod parse;
mod state;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value as Json;

pub use self::columnar::{BlockPlan, DecodedBlock};
pub(crate) use self::state::{group_json, group_key, GroupVal, Plan, Slots};
use super::{BlockReader, DecodeError, Reading, TypedValues};

pub use self::parse::parse_time;
pub(crate) use self::parse::{parse_agg_list, parse_bucket, parse_group, parse_span};

/// Buckets a query may hold or produce, empty ones included: a `1s`
/// bucket over a year of data must fail, not exhaust memory. A day of
/// minutes for 100 devices (144,000) fits; a held bucket of one numeric
/// field takes about 100 bytes, so the cap bounds a query near 25 MB.
pub const MAX_BUCKETS: usize = 250_000;
pub const MAX_AGGS: usize = 32;
pub const MAX_GROUP_FIELDS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
    First,
    Last,
}

impl AggFn {
    pub fn name(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::Sum => "sum",
            AggFn::Avg => "avg",
            AggFn::Min => "min",
            AggFn::Max => "max",
            AggFn::First => "first",
            AggFn::Last => "last",
        }
    }
}

/// One function of one field; only `count` may have no field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agg {
    pub func: AggFn,
    pub field: Option<String>,
}

impl Agg {
    /// The key of this function's value in a bucket: `avg(temp)`, `count()`.
    pub fn label(&self) -> String {
        format!(
            "{}({})",
            self.func.name(),
            self.field.as_deref().unwrap_or("")
        )
    }
}

/// What an empty bucket becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Fill {
    /// Left out.
    None,
    /// Reported with null values.
    Null,
    /// Reported with the group's previous bucket's values (null when the
    /// group has no previous bucket).
    Prev,
    /// Reported with this value.
    Value(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AggregateQuery {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub bucket_ms: i64,
    pub aggs: Vec<Agg>,
    pub group: Vec<String>,
    pub fill: Fill,
}

/// One bucket of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Start of the bucket, ms since the epoch.
    pub t: i64,
    pub group: serde_json::Map<String, Json>,
    /// By label (`avg(temp)`).
    pub values: BTreeMap<String, Json>,
}

/// `{"t": "2026-12-03T08:00:00.000Z", "group": {...}, "values": {...}}`:
/// the one shape of a bucket, in `aggregate` answers and `bucket` messages.
impl serde::Serialize for Bucket {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = serializer.serialize_map(Some(3))?;
        out.serialize_entry("t", &crate::clock::format_ms(self.t))?;
        out.serialize_entry("group", &self.group)?;
        out.serialize_entry("values", &self.values)?;
        out.end()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AggregateError {
    #[error(
        "the query spans more than {MAX_BUCKETS} buckets; use a larger bucket or a shorter range"
    )]
    TooManyBuckets,
}

/// The start of the bucket holding `time`; None when that start is not a
/// representable time (within one bucket of `i64::MIN`).
#[inline]
pub(crate) fn bucket_start(time: i64, bucket_ms: i64) -> Option<i64> {
    time.checked_sub(time.rem_euclid(bucket_ms))
}

/// Accumulates readings, row by row or a block at a time, into buckets.
pub struct Aggregator {
    query: AggregateQuery,
    series_field: String,
    plan: Plan,
    block_plan: BlockPlan,
    slots: Slots,
    /// Group keys by group id, and back.
    groups: Vec<Vec<GroupVal>>,
    group_ids: HashMap<Vec<GroupVal>, u32>,
    /// Group ids by series name, when the query groups by the series only.
    series_groups: HashMap<Box<str>, u32>,
    /// The last block's series dictionary and the group ids resolved from
    /// it: consecutive blocks of the same sources usually have the same
    /// dictionary, which then costs a comparison instead of a lookup per
    /// source.
    last_series: (Vec<Box<str>>, Vec<u32>),
    /// Slots by (group, bucket start); looked up only when a group's
    /// readings leave the bucket in `recent`.
    index: HashMap<(u32, i64), u32>,
    /// (group, bucket start) of each slot.
    heads: Vec<(u32, i64)>,
    /// Per group: the bucket last written, `[start, end)` and its slot, so
    /// consecutive readings of a group skip the division and the lookup.
    recent: Vec<(i64, i64, u32)>,
    overflow: bool,
}

impl Aggregator {
    /// `series_field` is the collection's series field, so grouping by it
    /// or aggregating it reads the series of each reading.
    pub fn new(mut query: AggregateQuery, series_field: &str) -> Aggregator {
        // A query built by hand could hold 0, which cannot bucket.
        query.bucket_ms = query.bucket_ms.max(1);
        let plan = Plan::new(&query.aggs);
        Aggregator {
            slots: Slots::new(&plan),
            block_plan: BlockPlan::new(&query, series_field, &plan),
            plan,
            query,
            series_field: series_field.to_owned(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            series_groups: HashMap::new(),
            last_series: (Vec::new(), Vec::new()),
            index: HashMap::new(),
            heads: Vec::new(),
            recent: Vec::new(),
            overflow: false,
        }
    }

    /// Within `[from, to)`, and not within one bucket of `i64::MIN`,
    /// where a bucket's start may not be representable.
    fn in_range(&self, time: i64) -> bool {
        time >= i64::MIN + self.query.bucket_ms
            && self.query.from.is_none_or(|f| time >= f)
            && self.query.to.is_none_or(|t| time < t)
    }

    fn group_id(&mut self, key: Vec<GroupVal>) -> u32 {
        if let Some(&id) = self.group_ids.get(&key) {
            return id;
        }
        let id = self.groups.len() as u32;
        self.groups.push(key.clone());
        self.group_ids.insert(key, id);
        self.recent.push((0, 0, 0));
        id
    }

    /// The slot of `gid`'s bucket holding `time`, made if new; None when
    /// the bucket cap is reached (then `finish` fails) or the bucket start
    /// is not representable.
    #[inline(always)]
    fn slot_for(&mut self, gid: u32, time: i64) -> Option<usize> {
        let (start, end, slot) = self.recent[gid as usize];
        if time >= start && time < end {
            return Some(slot as usize);
        }
        self.slot_for_new_bucket(gid, time)
    }

    /// [`Aggregator::slot_for`] when `time` leaves the group's recent
    /// bucket: kept out of line so the common case inlines small.
    #[inline(never)]
    fn slot_for_new_bucket(&mut self, gid: u32, time: i64) -> Option<usize> {
        let t = bucket_start(time, self.query.bucket_ms)?;
        let slot = match self.index.entry((gid, t)) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                if self.heads.len() >= MAX_BUCKETS {
                    self.overflow = true;
                    return None;
                }
                let slot = self.slots.alloc();
                entry.insert(slot);
                self.heads.push((gid, t));
                slot
            }
        };
        // At the top of the range the end saturates and the last
        // millisecond simply misses the cache.
        self.recent[gid as usize] = (t, t.saturating_add(self.query.bucket_ms), slot);
        Some(slot as usize)
    }

    /// Adds one reading (ignored outside `[from, to)`).
    pub fn add(&mut self, r: &Reading) {
        // Past the cap the query has failed; new groups would only grow.
        if self.overflow || !self.in_range(r.time) {
            return;
        }
        let key = group_key(r, &self.query.group, &self.series_field);
        let gid = self.group_id(key);
        if let Some(slot) = self.slot_for(gid, r.time) {
            self.slots
                .add_reading(slot as u32, &self.plan, r, &self.series_field);
        }
    }
}
