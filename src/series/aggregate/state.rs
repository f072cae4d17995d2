//! What one bucket of one group accumulates, shared by the query
//! aggregator and live buckets: a compiled plan of the fields to read, and
//! slot storage in flat arrays so the columnar path touches a few cache
//! lines per reading.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::{Agg, AggFn, Fill};
use crate::series::{Reading, Value};

/// A group field's value. Groups sort by these: null, booleans, ints,
/// numbers, text. Non-finite numbers group as null (JSON has no NaN).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GroupVal {
    Null,
    Bool(bool),
    Int(i64),
    Num(OrdF64),
    Text(Box<str>),
}

/// An f64 that is equal, hashed and ordered by its bits' total order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OrdF64(pub f64);

impl PartialEq for OrdF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for OrdF64 {}
impl std::hash::Hash for OrdF64 {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}
impl PartialOrd for OrdF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl GroupVal {
    pub(crate) fn of(value: Option<&Value>) -> GroupVal {
        match value {
            None => GroupVal::Null,
            Some(Value::Number(x)) if x.is_finite() => GroupVal::Num(OrdF64(*x)),
            Some(Value::Number(_)) => GroupVal::Null,
            Some(Value::Int(i)) => GroupVal::Int(*i),
            Some(Value::Text(s)) => GroupVal::Text(s.as_str().into()),
            Some(Value::Bool(b)) => GroupVal::Bool(*b),
        }
    }

    pub(crate) fn to_json(&self) -> Json {
        match self {
            GroupVal::Null => Json::Null,
            GroupVal::Bool(b) => Json::Bool(*b),
            GroupVal::Int(i) => Json::from(*i),
            GroupVal::Num(x) => num_json(x.0),
            GroupVal::Text(s) => Json::String(s.to_string()),
        }
    }
}

/// The group key of a reading; the series field reads `Reading::series`.
pub(crate) fn group_key(r: &Reading, group: &[String], series_field: &str) -> Vec<GroupVal> {
    group
        .iter()
        .map(|name| {
            if name == series_field {
                GroupVal::Text(r.series.as_str().into())
            } else {
                GroupVal::of(r.fields.get(name))
            }
        })
        .collect()
}

pub(crate) fn group_json(group: &[String], key: &[GroupVal]) -> serde_json::Map<String, Json> {
    group
        .iter()
        .zip(key)
        .map(|(name, v)| (name.clone(), v.to_json()))
        .collect()
}

/// A first/last value. Text is shared so taking a new pick per reading
/// does not allocate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Num(f64),
    Int(i64),
    Text(Arc<str>),
    Bool(bool),
}

impl Val {
    fn to_json(&self) -> Json {
        match self {
            Val::Num(x) => num_json(*x),
            Val::Int(i) => Json::from(*i),
            Val::Text(s) => Json::String(s.to_string()),
            Val::Bool(b) => Json::Bool(*b),
        }
    }
}

pub(crate) fn num_json(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

#[derive(Debug, Clone)]
pub(crate) struct Pick {
    pub time: i64,
    pub seq: u64,
    pub value: Val,
}

/// Count, sum, min and max of the finite numeric values of one field:
/// NaN and ±inf are left out as in the block summary, so both answer
/// alike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumAcc {
    n: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl NumAcc {
    const EMPTY: NumAcc = NumAcc {
        n: 0,
        sum: 0.0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
    };

    /// Folds in the statistics of values accumulated elsewhere (a block
    /// summary, which leaves out non-finite values too).
    pub(crate) fn merge(&mut self, n: u64, sum: f64, min: f64, max: f64) {
        if n > 0 {
            self.n += n;
            self.sum += sum;
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
    }

    #[inline]
    pub(crate) fn add(&mut self, x: f64) {
        if x.is_finite() {
            self.n += 1;
            self.sum += x;
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
    }
}

enum Out {
    Count,
    Present(usize),
    Sum(usize),
    Avg(usize),
    Min(usize),
    Max(usize),
    First(usize),
    Last(usize),
}

/// Which fields a query reads, each once however many functions use it.
pub(crate) struct Plan {
    pub nums: Vec<String>,
    pub present: Vec<String>,
    pub picks: Vec<String>,
    outs: Vec<(String, Out)>,
}

impl Plan {
    pub(crate) fn new(aggs: &[Agg]) -> Plan {
        fn index(list: &mut Vec<String>, name: &str) -> usize {
            list.iter().position(|n| n == name).unwrap_or_else(|| {
                list.push(name.to_owned());
                list.len() - 1
            })
        }
        let mut plan = Plan {
            nums: Vec::new(),
            present: Vec::new(),
            picks: Vec::new(),
            outs: Vec::new(),
        };
        for agg in aggs {
            let out = match (&agg.func, agg.field.as_deref()) {
                (AggFn::Count, None) => Out::Count,
                (_, None) => continue,
                (AggFn::Count, Some(f)) => Out::Present(index(&mut plan.present, f)),
                (AggFn::Sum, Some(f)) => Out::Sum(index(&mut plan.nums, f)),
                (AggFn::Avg, Some(f)) => Out::Avg(index(&mut plan.nums, f)),
                (AggFn::Min, Some(f)) => Out::Min(index(&mut plan.nums, f)),
                (AggFn::Max, Some(f)) => Out::Max(index(&mut plan.nums, f)),
                (AggFn::First, Some(f)) => Out::First(index(&mut plan.picks, f)),
                (AggFn::Last, Some(f)) => Out::Last(index(&mut plan.picks, f)),
            };
            plan.outs.push((agg.label(), out));
        }
        plan
    }

    /// The keys of a bucket's values (`"avg(temp)":`) in the order and
    /// number the map of `Slots::values` serializes them (by label, each
    /// once), with the index of the output each one shows.
    pub(crate) fn json_fields(&self) -> Vec<(Vec<u8>, usize)> {
        let mut fields: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, (label, _)) in self.outs.iter().enumerate() {
            fields.insert(label, i);
        }
        fields
            .into_iter()
            .map(|(label, i)| {
                let mut key = Vec::new();
                super::finish::put(&mut key, label);
                key.push(b':');
                (key, i)
            })
            .collect()
    }

    /// Writes output `field` of a bucket nothing fell into, as `filled`
    /// gives it; `prev` is the slot whose values `fill=prev` repeats.
    pub(crate) fn write_filled(
        &self,
        field: usize,
        fill: &Fill,
        prev: Option<u32>,
        slots: &Slots,
        out: &mut Vec<u8>,
    ) {
        match (&self.outs[field].1, fill) {
            (Out::Count | Out::Present(_), _) => out.push(b'0'),
            (_, Fill::Value(x)) => super::finish::put(out, x),
            (_, Fill::Prev) => match prev {
                Some(slot) => slots.write_value(slot, self, field, out),
                None => out.extend_from_slice(b"null"),
            },
            (_, Fill::None | Fill::Null) => out.extend_from_slice(b"null"),
        }
    }

    /// The values of a bucket nothing fell into. Counts are 0 whatever the
    /// fill: a count of nothing is known.
    pub(crate) fn filled(
        &self,
        fill: &Fill,
        prev: Option<&BTreeMap<String, Json>>,
    ) -> BTreeMap<String, Json> {
        self.outs
            .iter()
            .map(|(label, out)| {
                let value = match (out, fill) {
                    (Out::Count | Out::Present(_), _) => Json::from(0u64),
                    (_, Fill::Value(x)) => num_json(*x),
                    (_, Fill::Prev) => prev
                        .and_then(|p| p.get(label))
                        .cloned()
                        .unwrap_or(Json::Null),
                    (_, Fill::None | Fill::Null) => Json::Null,
                };
                (label.clone(), value)
            })
            .collect()
    }
}

/// Accumulators of many buckets, one slot per (group, bucket), in flat
/// arrays indexed `slot * width + field`.
pub(crate) struct Slots {
    widths: (usize, usize, usize),
    pub counts: Vec<u64>,
    pub nums: Vec<NumAcc>,
    pub present: Vec<u64>,
    pub firsts: Vec<Option<Pick>>,
    pub lasts: Vec<Option<Pick>>,
    free: Vec<u32>,
}

impl Slots {
    pub(crate) fn new(plan: &Plan) -> Slots {
        Slots {
            widths: (plan.nums.len(), plan.present.len(), plan.picks.len()),
            counts: Vec::new(),
            nums: Vec::new(),
            present: Vec::new(),
            firsts: Vec::new(),
            lasts: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Slots in use.
    pub(crate) fn len(&self) -> usize {
        self.counts.len() - self.free.len()
    }

    pub(crate) fn alloc(&mut self) -> u32 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let (nn, np, nk) = self.widths;
        // `resize`, not `extend(repeat_n(..))`: a query of a day of minutes
        // makes 144,000 slots, and the extends were 10% of its time.
        self.counts.push(0);
        self.nums.resize(self.nums.len() + nn, NumAcc::EMPTY);
        self.present.resize(self.present.len() + np, 0);
        if nk > 0 {
            self.firsts.resize(self.firsts.len() + nk, None);
            self.lasts.resize(self.lasts.len() + nk, None);
        }
        // Slot counts are capped far below u32::MAX by the callers.
        (self.counts.len() - 1) as u32
    }

    pub(crate) fn release(&mut self, slot: u32) {
        let s = slot as usize;
        let (nn, np, nk) = self.widths;
        self.counts[s] = 0;
        self.nums[s * nn..(s + 1) * nn].fill(NumAcc::EMPTY);
        self.present[s * np..(s + 1) * np].fill(0);
        self.firsts[s * nk..(s + 1) * nk].fill(None);
        self.lasts[s * nk..(s + 1) * nk].fill(None);
        self.free.push(slot);
    }

    #[inline]
    pub(crate) fn num(&mut self, slot: usize, field: usize) -> &mut NumAcc {
        &mut self.nums[slot * self.widths.0 + field]
    }

    /// Adds each row's value of numeric field `field` to the row's slot;
    /// `slots[row]` is `u32::MAX` for a row that adds to none.
    pub(crate) fn add_numbers(&mut self, field: usize, slots: &[u32], values: &[f64]) {
        let width = self.widths.0;
        for (&slot, &x) in slots.iter().zip(values) {
            if slot != u32::MAX {
                self.nums[slot as usize * width + field].add(x);
            }
        }
    }

    #[inline]
    pub(crate) fn mark_present(&mut self, slot: usize, field: usize) {
        self.present[slot * self.widths.1 + field] += 1;
    }

    /// Offers a value for first and last; `value` is only called when it
    /// is taken, so a text value is shared only then.
    #[inline]
    pub(crate) fn pick(
        &mut self,
        slot: usize,
        field: usize,
        time: i64,
        seq: u64,
        value: impl Fn() -> Val,
    ) {
        let i = slot * self.widths.2 + field;
        if self.firsts[i]
            .as_ref()
            .is_none_or(|p| (time, seq) < (p.time, p.seq))
        {
            self.firsts[i] = Some(Pick {
                time,
                seq,
                value: value(),
            });
        }
        if self.lasts[i]
            .as_ref()
            .is_none_or(|p| (time, seq) > (p.time, p.seq))
        {
            self.lasts[i] = Some(Pick {
                time,
                seq,
                value: value(),
            });
        }
    }

    /// Adds one reading to a slot: the row-at-a-time path.
    pub(crate) fn add_reading(&mut self, slot: u32, plan: &Plan, r: &Reading, series_field: &str) {
        let s = slot as usize;
        self.counts[s] += 1;
        let get = |name: &str| -> Option<Val> {
            if name == series_field {
                return Some(Val::Text(r.series.as_str().into()));
            }
            r.fields.get(name).map(|v| match v {
                Value::Number(x) => Val::Num(*x),
                Value::Int(i) => Val::Int(*i),
                Value::Text(t) => Val::Text(t.as_str().into()),
                Value::Bool(b) => Val::Bool(*b),
            })
        };
        for (f, name) in plan.nums.iter().enumerate() {
            if name == series_field {
                continue;
            }
            match r.fields.get(name) {
                Some(Value::Number(x)) => self.num(s, f).add(*x),
                Some(Value::Int(i)) => self.num(s, f).add(*i as f64),
                _ => {}
            }
        }
        for (f, name) in plan.present.iter().enumerate() {
            if name == series_field || r.fields.contains_key(name) {
                self.mark_present(s, f);
            }
        }
        for (f, name) in plan.picks.iter().enumerate() {
            if let Some(v) = get(name) {
                self.pick(s, f, r.time, r.seq, || v.clone());
            }
        }
    }

    /// Folds slot `from_slot` of `from` (same plan) into `slot`: counts and
    /// sums add, min/max/first/last keep the winner, so a bucket built in
    /// two parts answers as if built in one.
    pub(crate) fn absorb(&mut self, slot: u32, from: &Slots, from_slot: u32) {
        let (s, o) = (slot as usize, from_slot as usize);
        let (nn, np, nk) = self.widths;
        self.counts[s] += from.counts[o];
        for f in 0..nn {
            let theirs = from.nums[o * nn + f];
            self.num(s, f)
                .merge(theirs.n, theirs.sum, theirs.min, theirs.max);
        }
        for f in 0..np {
            self.present[s * np + f] += from.present[o * np + f];
        }
        for f in 0..nk {
            for pick in [&from.firsts[o * nk + f], &from.lasts[o * nk + f]]
                .into_iter()
                .flatten()
            {
                self.pick(s, f, pick.time, pick.seq, || pick.value.clone());
            }
        }
    }

    pub(crate) fn values(&self, slot: u32, plan: &Plan) -> BTreeMap<String, Json> {
        let s = slot as usize;
        let (nn, np, nk) = self.widths;
        let num = |f: usize| &self.nums[s * nn + f];
        let known = |f: usize, x: f64| {
            if num(f).n == 0 {
                Json::Null
            } else {
                num_json(x)
            }
        };
        plan.outs
            .iter()
            .map(|(label, out)| {
                let value = match *out {
                    Out::Count => Json::from(self.counts[s]),
                    Out::Present(f) => Json::from(self.present[s * np + f]),
                    Out::Sum(f) => known(f, num(f).sum),
                    Out::Avg(f) => known(f, num(f).sum / num(f).n as f64),
                    Out::Min(f) => known(f, num(f).min),
                    Out::Max(f) => known(f, num(f).max),
                    Out::First(f) => pick_json(&self.firsts[s * nk + f]),
                    Out::Last(f) => pick_json(&self.lasts[s * nk + f]),
                };
                (label.clone(), value)
            })
            .collect()
    }
}

impl Slots {
    /// Writes output `field` of a slot as JSON, as `values` gives it.
    pub(crate) fn write_value(&self, slot: u32, plan: &Plan, field: usize, out: &mut Vec<u8>) {
        use super::finish::put;
        let s = slot as usize;
        let (nn, np, nk) = self.widths;
        let num = |f: usize| &self.nums[s * nn + f];
        let mut known = |f: usize, x: f64| {
            if num(f).n == 0 {
                out.extend_from_slice(b"null");
            } else {
                // Non-finite becomes null, as `num_json` makes it.
                put(out, &x);
            }
        };
        match plan.outs[field].1 {
            Out::Count => put(out, &self.counts[s]),
            Out::Present(f) => put(out, &self.present[s * np + f]),
            Out::Sum(f) => known(f, num(f).sum),
            Out::Avg(f) => known(f, num(f).sum / num(f).n as f64),
            Out::Min(f) => known(f, num(f).min),
            Out::Max(f) => known(f, num(f).max),
            Out::First(f) => write_pick(&self.firsts[s * nk + f], out),
            Out::Last(f) => write_pick(&self.lasts[s * nk + f], out),
        }
    }
}

fn write_pick(pick: &Option<Pick>, out: &mut Vec<u8>) {
    use super::finish::put;
    match pick.as_ref().map(|p| &p.value) {
        None => out.extend_from_slice(b"null"),
        Some(Val::Num(x)) => put(out, x),
        Some(Val::Int(i)) => put(out, i),
        Some(Val::Text(t)) => put(out, &**t),
        Some(Val::Bool(b)) => put(out, b),
    }
}

fn pick_json(pick: &Option<Pick>) -> Json {
    pick.as_ref().map_or(Json::Null, |p| p.value.to_json())
}
