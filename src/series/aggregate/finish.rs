//! The answer of an aggregator: which buckets each group reports (fill
//! included) in which order, rendered as [`Bucket`]s or straight to JSON
//! bytes. A day of minute buckets for a hundred sources is 144,000
//! buckets; building a `Bucket` (a map of the group and a map of values,
//! each with owned keys) per bucket and serializing those cost several
//! times the aggregation itself, so the aggregate endpoint writes bytes.

use std::collections::HashMap;

use serde::Serialize;

use super::{bucket_start, AggregateError, Aggregator, Bucket, Fill, MAX_BUCKETS};

/// Where a reported bucket's values come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Slot(u32),
    /// Nothing fell into the bucket; the group's last non-empty slot
    /// before it, which `fill=prev` repeats.
    Empty(Option<u32>),
}

/// Group ids in answer order, each with its buckets in time order.
type Layout = Vec<(u32, Vec<(i64, Source)>)>;

impl Aggregator {
    /// Which buckets the answer holds, ordered by group (by the group
    /// values: null, booleans, ints, numbers, text, field by field) and
    /// then by `t` ascending.
    ///
    /// With a fill other than none, each group gets every bucket from the
    /// one holding `from` (or, without `from`, the first non-empty bucket
    /// of the whole query) to the one holding `to - 1` (or the last
    /// non-empty bucket of the query). An ungrouped query with `from` and
    /// `to` has its one group even when no reading matched.
    fn layout(&mut self) -> Result<Layout, AggregateError> {
        if self.overflow {
            return Err(AggregateError::TooManyBuckets);
        }
        if self.query.group.is_empty()
            && self.query.fill != Fill::None
            && self.query.from.is_some()
            && self.query.to.is_some()
        {
            self.group_id(Vec::new());
        }
        let mut by_group: Vec<Vec<(i64, u32)>> = vec![Vec::new(); self.groups.len()];
        for (slot, &(gid, t)) in self.heads.iter().enumerate() {
            by_group[gid as usize].push((t, slot as u32));
        }
        let mut order: Vec<u32> = (0..self.groups.len() as u32).collect();
        order.sort_by(|&a, &b| self.groups[a as usize].cmp(&self.groups[b as usize]));
        let b = self.query.bucket_ms;
        let range = if self.query.fill == Fill::None {
            None
        } else {
            let first = self.heads.iter().map(|h| h.1).min();
            let last = self.heads.iter().map(|h| h.1).max();
            let start = match self.query.from {
                Some(from) => bucket_start(from, b),
                None => first,
            };
            let end = match self.query.to {
                Some(to) => to.checked_sub(1).and_then(|t| bucket_start(t, b)),
                None => last,
            };
            match (start, end) {
                (Some(start), Some(end)) if start <= end => {
                    let per_group = (i128::from(end) - i128::from(start)) / i128::from(b) + 1;
                    if per_group * self.groups.len() as i128 > MAX_BUCKETS as i128 {
                        return Err(AggregateError::TooManyBuckets);
                    }
                    Some((start, end))
                }
                _ => None,
            }
        };
        let mut out = Vec::with_capacity(order.len());
        for gid in order {
            let mut slots = std::mem::take(&mut by_group[gid as usize]);
            slots.sort_unstable();
            let Some((start, end)) = range else {
                if self.query.fill == Fill::None {
                    let rows = slots
                        .into_iter()
                        .map(|(t, slot)| (t, Source::Slot(slot)))
                        .collect();
                    out.push((gid, rows));
                }
                continue;
            };
            let mut rows = Vec::new();
            let mut next = slots.into_iter().peekable();
            let mut prev: Option<u32> = None;
            let mut t = start;
            loop {
                match next.next_if(|&(st, _)| st == t) {
                    Some((_, slot)) => {
                        rows.push((t, Source::Slot(slot)));
                        prev = Some(slot);
                    }
                    None => rows.push((t, Source::Empty(prev))),
                }
                match t.checked_add(b) {
                    Some(n) if n <= end => t = n,
                    _ => break,
                }
            }
            out.push((gid, rows));
        }
        Ok(out)
    }

    /// The buckets, in the order [`Aggregator::layout`] gives.
    pub fn finish(mut self) -> Result<Vec<Bucket>, AggregateError> {
        let layout = self.layout()?;
        let mut out = Vec::new();
        for (gid, rows) in layout {
            let group = super::group_json(&self.query.group, &self.groups[gid as usize]);
            for (t, source) in rows {
                let values = match source {
                    Source::Slot(slot) => self.slots.values(slot, &self.plan),
                    Source::Empty(prev) => {
                        let prev = prev.map(|slot| self.slots.values(slot, &self.plan));
                        self.plan.filled(&self.query.fill, prev.as_ref())
                    }
                };
                out.push(Bucket {
                    t,
                    group: group.clone(),
                    values,
                });
            }
        }
        Ok(out)
    }

    /// Appends `{"buckets":[...]}` to `out`: byte for byte what serializing
    /// `{"buckets": self.finish()?}` gives, without building the buckets.
    pub fn finish_json(mut self, out: &mut Vec<u8>) -> Result<(), AggregateError> {
        let layout = self.layout()?;
        let fields = self.plan.json_fields();
        // Bucket starts repeat in every group: each is formatted once.
        let mut times: HashMap<i64, Vec<u8>> = HashMap::new();
        out.extend_from_slice(b"{\"buckets\":[");
        let mut first = true;
        for (gid, rows) in layout {
            let mut group = br#","group":"#.to_vec();
            put(
                &mut group,
                &super::group_json(&self.query.group, &self.groups[gid as usize]),
            );
            group.extend_from_slice(br#","values":{"#);
            for (t, source) in rows {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(br#"{"t":"#);
                let time = times.entry(t).or_insert_with(|| {
                    let mut bytes = Vec::new();
                    put(&mut bytes, &crate::clock::format_ms(t));
                    bytes
                });
                out.extend_from_slice(time);
                out.extend_from_slice(&group);
                for (i, (key, field)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    match source {
                        Source::Slot(slot) => self.slots.write_value(slot, &self.plan, *field, out),
                        Source::Empty(prev) => {
                            self.plan
                                .write_filled(*field, &self.query.fill, prev, &self.slots, out)
                        }
                    }
                }
                out.extend_from_slice(b"}}");
            }
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

/// Writes `value` as JSON. Writing into a `Vec` cannot fail, and the
/// values written here (numbers, strings, maps of them) always serialize.
pub(crate) fn put<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = serde_json::to_writer(out, value);
}

/// `{"buckets": [...]}` serialized from built buckets, as the endpoint
/// answered before it wrote bytes itself: what `finish_json` must equal.
#[cfg(test)]
pub(crate) fn buckets_json(buckets: &[Bucket]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Answer<'a> {
        buckets: &'a [Bucket],
    }
    let mut out = Vec::new();
    put(&mut out, &Answer { buckets });
    out
}
