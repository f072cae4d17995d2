//! Bucket subscriptions: readings are aggregated as they arrive, and a
//! bucket is sent once, when it closes: `grace` after its end, so readings
//! that arrive a little late still count. A reading for a bucket already
//! closed is dropped and counted as late.
//!
//! Values follow [`super::aggregate`] exactly (same functions, labels,
//! grouping and epoch-aligned buckets); only empty buckets are never sent.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::aggregate::{
    bucket_start, group_json, group_key, parse_agg_list, parse_bucket, parse_group, parse_span,
    Agg, Bucket, GroupVal, Plan as AggPlan, Slots as AggSlots,
};
use super::Reading;

/// (group, bucket) pairs a subscription keeps open at once. Past it, a
/// reading that would open another pair is dropped and counted in
/// [`LiveBuckets::overflow`]; the open ones keep aggregating.
pub const MAX_OPEN: usize = 10_000;
pub const DEFAULT_GRACE_MS: i64 = 2_000;
pub const MAX_GRACE_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq)]
pub struct BucketSpec {
    pub bucket_ms: i64,
    pub aggs: Vec<Agg>,
    pub group: Vec<String>,
    pub grace_ms: i64,
}

pub type SpecErrors = BTreeMap<String, String>;

impl BucketSpec {
    /// Reads `{"bucket": "1m", "agg": ["avg(temp)", "count()"],
    /// "group": ["device"], "grace": "2s"}`; `agg` and `group` may also be
    /// comma-separated strings. `grace` defaults to 2s, at most 1h.
    pub fn parse(json: &Json) -> Result<BucketSpec, SpecErrors> {
        let mut errors = SpecErrors::new();
        let Some(object) = json.as_object() else {
            errors.insert("bucket".into(), "the subscription needs an object".into());
            return Err(errors);
        };
        for key in object.keys() {
            if !["bucket", "agg", "group", "grace"].contains(&key.as_str()) {
                errors.insert(key.clone(), "unknown; use bucket, agg, group, grace".into());
            }
        }
        let bucket_ms = match object.get("bucket").and_then(Json::as_str) {
            Some(text) => parse_bucket(text.trim()).unwrap_or_else(|e| {
                errors.insert("bucket".into(), e);
                0
            }),
            None => {
                errors.insert("bucket".into(), "required, a string such as \"1m\"".into());
                0
            }
        };
        let aggs = match strings(object.get("agg")) {
            Some(items) => parse_agg_list(items.iter().copied()).unwrap_or_else(|e| {
                errors.insert("agg".into(), e);
                Vec::new()
            }),
            None => {
                errors.insert(
                    "agg".into(),
                    "required, a list such as [\"count()\"]".into(),
                );
                Vec::new()
            }
        };
        let group = match object.get("group") {
            None | Some(Json::Null) => Vec::new(),
            other => match strings(other) {
                Some(items) => parse_group(items.iter().copied()).unwrap_or_else(|e| {
                    errors.insert("group".into(), e);
                    Vec::new()
                }),
                None => {
                    errors.insert("group".into(), "a list of field names".into());
                    Vec::new()
                }
            },
        };
        let grace_ms = match object.get("grace") {
            None | Some(Json::Null) => DEFAULT_GRACE_MS,
            Some(value) => match value.as_str().map(str::trim).and_then(parse_span) {
                Some(ms) if (0..=MAX_GRACE_MS).contains(&ms) => ms,
                _ => {
                    errors.insert(
                        "grace".into(),
                        "a span from 0s to 1h, such as \"2s\"".into(),
                    );
                    0
                }
            },
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BucketSpec {
            bucket_ms,
            aggs,
            group,
            grace_ms,
        })
    }
}

/// A list of strings, or one comma-separated string.
fn strings(value: Option<&Json>) -> Option<Vec<&str>> {
    match value? {
        Json::String(s) => Some(s.split(',').collect()),
        Json::Array(items) => items.iter().map(Json::as_str).collect(),
        _ => None,
    }
}

pub struct LiveBuckets {
    spec: BucketSpec,
    series_field: String,
    plan: AggPlan,
    slots: AggSlots,
    /// Open buckets by (start, group): closing walks them in t order.
    open: BTreeMap<(i64, Vec<GroupVal>), u32>,
    /// Buckets ending at or before this are closed.
    closed_until: i64,
    late: u64,
    overflow: u64,
}

impl LiveBuckets {
    pub fn new(spec: BucketSpec, series_field: &str) -> LiveBuckets {
        let plan = AggPlan::new(&spec.aggs);
        LiveBuckets {
            spec: BucketSpec {
                // A spec built by hand could hold 0, which cannot bucket.
                bucket_ms: spec.bucket_ms.max(1),
                ..spec
            },
            series_field: series_field.to_owned(),
            slots: AggSlots::new(&plan),
            plan,
            open: BTreeMap::new(),
            closed_until: i64::MIN,
            late: 0,
            overflow: 0,
        }
    }

    pub fn spec(&self) -> &BucketSpec {
        &self.spec
    }

    pub fn add(&mut self, r: &Reading) {
        let Some(t) = bucket_start(r.time, self.spec.bucket_ms) else {
            self.late += 1;
            return;
        };
        if t.saturating_add(self.spec.bucket_ms) <= self.closed_until {
            self.late += 1;
            return;
        }
        let key = (t, group_key(r, &self.spec.group, &self.series_field));
        let slot = match self.open.get(&key) {
            Some(&slot) => slot,
            None if self.open.len() >= MAX_OPEN => {
                self.overflow += 1;
                return;
            }
            None => {
                let slot = self.slots.alloc();
                self.open.insert(key, slot);
                slot
            }
        };
        self.slots
            .add_reading(slot, &self.plan, r, &self.series_field);
    }

    /// Closes every open bucket whose end plus grace is at or before
    /// `now_ms`, and returns them in t order (groups in group order within
    /// one t). From then on readings for those buckets, or any earlier
    /// one, are late.
    pub fn close_due(&mut self, now_ms: i64) -> Vec<Bucket> {
        let cutoff = now_ms.saturating_sub(self.spec.grace_ms);
        self.closed_until = self.closed_until.max(cutoff);
        let mut out = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            let t = entry.key().0;
            if t.saturating_add(self.spec.bucket_ms) > self.closed_until {
                break;
            }
            let ((t, key), slot) = entry.remove_entry();
            out.push(Bucket {
                t,
                group: group_json(&self.spec.group, &key),
                values: self.slots.values(slot, &self.plan),
            });
            self.slots.release(slot);
        }
        out
    }

    /// The start of the oldest bucket still open at `now_ms`: a
    /// subscription made then is seeded with the readings from here on.
    pub fn open_from(&self, now_ms: i64) -> i64 {
        let cutoff = now_ms.saturating_sub(self.spec.grace_ms);
        bucket_start(cutoff, self.spec.bucket_ms).unwrap_or(i64::MIN)
    }

    /// Folds in buckets built elsewhere from other readings of the same
    /// subscription (the stored readings a new subscription is seeded
    /// with), as if each of their readings had been added here. Nothing is
    /// closed by this; [`LiveBuckets::close_due`] sends them in t order.
    pub fn absorb(&mut self, earlier: LiveBuckets) {
        self.late += earlier.late;
        self.overflow += earlier.overflow;
        for (key, their_slot) in earlier.open {
            if key.0.saturating_add(self.spec.bucket_ms) <= self.closed_until {
                self.late += earlier.slots.counts[their_slot as usize];
                continue;
            }
            let slot = match self.open.get(&key) {
                Some(&slot) => slot,
                None if self.open.len() >= MAX_OPEN => {
                    self.overflow += earlier.slots.counts[their_slot as usize];
                    continue;
                }
                None => {
                    let slot = self.slots.alloc();
                    self.open.insert(key, slot);
                    slot
                }
            };
            self.slots.absorb(slot, &earlier.slots, their_slot);
        }
    }

    /// Readings dropped because their bucket had closed (or, within one
    /// bucket of `i64::MIN`, has no representable start).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Readings dropped because [`MAX_OPEN`] buckets were open.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    /// (group, bucket) pairs open now.
    pub fn open_len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests;
