//! The columnar path: a block's needed columns decoded once, unboxed,
//! then one tight loop over its rows.
//!
//! Decoding ([`BlockPlan::decode`]) reads only the query and owns what it
//! returns, so another thread may decode the next blocks while the
//! aggregator adds this one ([`Aggregator::add_decoded`]), in block order:
//! the same additions in the same order give the same floats.

use std::collections::HashMap;
use std::sync::Arc;

use super::state::{GroupVal, Val};
use super::{bucket_start, AggregateQuery, Aggregator, BlockReader, DecodeError, TypedValues};

/// What a query reads of a block: its columns, and whether a block's
/// summary can stand for it.
#[derive(Debug, Clone)]
pub struct BlockPlan {
    query: AggregateQuery,
    series_field: String,
    nums: Vec<String>,
    present: Vec<String>,
    picks: Vec<String>,
}

/// A block's columns as a query needs them, decoded and owned.
pub struct DecodedBlock {
    times: Vec<i64>,
    groups: BlockGroups,
    seqs: Vec<u64>,
    nums: Vec<Vec<f64>>,
    present: Vec<Vec<bool>>,
    picks: Vec<PickColumn>,
}

impl Aggregator {
    /// Adds a block's readings, those with `keep[row]` true when a mask is
    /// given (rows past the mask's end are not kept), decoding only the
    /// columns the query reads.
    pub fn add_block(
        &mut self,
        block: &BlockReader<'_>,
        keep: Option<&[bool]>,
    ) -> Result<(), DecodeError> {
        if self.overflow {
            return Ok(());
        }
        let decoded = self.block_plan.decode(block)?;
        self.add_decoded(decoded, keep);
        Ok(())
    }

    /// What the query reads of a block, to decode blocks elsewhere.
    pub fn block_plan(&self) -> &BlockPlan {
        &self.block_plan
    }

    /// Adds a block decoded by [`BlockPlan::decode`], as `add_block` would.
    pub fn add_decoded(&mut self, block: DecodedBlock, keep: Option<&[bool]>) {
        if self.overflow {
            return;
        }
        let DecodedBlock {
            times,
            mut groups,
            seqs,
            nums,
            present,
            picks,
        } = block;
        if let BlockGroups::ByRow {
            ids,
            keys: LocalKeys::Series(dict),
            ..
        } = &mut groups
        {
            // Ids resolved for the last block hold for this one; those
            // still unresolved are resolved when a kept row needs them.
            if *dict == self.last_series.0 {
                ids.copy_from_slice(&self.last_series.1);
            }
        }
        let floor = i64::MIN + self.query.bucket_ms;
        let bounded = self.query.from.is_some() || self.query.to.is_some();
        // Each row's slot first, then each column at a time into the slots:
        // tight loops, and still each slot's values in row order.
        let mut slots = Vec::with_capacity(times.len());
        for (row, &time) in times.iter().enumerate() {
            if keep.is_some_and(|k| k.get(row) != Some(&true))
                || time < floor
                || (bounded && !self.in_range(time))
            {
                slots.push(SKIP);
                continue;
            }
            let gid = match &mut groups {
                BlockGroups::One(id) => {
                    if *id == UNRESOLVED {
                        *id = self.group_id(Vec::new());
                    }
                    *id
                }
                BlockGroups::ByRow { rows, ids, keys } => {
                    let local = rows[row] as usize;
                    if ids[local] == UNRESOLVED {
                        ids[local] = self.resolve(keys, local);
                    }
                    ids[local]
                }
            };
            match self.slot_for(gid, time) {
                Some(slot) => {
                    self.slots.counts[slot] += 1;
                    slots.push(slot as u32);
                }
                None => slots.push(SKIP),
            }
        }
        if let BlockGroups::ByRow {
            ids,
            keys: LocalKeys::Series(dict),
            ..
        } = groups
        {
            self.last_series = (dict, ids);
        }
        for (f, column) in nums.iter().enumerate() {
            self.slots.add_numbers(f, &slots, column);
        }
        for (f, column) in present.iter().enumerate() {
            for (&slot, &here) in slots.iter().zip(column) {
                if slot != SKIP && here {
                    self.slots.mark_present(slot as usize, f);
                }
            }
        }
        for (f, column) in picks.iter().enumerate() {
            for (row, &slot) in slots.iter().enumerate() {
                if slot == SKIP {
                    continue;
                }
                if let Some(value) = column.at(row) {
                    self.slots
                        .pick(slot as usize, f, times[row], seqs[row], || value.clone());
                }
            }
        }
    }

    fn resolve(&mut self, keys: &LocalKeys, local: usize) -> u32 {
        match keys {
            LocalKeys::Series(dict) => {
                let name = &dict[local];
                if let Some(&id) = self.series_groups.get(name) {
                    return id;
                }
                let id = self.group_id(vec![GroupVal::Text(name.clone())]);
                self.series_groups.insert(name.clone(), id);
                id
            }
            LocalKeys::Keys(keys) => self.group_id(keys[local].clone()),
        }
    }
}

impl BlockPlan {
    pub(crate) fn new(query: &AggregateQuery, series_field: &str, plan: &super::Plan) -> BlockPlan {
        BlockPlan {
            query: query.clone(),
            series_field: series_field.to_owned(),
            nums: plan.nums.clone(),
            present: plan.present.clone(),
            picks: plan.picks.clone(),
        }
    }

    /// Whether a block whose readings lie in `[min_time, max_time]` may be
    /// answered by its summary ([`Aggregator::add_summary`]): it lies in
    /// one bucket inside `[from, to)`, the query groups by nothing or by
    /// the series field only, and asks only for `count()`, `sum`, `avg`,
    /// `min` and `max` of fields other than the series.
    pub fn summary_may_answer(&self, min_time: i64, max_time: i64) -> bool {
        let q = &self.query;
        let grouping_fits = match q.group.as_slice() {
            [] => true,
            [one] => *one == self.series_field,
            _ => false,
        };
        let in_range = |time: i64| {
            time >= i64::MIN + q.bucket_ms
                && q.from.is_none_or(|f| time >= f)
                && q.to.is_none_or(|t| time < t)
        };
        grouping_fits
            && self.picks.is_empty()
            && self.present.is_empty()
            && !self.nums.contains(&self.series_field)
            && in_range(min_time)
            && in_range(max_time)
            && bucket_start(min_time, q.bucket_ms) == bucket_start(max_time, q.bucket_ms)
    }

    /// Decodes the columns the query reads.
    pub fn decode(&self, block: &BlockReader<'_>) -> Result<DecodedBlock, DecodeError> {
        Ok(DecodedBlock {
            times: block.times()?,
            groups: self.block_groups(block)?,
            seqs: if self.picks.is_empty() {
                Vec::new()
            } else {
                block.seqs()?
            },
            nums: self
                .nums
                .iter()
                .map(|name| self.numeric_column(block, name))
                .collect::<Result<_, _>>()?,
            present: self
                .present
                .iter()
                .map(|name| self.presence_column(block, name))
                .collect::<Result<_, _>>()?,
            picks: self
                .picks
                .iter()
                .map(|name| self.pick_column(block, name))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Each row's local group id, per block: a block's distinct group
    /// keys are resolved to group ids once, not once per reading, and only
    /// when a kept reading has them (a group must not appear, empty, from
    /// readings the caller filtered out).
    fn block_groups(&self, block: &BlockReader<'_>) -> Result<BlockGroups, DecodeError> {
        let group = &self.query.group;
        if group.is_empty() {
            return Ok(BlockGroups::One(UNRESOLVED));
        }
        if group.len() == 1 && group[0] == self.series_field {
            let (dict, rows) = block.series_indexed()?;
            return Ok(BlockGroups::ByRow {
                rows,
                ids: vec![UNRESOLVED; dict.len()],
                keys: LocalKeys::Series(dict.into_iter().map(Box::from).collect()),
            });
        }
        // A row's local id is its key's position in `keys`, built field by
        // field.
        let mut rows = vec![0u32; block.len()];
        let mut keys: Vec<Vec<GroupVal>> = vec![Vec::new()];
        for name in group {
            let values = self.group_values(block, name)?;
            let mut next: HashMap<(u32, &GroupVal), u32> = HashMap::new();
            let mut next_keys: Vec<Vec<GroupVal>> = Vec::new();
            for (row, value) in rows.iter_mut().zip(&values) {
                *row = *next.entry((*row, value)).or_insert_with(|| {
                    let mut key = keys[*row as usize].clone();
                    key.push(value.clone());
                    next_keys.push(key);
                    (next_keys.len() - 1) as u32
                });
            }
            keys = next_keys;
        }
        Ok(BlockGroups::ByRow {
            rows,
            ids: vec![UNRESOLVED; keys.len()],
            keys: LocalKeys::Keys(keys),
        })
    }

    fn group_values(
        &self,
        block: &BlockReader<'_>,
        name: &str,
    ) -> Result<Vec<GroupVal>, DecodeError> {
        if name == self.series_field {
            let (dict, rows) = block.series_indexed()?;
            return Ok(rows
                .iter()
                .map(|&i| GroupVal::Text(dict[i as usize].into()))
                .collect());
        }
        Ok(block
            .field(name)?
            .iter()
            .map(|v| GroupVal::of(v.as_ref()))
            .collect())
    }

    /// One f64 per row; NaN where the field is missing or not numeric,
    /// which the accumulator skips like any non-finite value.
    fn numeric_column(&self, block: &BlockReader<'_>, name: &str) -> Result<Vec<f64>, DecodeError> {
        let n = block.len();
        if name == self.series_field {
            return Ok(vec![f64::NAN; n]);
        }
        let mut out: Option<Vec<f64>> = None;
        for column in block.field_typed(name)? {
            match column.values {
                // The common case: a field present in every reading is
                // already the dense column.
                TypedValues::Number(values) if values.len() == n && out.is_none() => {
                    out = Some(values)
                }
                TypedValues::Number(values) => {
                    let dense = out.get_or_insert_with(|| vec![f64::NAN; n]);
                    for (&row, x) in column.rows.iter().zip(values) {
                        dense[row as usize] = x;
                    }
                }
                TypedValues::Int(values) => {
                    let dense = out.get_or_insert_with(|| vec![f64::NAN; n]);
                    for (&row, i) in column.rows.iter().zip(values) {
                        dense[row as usize] = i as f64;
                    }
                }
                TypedValues::Text { .. } | TypedValues::Bool(_) => {}
            }
        }
        Ok(out.unwrap_or_else(|| vec![f64::NAN; n]))
    }

    fn presence_column(
        &self,
        block: &BlockReader<'_>,
        name: &str,
    ) -> Result<Vec<bool>, DecodeError> {
        let n = block.len();
        if name == self.series_field {
            return Ok(vec![true; n]);
        }
        let mut out = vec![false; n];
        for column in block.field_typed(name)? {
            for row in column.rows {
                out[row as usize] = true;
            }
        }
        Ok(out)
    }

    fn pick_column(&self, block: &BlockReader<'_>, name: &str) -> Result<PickColumn, DecodeError> {
        let n = block.len();
        let mut column = PickColumn {
            rows: vec![None; n],
        };
        if name == self.series_field {
            let (dict, rows) = block.series_indexed()?;
            let texts: Vec<Val> = dict.iter().map(|s| Val::Text(Arc::from(*s))).collect();
            for (slot, i) in column.rows.iter_mut().zip(rows) {
                *slot = Some(texts[i as usize].clone());
            }
            return Ok(column);
        }
        for typed in block.field_typed(name)? {
            let values: Vec<Val> = match typed.values {
                TypedValues::Number(v) => v.into_iter().map(Val::Num).collect(),
                TypedValues::Int(v) => v.into_iter().map(Val::Int).collect(),
                TypedValues::Bool(v) => v.into_iter().map(Val::Bool).collect(),
                TypedValues::Text { dict, indices } => {
                    let texts: Vec<Val> = dict.iter().map(|s| Val::Text(Arc::from(*s))).collect();
                    indices.iter().map(|&i| texts[i as usize].clone()).collect()
                }
            };
            for (&row, value) in typed.rows.iter().zip(values) {
                column.rows[row as usize] = Some(value);
            }
        }
        Ok(column)
    }
}

const UNRESOLVED: u32 = u32::MAX;
/// A row that adds to no slot (not kept, out of range, past the cap).
const SKIP: u32 = u32::MAX;

enum BlockGroups {
    /// Ungrouped: the one group's id once resolved.
    One(u32),
    /// `ids[rows[row]]` is the row's group id once resolved from
    /// `keys[rows[row]]`.
    ByRow {
        rows: Vec<u32>,
        ids: Vec<u32>,
        keys: LocalKeys,
    },
}

enum LocalKeys {
    /// The block's series dictionary.
    Series(Vec<Box<str>>),
    Keys(Vec<Vec<GroupVal>>),
}

struct PickColumn {
    rows: Vec<Option<Val>>,
}

impl PickColumn {
    fn at(&self, row: usize) -> Option<&Val> {
        self.rows[row].as_ref()
    }
}
