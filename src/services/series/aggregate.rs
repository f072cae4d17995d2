//! `aggregate`: time buckets over what the caller may list. Blocks outside
//! the range are skipped by their summary; the rest are decoded a column at
//! a time. When neither the caller's rules nor a filter look at the
//! readings (an admin, or `@user != null`), whole blocks go to the
//! aggregator as they are; otherwise each reading is judged by
//! [`visibility::sees`], like a record, and the block goes with a mask.

use std::collections::HashMap;

use serde::Serialize;

use super::series_collection;
use crate::access::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::Collection;
use crate::rules::Expr;
use crate::series::{AggregateQuery, Aggregator, BlockReader, Bucket};
use crate::services::records::parse_filter;
use crate::state::AppState;
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
        let judge = Judge::new(&collection, &caller.viewer, &caller.now, filter.as_ref());
        run(&store, &collection, query, &judge)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Buckets { buckets })
}

/// `{"buckets": [...]}`, serialized straight from the buckets: a day of
/// minute buckets for a hundred sources is 144,000 of them, and a JSON tree
/// in between cost more than the aggregation.
#[derive(Serialize)]
pub struct Buckets {
    buckets: Vec<Bucket>,
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

fn run(
    store: &Store,
    collection: &Collection,
    query: AggregateQuery,
    judge: &Judge,
) -> ApiResult<Vec<Bucket>> {
    let series_field = collection
        .series
        .as_ref()
        .map(|s| s.series_field.as_str())
        .unwrap_or_default();
    let from = query.from.unwrap_or(i64::MIN);
    let to = query.to.unwrap_or(i64::MAX);
    let mut aggregator = Aggregator::new(query, series_field);
    if matches!(judge, Judge::All(false)) {
        return finish(aggregator);
    }
    let corrupt = |e| ApiError::internal(format!("series block: {e}"));
    for info in store.series_blocks_between(collection.id, from, to)? {
        // A block inside one bucket may be answered by its summary alone.
        if matches!(judge, Judge::All(_)) && aggregator.add_summary(&info.summary) {
            continue;
        }
        let Some(bytes) = store.series_block(collection.id, info.first_seq)? else {
            continue;
        };
        let reader = BlockReader::open(&bytes).map_err(corrupt)?;
        match judge {
            Judge::All(_) => aggregator.add_block(&reader, None).map_err(corrupt)?,
            Judge::Each {
                collection,
                viewer,
                now,
                filter,
            } => {
                let keep: Vec<bool> = reader
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
                    .collect();
                aggregator
                    .add_block(&reader, Some(&keep))
                    .map_err(corrupt)?;
            }
        }
    }
    finish(aggregator)
}

fn finish(aggregator: Aggregator) -> ApiResult<Vec<Bucket>> {
    aggregator
        .finish()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}
