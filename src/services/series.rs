//! Series collections: ingest, one reading, listing by time, the newest
//! reading per source, and dropping old data, free of any transport.
//! REST, the line-protocol endpoint and anything else that writes readings
//! call [`ingest`], so the schema, the create rule and `Idempotency-Key`
//! are one code path; every read goes through [`crate::visibility`] like a
//! record's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::access::{Action, AdminPermit, Caller};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::record::drop_system_fields;
use crate::model::Collection;
use crate::series::Reading;
use crate::state::AppState;
use crate::store::writer::{Append, Mutation, Truncation};
use crate::visibility::{self, Sighted};

mod aggregate;
#[cfg(test)]
mod budget_tests;
mod in_order;
mod lines;
mod query;

pub use aggregate::{aggregate, Buckets};
pub use lines::{ingest_lines, ingest_messages};
pub use query::{latest, list, LatestParams, SeriesListParams};

/// Bad items reported at most for one batch.
const MAX_REPORTED_ITEMS: usize = 100;
/// Batches larger than this are checked on a parser thread ([`crate::parse_pool`]), so a big
/// upload does not hold an async worker.
const INLINE_ITEMS: usize = 64;
/// `Idempotency-Key`s longer than this are refused.
const MAX_KEY_LEN: usize = 200;

pub fn series_collection(state: &AppState, name: &str) -> ApiResult<Arc<Collection>> {
    let collection = state
        .store
        .catalog()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("collection {name} not found")))?;
    if !collection.is_series() {
        return Err(ApiError::bad_request(format!(
            "{name} is not a series collection"
        )));
    }
    Ok(collection)
}

/// What an ingest asks for besides its readings.
#[derive(Debug, Default, Clone)]
pub struct IngestOptions {
    pub idempotency_key: Option<String>,
    /// Answer with the stored readings (`?return=items`).
    pub return_items: bool,
}

/// Checks one item and turns it into a reading.
fn prepare(
    collection: &Collection,
    caller: &Caller,
    item: Value,
    received_ms: i64,
    judge_each: bool,
) -> Result<Reading, ApiError> {
    let Value::Object(mut data) = item else {
        return Err(ApiError::bad_request("each reading must be a JSON object"));
    };
    if !matches!(data.get("id"), None | Some(Value::Null)) {
        return Err(ApiError::validation(
            "invalid reading",
            &[(
                "id".to_owned(),
                "readings get their id from the server; to retry safely, send an Idempotency-Key"
                    .to_owned(),
            )]
            .into(),
        ));
    }
    let owner = match data.get("owner") {
        Some(Value::String(owner)) if caller.is_admin() => Some(owner.clone()),
        Some(Value::Null) if caller.is_admin() => None,
        Some(_) if caller.is_admin() => {
            return Err(ApiError::validation(
                "invalid reading",
                &[("owner".to_owned(), "must be a string or null".to_owned())].into(),
            ))
        }
        _ => caller.principal.id(),
    };
    drop_system_fields(&mut data);
    let reading = collection
        .reading_from(data, owner, received_ms)
        .map_err(|errors| ApiError::validation("invalid reading", &errors))?;
    if judge_each {
        let record = collection.reading_json(&reading);
        if caller
            .authorize(collection, Action::Create, &record)
            .is_none()
        {
            return Err(ApiError::forbidden(
                "the create rule does not allow this reading",
            ));
        }
    }
    Ok(reading)
}

/// A batch being checked item by item as its parser hands them over: all
/// or nothing, with each bad item's reasons.
struct Checking<'a> {
    collection: &'a Collection,
    caller: Caller<'a>,
    received_ms: i64,
    /// Whether the create rule needs each reading (else it was decided
    /// once for the batch).
    judge_each: bool,
    max_batch: usize,
    seen: usize,
    readings: Vec<Reading>,
    bad: BTreeMap<String, Value>,
    /// The first refusal in full: a batch of one answers with it as it is.
    first_refusal: Option<ApiError>,
}

impl<'a> Checking<'a> {
    fn new(
        collection: &'a Collection,
        principal: &'a Principal,
        max_batch: usize,
    ) -> ApiResult<Checking<'a>> {
        let caller = Caller::new(principal);
        // A create rule about the caller alone (`'device' in @user.roles`)
        // is decided once for the batch, not once per reading.
        let judge_each = match Action::Create.rule(collection) {
            _ if caller.is_admin() => false,
            Some(rule) if rule.fields().is_empty() => {
                if !caller.passes(rule, &Map::new()) {
                    return Err(ApiError::forbidden(
                        "the create rule does not allow these readings",
                    ));
                }
                false
            }
            _ => true,
        };
        Ok(Checking {
            collection,
            caller,
            received_ms: crate::clock::now_ms(),
            judge_each,
            max_batch,
            seen: 0,
            readings: Vec::new(),
            bad: BTreeMap::new(),
            first_refusal: None,
        })
    }

    /// Checks the next item. An error stops the batch at once (too many
    /// items, a forbidden reading); an invalid reading is noted and the
    /// rest are still checked, to report them together.
    fn push(&mut self, item: Value) -> ApiResult<()> {
        let index = self.seen;
        self.seen += 1;
        if self.seen > self.max_batch {
            return Err(ApiError::payload_too_large(format!(
                "a batch holds at most {} readings",
                self.max_batch
            )));
        }
        if self.bad.len() >= MAX_REPORTED_ITEMS {
            // The batch is refused already; only counting is left.
            return Ok(());
        }
        let checked = prepare(
            self.collection,
            &self.caller,
            item,
            self.received_ms,
            self.judge_each,
        );
        match checked {
            Ok(reading) if self.bad.is_empty() => self.readings.push(reading),
            // Nothing will be written: keep no more readings.
            Ok(_) => self.readings = Vec::new(),
            Err(e) if e.is_forbidden() => {
                return Err(ApiError::forbidden(format!("item {index}: {}", e.message)))
            }
            Err(e) => {
                self.readings = Vec::new();
                let reasons = e
                    .details
                    .clone()
                    .unwrap_or(Value::String(e.message.clone()));
                self.bad.insert(index.to_string(), reasons);
                self.first_refusal.get_or_insert(e);
            }
        }
        Ok(())
    }

    fn finish(self) -> ApiResult<Vec<Reading>> {
        let total = self.seen;
        if total == 0 {
            return Err(ApiError::bad_request("the batch is empty"));
        }
        if self.bad.is_empty() {
            return Ok(self.readings);
        }
        match self.first_refusal {
            Some(refusal) if total == 1 => Err(refusal),
            _ => Err(ApiError::validation_details(
                format!(
                    "{} of {total} readings are invalid; none were written",
                    self.bad.len()
                ),
                json!({ "items": self.bad }),
            )),
        }
    }
}

/// Hands each item of a batch to the check as it is parsed (see
/// [`crate::services::items`]).
pub type ItemSink<'a> = &'a mut dyn FnMut(Value) -> ApiResult<()>;

/// Appends readings, all or nothing: 201 `{"count", "first_seq",
/// "last_seq"}` (and `items` when asked). A request repeating an earlier
/// one's `Idempotency-Key` gets the earlier answer and writes nothing.
/// `arrived_bytes` is the size of what the items were parsed from, which
/// the ingest budget counts (see [`ingest_parsed`]).
pub async fn ingest(
    state: &AppState,
    principal: &Principal,
    name: &str,
    items: Vec<Value>,
    arrived_bytes: usize,
    options: IngestOptions,
) -> ApiResult<Value> {
    let on_blocking_thread = items.len() > INLINE_ITEMS;
    let parse = move |sink: ItemSink| items.into_iter().try_for_each(sink);
    let batch = Batch {
        parse,
        arrived_bytes,
        on_blocking_thread,
    };
    ingest_parsed(state, principal, name, batch, options).await
}

/// A batch of readings as it arrived: `parse` hands its items to a sink
/// one by one, `arrived_bytes` is its size on the wire.
pub struct Batch<P> {
    pub parse: P,
    pub arrived_bytes: usize,
    /// Parse and check on a parser thread (a large batch), not on the
    /// async worker.
    pub on_blocking_thread: bool,
}

/// [`ingest`] of the items `batch.parse` hands to its sink one by one (a
/// request body's parser): each is checked as soon as it is parsed, and
/// its JSON freed. With `on_blocking_thread`, parsing and checking run as
/// one task on a parser thread, so a batch holds one thread, not two in
/// turn. From its parse until the writer has stored it, the batch counts
/// its arrived bytes against the ingest budget ([`crate::ingest_budget`]),
/// so the readings in memory stay within a share of `cache_mb` however
/// many clients post at once.
pub async fn ingest_parsed(
    state: &AppState,
    principal: &Principal,
    name: &str,
    batch: Batch<impl FnOnce(ItemSink) -> ApiResult<()> + Send + 'static>,
    options: IngestOptions,
) -> ApiResult<Value> {
    let Batch {
        parse,
        arrived_bytes,
        on_blocking_thread,
    } = batch;
    let collection = series_collection(state, name)?;
    let caller = Caller::new(principal);
    if !caller.may_ever(&collection, Action::Create) {
        return Err(ApiError::forbidden("you may not add readings here"));
    }
    let idempotency = match options.idempotency_key {
        Some(key) if key.is_empty() || key.len() > MAX_KEY_LEN => {
            return Err(ApiError::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
            )))
        }
        Some(key) => Some((principal.id().unwrap_or_default(), key)),
        None => None,
    };
    let max_batch = state.live.get().max_batch;
    let _admitted = state
        .ingest_budget
        .admit(arrived_bytes)
        .await
        .map_err(ApiError::internal)?;
    let (checked_for, caller_principal) = (collection.clone(), principal.clone());
    let prepare = move || {
        let mut checking = Checking::new(&checked_for, &caller_principal, max_batch)?;
        parse(&mut |item| checking.push(item))?;
        checking.finish()
    };
    let prepared = if on_blocking_thread {
        state
            .parsers
            .run(prepare)
            .await
            .map_err(ApiError::internal)??
    } else {
        prepare()?
    };
    append(
        state,
        principal,
        collection,
        prepared,
        idempotency,
        options.return_items,
    )
    .await
}

/// Appends readings already checked against `collection`'s schema and
/// create rule (the line-protocol endpoint builds them itself).
pub async fn append(
    state: &AppState,
    principal: &Principal,
    collection: Arc<Collection>,
    readings: Vec<Reading>,
    idempotency: Option<(String, String)>,
    return_items: bool,
) -> ApiResult<Value> {
    let mut kept = return_items.then(|| readings.clone());
    let mutation = Mutation::Append(Append {
        collection: collection.clone(),
        readings,
        actor: principal.id(),
        idempotency,
    });
    let committed = state.writer.submit(mutation).await?;
    let (first, last) = committed.seqs.unwrap_or((1, 0));
    let mut answer = json!({
        "count": last + 1 - first,
        "first_seq": first,
        "last_seq": last,
    });
    if let Some(mut items) = kept.take() {
        if committed.repeated {
            let store = state.store.clone();
            let id = collection.id;
            items = tokio::task::spawn_blocking(move || store.readings_between(id, first, last))
                .await
                .map_err(ApiError::internal)??;
        } else {
            for (seq, reading) in (first..).zip(items.iter_mut()) {
                reading.seq = seq;
            }
        }
        let caller = Caller::new(principal);
        answer["items"] = items
            .iter()
            .map(|r| Value::Object(seen_by(&caller, &collection, r)))
            .collect();
    }
    Ok(answer)
}

/// What the caller sees of a reading it may view.
fn seen_by(caller: &Caller, collection: &Collection, reading: &Reading) -> Map<String, Value> {
    let full = collection.reading_json(reading);
    Sighted::new(collection, &full)
        .as_seen_by(caller.is_admin())
        .clone()
}

/// One reading the caller may view; anything else is `not_found`.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    name: &str,
    id: &str,
) -> ApiResult<Value> {
    let collection = series_collection(state, name)?;
    let not_found = || ApiError::not_found(format!("record {id} not found"));
    let seq = crate::ids::reading_seq(id).ok_or_else(not_found)?;
    let store = state.store.clone();
    let collection_id = collection.id;
    let reading = tokio::task::spawn_blocking(move || store.reading(collection_id, seq))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(not_found)?;
    let caller = Caller::new(principal);
    let full = collection.reading_json(&reading);
    let sighted = Sighted::new(&collection, &full);
    if !visibility::may_view(&caller.viewer, &collection, &sighted, &caller.now) {
        return Err(not_found());
    }
    Ok(Value::Object(sighted.as_seen_by(caller.is_admin()).clone()))
}

/// `DELETE /records?before=TIME`: drops every reading older than `before`
/// (admins only); subscribers get one `expired` notice.
pub async fn delete_before(
    state: &AppState,
    _admin: &AdminPermit,
    name: &str,
    before: &str,
) -> ApiResult<()> {
    let collection = series_collection(state, name)?;
    let before_ms = query::parse_time(before).ok_or_else(|| {
        ApiError::bad_request("before must be an RFC 3339 time or milliseconds since the epoch")
    })?;
    let mutation = Mutation::Truncate {
        collection,
        truncation: Truncation {
            before_ms: Some(before_ms),
            exact: true,
            max_bytes: None,
        },
    };
    state.writer.submit(mutation).await?;
    Ok(())
}
