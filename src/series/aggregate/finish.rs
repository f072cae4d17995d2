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

/// A group id with its buckets in time order.
type GroupRows = (u32, Vec<(i64, Source)>);

/// Groups in answer order.
type Layout = Vec<GroupRows>;

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

    /// `{"buckets":[...]}`: byte for byte what serializing
    /// `{"buckets": self.finish()?}` gives, without building the buckets.
    /// Groups are written on up to `threads` threads, each into its own
    /// buffer, joined in order.
    pub fn finish_json(mut self, threads: usize) -> Result<Vec<u8>, AggregateError> {
        let layout = self.layout()?;
        let writer = JsonWriter {
            agg: &self,
            fields: self.plan.json_fields(),
        };
        const OPEN: &[u8] = b"{\"buckets\":[";
        let parts = split_by_rows(&layout, threads.max(1));
        let mut written: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let writer = &writer;
            let (first, rest) = parts.split_first().unwrap_or((&EMPTY, &[]));
            let handles: Vec<_> = rest
                .iter()
                .map(|part| scope.spawn(move || writer.write(Vec::new(), part)))
                .collect();
            let mut written = vec![writer.write(OPEN.to_vec(), first)];
            // A writer panics only on a bug; the panic goes on here.
            written.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            );
            written
        });
        let mut rest = written.split_off(1);
        let mut out = written.pop().unwrap_or_else(|| OPEN.to_vec());
        out.reserve(rest.iter().map(Vec::len).sum::<usize>() + rest.len() + 2);
        let mut any = out.len() > OPEN.len();
        for part in rest.iter_mut().filter(|part| !part.is_empty()) {
            if any {
                out.push(b',');
            }
            any = true;
            out.append(part);
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

const EMPTY: &[GroupRows] = &[];

/// Consecutive runs of groups holding about equal numbers of buckets.
fn split_by_rows(layout: &[GroupRows], parts: usize) -> Vec<&[GroupRows]> {
    let total: usize = layout.iter().map(|(_, rows)| rows.len()).sum();
    // Small answers are not worth a thread.
    let parts = if total < 10_000 { 1 } else { parts };
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    let mut seen = 0;
    for (i, (_, rows)) in layout.iter().enumerate() {
        seen += rows.len();
        if seen * parts >= total * (out.len() + 1) && out.len() + 1 < parts {
            out.push(&layout[start..=i]);
            start = i + 1;
        }
    }
    out.push(&layout[start..]);
    out
}

struct JsonWriter<'a> {
    agg: &'a Aggregator,
    /// `"label":` and output index, in the order the values are written.
    fields: Vec<(Vec<u8>, usize)>,
}

impl JsonWriter<'_> {
    /// `out` followed by the buckets of these groups, comma separated.
    fn write(&self, mut out: Vec<u8>, groups: &[GroupRows]) -> Vec<u8> {
        let agg = self.agg;
        let total: usize = groups.iter().map(|(_, rows)| rows.len()).sum();
        // Bucket starts repeat in every group: each is formatted once.
        let mut times: HashMap<i64, Vec<u8>> = HashMap::new();
        let mut written = 0;
        for (gid, rows) in groups {
            let mut group = br#","group":"#.to_vec();
            put(
                &mut group,
                &super::group_json(&agg.query.group, &agg.groups[*gid as usize]),
            );
            group.extend_from_slice(br#","values":{"#);
            for &(t, source) in rows {
                if written > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"t":"#);
                let time = times.entry(t).or_insert_with(|| {
                    let mut bytes = Vec::new();
                    put(&mut bytes, &crate::clock::format_ms(t));
                    bytes
                });
                out.extend_from_slice(time);
                out.extend_from_slice(&group);
                for (i, (key, field)) in self.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    match source {
                        Source::Slot(slot) => {
                            agg.slots.write_value(slot, &agg.plan, *field, &mut out)
                        }
                        Source::Empty(prev) => agg.plan.write_filled(
                            *field,
                            &agg.query.fill,
                            prev,
                            &agg.slots,
                            &mut out,
                        ),
                    }
                }
                out.extend_from_slice(b"}}");
                written += 1;
                // Sized once from the first buckets, rather than doubling
                // (and copying) a buffer of many megabytes a dozen times.
                if written == 64 {
                    out.reserve((out.len() / 64 + 1) * (total - written) * 9 / 8);
                }
            }
        }
        out
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
