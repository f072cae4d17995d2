//! How much of series batches is in memory at once, bounded by `cache_mb`.
//!
//! A batch of readings costs memory from its parse until the writer has
//! stored it: the readings built from its JSON (about three times the
//! JSON's size) wait in the writer's queue behind the write group being
//! fsynced. Each client posting batches keeps one such batch in memory, so
//! without a bound the server's footprint grows with the number of
//! clients: with `cache_mb = 8`, peak RSS went from 60-62 MiB at 4 clients
//! to 65-69 MiB at 8 and 73-75 MiB at 16. A gateway that sets a small
//! `cache_mb` says memory matters more than the last readings per second,
//! so the request bodies being parsed or written are held to a share of
//! it; a batch waits (as the bytes it arrived in) until there is room.
//! With the default `cache_mb` the share is room for dozens of 1000-reading
//! batches, more than two cores keep busy.

use tokio::sync::{AcquireError, Semaphore, SemaphorePermit};

/// `cache_mb` ÷ this is the request-body bytes admitted at once: with
/// 8 MiB, four JSON batches of 1000 readings (about 75 KB each). Measured
/// with 8 clients posting such batches and `cache_mb = 8` (one run each,
/// 20 s): peak RSS 60-64 MiB at 511,000-577,000 readings/s in seven runs;
/// ÷ 20 (five batches) 62-65 MiB at 554,000-623,000 in seven; no budget
/// 63-68 MiB at 594,000-719,000 in ten; ÷ 16 (six batches) 69 MiB.
const CACHE_SHARE: u64 = 24;
/// Never less than one ordinary batch.
const MIN_BYTES: u32 = 64 * 1024;

pub struct IngestBudget {
    permits: Semaphore,
    bytes: u32,
}

/// A batch's place in the budget, given back on drop.
pub type Admitted<'a> = SemaphorePermit<'a>;

impl IngestBudget {
    /// The budget that goes with a storage cache of `cache_bytes`.
    pub fn for_cache(cache_bytes: u64) -> IngestBudget {
        let share = (cache_bytes / CACHE_SHARE).min(u64::from(u32::MAX)) as u32;
        IngestBudget::with_bytes(share.max(MIN_BYTES))
    }

    pub fn with_bytes(bytes: u32) -> IngestBudget {
        IngestBudget {
            permits: Semaphore::new(bytes as usize),
            bytes,
        }
    }

    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Waits until `bytes` more fit, first come first served. A batch
    /// larger than the whole budget waits until it has the budget to
    /// itself, so it is admitted, alone.
    /// Fails only if the budget were closed, which nothing does.
    pub async fn admit(&self, bytes: usize) -> Result<Admitted<'_>, AcquireError> {
        let wanted = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.bytes);
        self.permits.acquire_many(wanted).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn admitted_soon<'a>(budget: &'a IngestBudget, bytes: usize) -> Option<Admitted<'a>> {
        tokio::time::timeout(Duration::from_millis(50), budget.admit(bytes))
            .await
            .ok()
            .map(|admitted| admitted.expect("never closed"))
    }

    #[tokio::test]
    async fn batches_wait_until_what_is_in_memory_leaves_room() {
        let budget = IngestBudget::with_bytes(300);
        let first = admitted_soon(&budget, 100).await.expect("room");
        let _second = admitted_soon(&budget, 150).await.expect("room");
        assert!(admitted_soon(&budget, 100).await.is_none(), "350 > 300");
        drop(first);
        assert!(admitted_soon(&budget, 100).await.is_some());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_budget_is_admitted_alone() {
        let budget = IngestBudget::with_bytes(300);
        let small = admitted_soon(&budget, 10).await.expect("room");
        assert!(admitted_soon(&budget, 10_000).await.is_none());
        drop(small);
        let big = admitted_soon(&budget, 10_000)
            .await
            .expect("the whole budget");
        assert!(admitted_soon(&budget, 1).await.is_none());
        drop(big);
    }

    #[test]
    fn the_share_follows_the_cache_setting() {
        assert_eq!(IngestBudget::for_cache(8 << 20).bytes(), 349_525);
        assert_eq!(IngestBudget::for_cache(64 << 20).bytes(), 2_796_202);
        assert_eq!(IngestBudget::for_cache(1 << 20).bytes(), MIN_BYTES);
    }
}
