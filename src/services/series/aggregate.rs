//! `aggregate`: time buckets over what the caller may list. Blocks outside
//! the range are skipped by their summary; the rest are decoded a column at
//! a time. When neither the caller's rules nor a filter look at the
//! readings (an admin, or `@user != null`), whole blocks go to the
//! aggregator as they are; otherwise each reading is judged by
//! [`visibility::sees`], like a record, and the block goes with a mask.

use std::collections::HashMap;

use super::in_order::in_order;
use super::series_collection;
use crate::access::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::Collection;
use crate::rules::Expr;
use crate::series::{
    AggregateQuery, Aggregator, BlockPlan, BlockReader, DecodedBlock, SummaryStats,
};
use crate::services::records::parse_filter;
use crate::state::AppState;
use crate::store::series::BlockSpan;
use crate::store::{Store, StoreError};
use crate::visibility::{self, Reach, Sighted, Viewer};

/// `GET /api/collections/{c}/aggregate?from&to&bucket&agg&group&fill&filter`.
pub async fn aggregate(
    state: &AppState,
    principal: &Principal,
    name: &str,
    mut params: HashMap<String, String>,
) -> ApiResult<Buckets> {
    let collection = series_collection(state, name)?;
    let filter = parse_filter(params.remove("filter").as_deref())?;
    let query = AggregateQuery::parse(&params)
        .map_err(|errors| ApiError::validation("invalid aggregate query", &errors))?;
    let store = state.store.clone();
    let principal = principal.clone();
    let buckets = tokio::task::spawn_blocking(move || {
        let caller = Caller::new(&principal);
        if visibility::rules_for(&caller.viewer, &collection, Reach::Collection).is_none() {
            return Err(ApiError::forbidden("you may not list this collection"));
        }
        let fields = query.aggs.iter().filter_map(|a| a.field.as_deref());
        let fields = fields.chain(query.group.iter().map(String::as_str));
        if let Some(field) = visibility::unreadable(&caller.viewer, &collection, fields) {
            return Err(ApiError::forbidden(format!(
                "`{field}` is a protected field: only admins may aggregate it"
            )));
        }
        let judge = Judge::new(&collection, &caller.viewer, &caller.now, filter.as_ref());
        run(&store, &collection, query, &judge)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Buckets { json: buckets })
}

/// `{"buckets": [...]}` as JSON bytes, written by the aggregator itself: a
/// day of minute buckets for a hundred sources is 144,000 of them, and
/// building and serializing a `Bucket` each cost more than the aggregation.
pub struct Buckets {
    pub json: Vec<u8>,
}

/// How readings are judged: all alike, or one by one.
enum Judge<'a> {
    /// Every reading passes (`true`) or none does.
    All(bool),
    Each {
        collection: &'a Collection,
        viewer: &'a Viewer,
        now: &'a str,
        filter: Option<&'a Expr>,
    },
}

impl<'a> Judge<'a> {
    fn new(
        collection: &'a Collection,
        viewer: &'a Viewer,
        now: &'a str,
        filter: Option<&'a Expr>,
    ) -> Judge<'a> {
        // Rules about the caller alone and no filter on readings: one
        // answer for every reading.
        match visibility::sees_every(viewer, collection, Reach::Collection, filter, now) {
            Some(all) => Judge::All(all),
            None => Judge::Each {
                collection,
                viewer,
                now,
                filter,
            },
        }
    }
}

/// A block as the aggregator takes it, prepared on any thread.
enum Prepared<'a> {
    Summary(SummaryStats<'a>),
    Block(DecodedBlock, Option<Vec<bool>>),
    /// Not the block its summary described (removed or rewritten since
    /// the summaries were read): the readings from this seq on are still
    /// to add.
    Moved(u64),
}

/// Why adding blocks stopped early.
enum Halt {
    Failed(ApiError),
    /// A block moved; the readings from this seq on are still to add.
    Moved(u64),
}

impl From<ApiError> for Halt {
    fn from(e: ApiError) -> Halt {
        Halt::Failed(e)
    }
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Halt {
        Halt::Failed(e.into())
    }
}

/// How many times the blocks still to add are looked up again after one
/// moved, before the aggregate gives up with 503.
const READ_ATTEMPTS: usize = 8;

/// Threads a query decodes blocks and writes its answer on: the cores
/// there are, up to a few (other requests want theirs).
fn decode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

fn run(
    store: &Store,
    collection: &Collection,
    query: AggregateQuery,
    judge: &Judge,
) -> ApiResult<Vec<u8>> {
    let series_field = collection
        .series
        .as_ref()
        .map(|s| s.series_field.as_str())
        .unwrap_or_default();
    let range = (query.from.unwrap_or(i64::MIN), query.to.unwrap_or(i64::MAX));
    let mut aggregator = Aggregator::new(query, series_field);
    if !matches!(judge, Judge::All(false)) {
        add_from(store, collection, range, 0, &mut aggregator, judge)?;
    }
    aggregator
        .finish_json(decode_threads())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Adds the readings in `range` with seqs from `floor` on. The writer
/// does not wait for readers: it merges the newest small blocks into one
/// under the lowest key among them, and retention drops or rewrites the
/// oldest. Blocks are added in seq order and never overlap, so when one
/// is found changed since its summary was read, everything below its
/// first seq is added already: the summaries are read again and the
/// rest added from there, the block now holding that seq cut to the
/// readings from it on. Nothing is added twice or left out, and only the
/// moved tail is read again.
fn add_from(
    store: &Store,
    collection: &Collection,
    (from, to): (i64, i64),
    mut floor: u64,
    aggregator: &mut Aggregator,
    judge: &Judge,
) -> ApiResult<()> {
    for _ in 0..READ_ATTEMPTS {
        let spans = store.series_spans_between(collection.id, from, to)?;
        let start = match spans.partition_point(|span| span.first_seq < floor) {
            // The block before may hold seqs from `floor` on.
            0 => 0,
            after => after - 1,
        };
        match add_blocks(store, collection, &spans[start..], floor, aggregator, judge) {
            Ok(()) => return Ok(()),
            Err(Halt::Failed(e)) => return Err(e),
            Err(Halt::Moved(at)) => floor = floor.max(at),
        }
    }
    Err(ApiError::unavailable(
        "the series' newest blocks kept being rewritten during the aggregate; try again",
    ))
}

/// Adds the blocks of `spans`, in seq order, counting only readings with
/// seqs from `floor` on.
fn add_blocks(
    store: &Store,
    collection: &Collection,
    spans: &[BlockSpan],
    floor: u64,
    aggregator: &mut Aggregator,
    judge: &Judge,
) -> Result<(), Halt> {
    let plan = aggregator.block_plan().clone();
    let prepare = |i: usize| prepare(store, collection.id, &spans[i], floor, &plan, judge);
    in_order(spans.len(), decode_threads(), prepare, |block| {
        match block {
            Prepared::Summary(summary) => {
                if !aggregator.add_summary_stats(&summary) {
                    return Err(Halt::Failed(ApiError::internal(
                        "a summary could not stand for its block",
                    )));
                }
            }
            Prepared::Block(block, keep) => aggregator.add_decoded(block, keep.as_deref()),
            Prepared::Moved(at) => return Err(Halt::Moved(at)),
        }
        Ok(())
    })
}

/// Reads what the aggregator needs of one block: its summary alone when
/// that answers for it, else the needed columns and which readings count
/// (those the caller sees, with seqs from `floor` on), unless all do.
fn prepare<'a>(
    store: &Store,
    collection_id: u32,
    span: &'a BlockSpan,
    floor: u64,
    plan: &BlockPlan,
    judge: &Judge,
) -> Result<Prepared<'a>, Halt> {
    let whole = span.first_seq >= floor;
    if whole
        && matches!(judge, Judge::All(_))
        && plan.summary_may_answer(span.min_time, span.max_time)
    {
        return Ok(Prepared::Summary(span.stats()?));
    }
    let corrupt = |e| Halt::Failed(ApiError::internal(format!("series block: {e}")));
    let bytes = store.series_block(collection_id, span.first_seq)?;
    let Some(bytes) = bytes.filter(|bytes| span.describes(bytes)) else {
        return Ok(Prepared::Moved(span.first_seq));
    };
    let reader = BlockReader::open(&bytes).map_err(corrupt)?;
    let mut keep: Option<Vec<bool>> = None;
    if !whole {
        let seqs = reader.seqs().map_err(corrupt)?;
        keep = Some(seqs.iter().map(|seq| *seq >= floor).collect());
    }
    if let Judge::Each {
        collection,
        viewer,
        now,
        filter,
    } = judge
    {
        let readings = reader.readings().map_err(corrupt)?;
        let mut seen = keep.unwrap_or_else(|| vec![true; readings.len()]);
        for (keep, reading) in seen.iter_mut().zip(&readings) {
            if *keep {
                let full = collection.reading_json(reading);
                let sighted = Sighted::new(collection, &full);
                *keep = visibility::sees(
                    viewer,
                    collection,
                    Reach::Collection,
                    &sighted,
                    *filter,
                    now,
                );
            }
        }
        keep = Some(seen);
    }
    let block = plan.decode(&reader).map_err(corrupt)?;
    Ok(Prepared::Block(block, keep))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::services::series::series_collection;
    use crate::services::testing::{admin, state_with_blocks, stop};

    /// Blocks merged while an aggregate reads them: the blocks not added
    /// yet are looked up again, the merged block cut to what is left, so
    /// every reading counts once (skipping the vanished blocks counted 3
    /// of 7; reading the merged block whole would count 9).
    #[tokio::test]
    async fn blocks_merged_during_an_aggregate_count_once() {
        // Fewer blocks than the writer merges by itself: only this test
        // merges them.
        let (_dir, state) = state_with_blocks(7).await;
        let collection = series_collection(&state, "readings").expect("the collection");
        let all = (i64::MIN, i64::MAX);
        let blocks: Vec<_> = state
            .store
            .series_blocks(collection.id)
            .collect::<Result<_, _>>()
            .expect("blocks");
        assert_eq!(blocks.len(), 7, "a block per ingest");
        let spans = state
            .store
            .series_spans_between(collection.id, all.0, all.1)
            .expect("summaries");
        let params = [("bucket", "1d"), ("agg", "count(),sum(temp)")];
        let params = params.map(|(k, v)| (k.to_owned(), v.to_owned()));
        let query = AggregateQuery::parse(&HashMap::from(params)).expect("a query");
        let mut aggregator = Aggregator::new(query, "device");
        // Readings judged one by one, so blocks are read, not their
        // summaries (stale summaries alone describe the state before the
        // merge, consistently).
        let principal = admin();
        let caller = Caller::new(&principal);
        let judge = Judge::Each {
            collection: &collection,
            viewer: &caller.viewer,
            now: &caller.now,
            filter: None,
        };

        let added = add_blocks(
            &state.store,
            &collection,
            &spans[..3],
            0,
            &mut aggregator,
            &judge,
        );
        assert!(added.is_ok(), "the first three blocks, before the merge");
        let merged = state.store.merge_blocks(collection.id, &blocks[1..]);
        assert!(merged.expect("merged"), "blocks 1 to 6 are now one");
        let added = add_blocks(
            &state.store,
            &collection,
            &spans[3..],
            0,
            &mut aggregator,
            &judge,
        );
        let Err(Halt::Moved(at)) = added else {
            panic!("the fourth block is gone: the read says so");
        };
        assert_eq!(
            at, spans[3].first_seq,
            "the readings from the fourth on are left"
        );
        add_from(&state.store, &collection, all, at, &mut aggregator, &judge).expect("the rest");

        let json = aggregator.finish_json(1).expect("buckets");
        let body: Value = serde_json::from_slice(&json).expect("JSON");
        let bucket = &body["buckets"][0];
        assert_eq!(bucket["values"]["count()"], json!(7), "{body}");
        assert_eq!(bucket["values"]["sum(temp)"], json!(21.0), "{body}");
        stop(state).await;
    }
}
