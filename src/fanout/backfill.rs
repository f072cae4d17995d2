//! Seeding bucket subscriptions from stored readings.
//!
//! A bucket subscription that only counted what arrived after it was made
//! would send a first bucket missing everything before, and one that
//! resumes would leave a hole where it was away. So when a subscription
//! is registered at position `upto`, the hub holds its buckets back while
//! this module aggregates, off the hub thread, the stored readings with
//! `seq <= upto` of every bucket still open, and of the buckets that closed
//! since the resume position (at most [`MAX_RESUMED_BUCKETS`] bucket widths
//! back). The hub folds that in beside the live readings (`seq > upto`), so
//! every reading counts exactly once, then closes and sends the buckets as
//! usual. Each stored reading is judged by the same [`ChangeView::seen`] as
//! a live one.

use std::sync::Arc;

use super::render::{self, ChangeView};
use super::target::Target;
use super::{ConnId, Realtime, Subscription};
use crate::clock;
use crate::model::Collection;
use crate::series::{self, LiveBuckets};
use crate::store::change::Change;
use crate::store::{Store, StoreError};
use crate::visibility::Viewer;

/// How far back, in bucket widths before the oldest open bucket, a
/// resumed subscription gets the buckets it missed; older ones are the
/// `aggregate` endpoint's to answer. This bounds the readings one
/// resume reads.
pub const MAX_RESUMED_BUCKETS: i64 = 10;

/// Seeds each bucket subscription of `subscribed`, registered at `upto`
/// (and resuming from `since`), on a blocking thread; the hub holds their
/// buckets until then.
pub fn start(
    realtime: &Realtime,
    store: &Store,
    conn: ConnId,
    viewer: &Viewer,
    subscribed: &[(Target, Subscription)],
    since: Option<u64>,
    upto: u64,
) {
    for (target, subscription) in subscribed {
        let (Target::Collection(collection), Some(spec)) = (target, &subscription.aggregate) else {
            continue;
        };
        let (realtime, store, viewer) = (realtime.clone(), store.clone(), viewer.clone());
        let (collection, subscription) = (Arc::clone(collection), subscription.clone());
        let series_field = collection
            .series
            .as_ref()
            .map_or(String::new(), |s| s.series_field.clone());
        let empty = LiveBuckets::new((**spec).clone(), &series_field);
        tokio::task::spawn_blocking(move || {
            let seed = seed(
                &store,
                &collection,
                &subscription,
                &viewer,
                since,
                upto,
                clock::now_ms(),
            )
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, topic = %subscription.topic, "cannot seed buckets");
                empty
            });
            realtime.seed_buckets(conn, subscription.topic, upto, seed);
        });
    }
}

/// The buckets of `subscription` built from the stored readings with
/// `seq <= upto` that fall in its open buckets at `now_ms`, or in the
/// buckets that closed after `since` was current.
pub fn seed(
    store: &Store,
    collection: &Collection,
    subscription: &Subscription,
    viewer: &Viewer,
    since: Option<u64>,
    upto: u64,
    now_ms: i64,
) -> Result<LiveBuckets, StoreError> {
    let spec = subscription
        .aggregate
        .as_deref()
        .cloned()
        .ok_or_else(|| StoreError::Corrupt("not a bucket subscription".into()))?;
    let series_field = collection
        .series
        .as_ref()
        .map_or("", |s| s.series_field.as_str());
    let mut buckets = LiveBuckets::new(spec, series_field);
    let open_from = buckets.open_from(now_ms);
    let from = match since {
        None => open_from,
        Some(since) => resumed_from(store, &buckets, since, open_from)?,
    };
    // Readings are judged as one `create` each, as the hub expands a block.
    let block = Change::append(
        collection.id,
        collection.def.name.clone(),
        (0, 0),
        now_ms,
        None,
    );
    for info in store.series_spans_between(collection.id, from, i64::MAX)? {
        if info.first_seq > upto {
            continue;
        }
        let Some(bytes) = store.series_block(collection.id, info.first_seq)? else {
            continue;
        };
        let readings: Vec<_> = series::decode(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("series block: {e}")))?
            .into_iter()
            .filter(|r| r.seq <= upto && r.time >= from)
            .collect();
        for (reading, change, fields) in render::readings_of(&block, collection, readings) {
            let view = ChangeView::reading(&change, collection, fields);
            if view.seen(Some(collection), subscription, viewer).is_some() {
                buckets.add(&reading);
            }
        }
    }
    Ok(buckets)
}

/// The start of the oldest bucket that closed after the subscriber was
/// last up to date (at `since`), within [`MAX_RESUMED_BUCKETS`] of the
/// open ones. Buckets close `grace` after their end.
fn resumed_from(
    store: &Store,
    buckets: &LiveBuckets,
    since: u64,
    open_from: i64,
) -> Result<i64, StoreError> {
    let spec = buckets.spec();
    let earliest = open_from.saturating_sub(spec.bucket_ms.saturating_mul(MAX_RESUMED_BUCKETS));
    let Some(seen_at) = store.change_time_through(since)? else {
        return Ok(earliest);
    };
    let closed_after = buckets.open_from(seen_at);
    Ok(closed_after.clamp(earliest, open_from))
}
