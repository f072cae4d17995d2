//! Answering a whole block from its summary, without decoding it.

use super::{Aggregator, GroupVal};
use crate::series::{Summary, SummaryStats};

impl Aggregator {
    /// Adds a block from its summary alone when that gives the same
    /// answer as its readings: the block lies in one bucket inside
    /// `[from, to)`, the query groups by nothing or by the series field
    /// only, and asks only for `count()`, `sum`, `avg`, `min` and `max`.
    /// Returns false, having added nothing, otherwise; the caller then
    /// decodes the block. Only for blocks the caller does not filter.
    ///
    /// Sums then add per-series block sums rather than single values, so
    /// they may differ from a reading-by-reading sum in the last bits.
    pub fn add_summary(&mut self, summary: &Summary) -> bool {
        self.add_summary_stats(&summary.stats())
    }

    /// [`Aggregator::add_summary`] from statistics read in place
    /// ([`Summary::stats_of`]).
    pub fn add_summary_stats(&mut self, summary: &SummaryStats<'_>) -> bool {
        let by_series = !self.query.group.is_empty();
        if self.overflow
            || summary.series.is_empty()
            || !self
                .block_plan
                .summary_may_answer(summary.min_time, summary.max_time)
        {
            return false;
        }
        for series in &summary.series {
            let gid = if by_series {
                match self.series_groups.get(series.name) {
                    Some(&id) => id,
                    None => {
                        let id = self.group_id(vec![GroupVal::Text(series.name.into())]);
                        self.series_groups.insert(series.name.into(), id);
                        id
                    }
                }
            } else {
                self.group_id(Vec::new())
            };
            let Some(slot) = self.slot_for(gid, summary.min_time) else {
                // Past the bucket cap the query has failed already.
                return true;
            };
            self.slots.counts[slot] += series.count;
            for (f, name) in self.plan.nums.iter().enumerate() {
                let stats = series
                    .fields
                    .binary_search_by(|s| s.name.cmp(name))
                    .ok()
                    .map(|i| &series.fields[i]);
                if let Some(s) = stats {
                    self.slots.nums[slot * self.plan.nums.len() + f]
                        .merge(s.count, s.sum, s.min, s.max);
                }
            }
        }
        true
    }
}
