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
use crate::store::Store;
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
    /// Removed since the scan (retention, a merge).
    Gone,
}

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
    let from = query.from.unwrap_or(i64::MIN);
    let to = query.to.unwrap_or(i64::MAX);
    let mut aggregator = Aggregator::new(query, series_field);
    if !matches!(judge, Judge::All(false)) {
        let spans = store.series_spans_between(collection.id, from, to)?;
        let plan = aggregator.block_plan().clone();
        let prepare = |i: usize| prepare(store, collection.id, &spans[i], &plan, judge);
        in_order(spans.len(), decode_threads(), prepare, |block| {
            match block {
                Prepared::Summary(summary) => {
                    if !aggregator.add_summary_stats(&summary) {
                        return Err(ApiError::internal(
                            "a summary could not stand for its block",
                        ));
                    }
                }
                Prepared::Block(block, keep) => aggregator.add_decoded(block, keep.as_deref()),
                Prepared::Gone => {}
            }
            Ok(())
        })?;
    }
    aggregator
        .finish_json(decode_threads())
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Reads what the aggregator needs of one block: its summary alone when
/// that answers for it, else the needed columns (and, when readings are
/// judged one by one, which ones the caller sees).
fn prepare<'a>(
    store: &Store,
    collection_id: u32,
    span: &'a BlockSpan,
    plan: &BlockPlan,
    judge: &Judge,
) -> ApiResult<Prepared<'a>> {
    if matches!(judge, Judge::All(_)) && plan.summary_may_answer(span.min_time, span.max_time) {
        return Ok(Prepared::Summary(span.stats()?));
    }
    let corrupt = |e| ApiError::internal(format!("series block: {e}"));
    let Some(bytes) = store.series_block(collection_id, span.first_seq)? else {
        return Ok(Prepared::Gone);
    };
    let reader = BlockReader::open(&bytes).map_err(corrupt)?;
    let keep = match judge {
        Judge::All(_) => None,
        Judge::Each {
            collection,
            viewer,
            now,
            filter,
        } => Some(
            reader
                .readings()
                .map_err(corrupt)?
                .iter()
                .map(|reading| {
                    let full = collection.reading_json(reading);
                    let sighted = Sighted::new(collection, &full);
                    visibility::sees(
                        viewer,
                        collection,
                        Reach::Collection,
                        &sighted,
                        *filter,
                        now,
                    )
                })
                .collect(),
        ),
    };
    let block = plan.decode(&reader).map_err(corrupt)?;
    Ok(Prepared::Block(block, keep))
}
