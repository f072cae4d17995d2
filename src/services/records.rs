//! Records: create (one or a batch), list, get, update, delete, free of
//! any transport. REST (`http::records`) and the WebSocket record actions
//! both call these, so the access checks, validation and what a viewer
//! sees are one code path. Every operation goes through the access layer.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::access::{Action, Allowed, Caller};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::record::{drop_system_fields, merge_patch, project};
use crate::model::{Collection, Record};
use crate::rules::Expr;
use crate::state::AppState;
use crate::store::query::{parse_sort, Cursor, ListRequest};
use crate::store::writer::{Mutation, NewRecord, RecordOp, WriteError};
use crate::visibility::{self, Reach, Sighted};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// Attempts when a concurrent write moves a record or schema under us.
const WRITE_ATTEMPTS: usize = 5;
/// Bad items reported at most for one batch.
const MAX_REPORTED_ITEMS: usize = 100;

fn collection(state: &AppState, name: &str) -> ApiResult<Arc<Collection>> {
    state
        .store
        .catalog()
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("collection {name} not found")))
}

fn record_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("record {id} not found"))
}

/// Builds a record for create: checks the id, the schema and the create rule.
/// A record ready to create, with the create rule's permit.
struct Prepared {
    record: Record,
    client_chose_id: bool,
    permit: Allowed,
}

fn prepare_create(
    collection: &Collection,
    caller: &Caller,
    item: Value,
    now: &str,
) -> Result<Prepared, ApiError> {
    let Value::Object(mut data) = item else {
        return Err(ApiError::bad_request("each record must be a JSON object"));
    };
    let client_chose_id = !matches!(data.get("id"), None | Some(Value::Null));
    let id = match data.remove("id") {
        None | Some(Value::Null) => crate::ids::generate(),
        Some(Value::String(id)) if crate::ids::is_valid_record_id(&id) => id,
        Some(_) => {
            return Err(ApiError::validation(
                "invalid record",
                &[(
                    "id".to_owned(),
                    "must match ^[A-Za-z0-9_-]{1,64}$".to_owned(),
                )]
                .into(),
            ))
        }
    };
    let owner = owner_for(caller, data.get("owner"), caller.principal.id())?;
    drop_system_fields(&mut data);
    let data = collection
        .validate(data, true)
        .map_err(|errors| ApiError::validation("invalid record", &errors))?;
    let record = Record::new(&id, now, now, owner.as_deref(), 1, data);
    let permit = caller
        .authorize(collection, Action::Create, &record.fields)
        .ok_or_else(|| ApiError::forbidden("the create rule does not allow this record"))?;
    Ok(Prepared {
        record,
        client_chose_id,
        permit,
    })
}

/// `owner` is the creator's id; only admins may set it to something else.
fn owner_for(
    caller: &Caller,
    requested: Option<&Value>,
    default: Option<String>,
) -> ApiResult<Option<String>> {
    match requested {
        Some(value) if caller.is_admin() => match value {
            Value::String(owner) => Ok(Some(owner.clone())),
            Value::Null => Ok(None),
            _ => Err(ApiError::validation(
                "invalid record",
                &[("owner".to_owned(), "must be a string or null".to_owned())].into(),
            )),
        },
        _ => Ok(default),
    }
}

/// Creates one record (`is_batch` false: the answer is the record) or a
/// batch, all or nothing (the answer is `{"items": [...]}`).
pub async fn create(
    state: &AppState,
    principal: &Principal,
    name: &str,
    items: Vec<Value>,
    is_batch: bool,
) -> ApiResult<Value> {
    let max_batch = state.live.get().max_batch;
    if items.len() > max_batch {
        return Err(ApiError::payload_too_large(format!(
            "a batch holds at most {} records",
            max_batch
        )));
    }
    if is_batch && items.is_empty() {
        return Err(ApiError::bad_request("the batch is empty"));
    }
    if collection(state, name)?.is_series() {
        let options = super::series::IngestOptions::default();
        // Items that came parsed (a realtime message, the demo) are
        // bounded by their transport's message size, not the ingest budget.
        return super::series::ingest(state, principal, name, items, 0, options).await;
    }
    let caller = Caller::new(principal);
    // Refuse before validating, so a caller who can never create learns
    // nothing about the schema.
    if !caller.may_ever(&*collection(state, name)?, Action::Create) {
        return Err(ApiError::forbidden("you may not create records here"));
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let collection = collection(state, name)?;
        let now = crate::clock::now_rfc3339();
        let mut records = Vec::with_capacity(items.len());
        let mut bad = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            match prepare_create(&collection, &caller, item.clone(), &now) {
                Ok(record) => records.push(record),
                Err(e) if !is_batch => return Err(e),
                Err(e) => {
                    if e.is_forbidden() {
                        return Err(ApiError::forbidden(format!("item {index}: {}", e.message)));
                    }
                    if bad.len() < MAX_REPORTED_ITEMS {
                        bad.insert(
                            index.to_string(),
                            e.details.unwrap_or(Value::String(e.message)),
                        );
                    }
                }
            }
        }
        if !bad.is_empty() {
            return Err(ApiError::validation_details(
                format!(
                    "{} of {} records are invalid; none were written",
                    bad.len(),
                    items.len()
                ),
                json!({ "items": bad }),
            ));
        }
        let actor = principal.id();
        let server_ids: HashSet<String> = records
            .iter()
            .filter(|p| !p.client_chose_id)
            .map(|p| p.record.id().to_owned())
            .collect();
        let visible: Vec<Value> = records
            .iter()
            .map(|p| Value::Object(seen_by(&caller, &collection, &p.record)))
            .collect();
        let ops = records
            .into_iter()
            .map(|p| {
                RecordOp::Create(NewRecord::prepare(
                    &collection,
                    &p.record,
                    actor.as_deref(),
                    p.client_chose_id,
                    p.permit,
                ))
            })
            .collect();
        let mutation = Mutation::Records {
            collection: collection.clone(),
            ops,
            actor,
        };
        match state.writer.submit(mutation).await {
            Ok(_) => {}
            Err(WriteError::CollectionChanged) if attempt < WRITE_ATTEMPTS => continue,
            // A client took the id the server generated: new ids, again.
            Err(WriteError::Conflict(id))
                if attempt < WRITE_ATTEMPTS && server_ids.contains(&id) =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
        let body = if is_batch {
            json!({ "items": visible })
        } else {
            visible.into_iter().next().unwrap_or(Value::Null)
        };
        return Ok(body);
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub fields: Option<String>,
    /// `total=true`: the answer also says how many records match, every
    /// page together.
    pub total: Option<bool>,
}

pub fn parse_filter(text: Option<&str>) -> ApiResult<Option<Expr>> {
    // Parsed untrimmed so error positions point into the caller's text.
    match text.filter(|t| !t.trim().is_empty()) {
        None => Ok(None),
        Some(text) => Expr::parse(text).map(Some).map_err(|e| {
            ApiError::bad_request(format!("filter: {e}"))
                .with_details(json!({"position": e.position}))
        }),
    }
}

/// A page of the records the caller may list.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    name: &str,
    params: ListParams,
) -> ApiResult<Value> {
    let principal = principal.clone();
    let collection = collection(state, name)?;
    if collection.is_series() {
        let params = super::series::SeriesListParams {
            filter: params.filter,
            sort: params.sort,
            limit: params.limit,
            cursor: params.cursor,
            fields: params.fields,
            total: params.total,
            ..Default::default()
        };
        return super::series::list(state, &principal, name, params).await;
    }
    let with_total = params.total == Some(true);
    let filter = parse_filter(params.filter.as_deref())?;
    let sort = parse_sort(params.sort.as_deref().unwrap_or("")).map_err(ApiError::bad_request)?;
    let after = params
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, &sort))
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let wanted = Wanted::parse(params.fields.as_deref());
    let store = state.store.clone();
    let page = tokio::task::spawn_blocking(move || {
        let caller = Caller::new(&principal);
        if visibility::rules_for(&caller.viewer, &collection, Reach::Collection).is_none() {
            return Err(ApiError::forbidden("you may not list this collection"));
        }
        let request = ListRequest {
            collection: &collection,
            viewer: &caller.viewer,
            now: &caller.now,
            filter: filter.as_ref(),
            sort: &sort,
            after,
            limit,
        };
        let page = store.list(&request)?;
        let total = with_total.then(|| store.count(&request)).transpose()?;
        Ok((page, total))
    })
    .await
    .map_err(ApiError::internal)??;
    let (page, total) = page;
    let items = wanted.items(page.items);
    let mut answer = json!({"items": items, "next_cursor": page.next_cursor});
    if let Some(total) = total {
        answer["total"] = json!(total);
    }
    Ok(answer)
}

/// The `fields` a list asks for: every field when absent.
pub struct Wanted(Option<Vec<String>>);

impl Wanted {
    pub fn parse(fields: Option<&str>) -> Wanted {
        Wanted(fields.map(|f| {
            f.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        }))
    }

    /// The items, each cut down to the wanted fields.
    pub fn items(&self, items: Vec<Map<String, Value>>) -> Vec<Value> {
        items.into_iter().map(|fields| self.item(fields)).collect()
    }

    /// One item cut down to the wanted fields.
    pub fn item(&self, mut fields: Map<String, Value>) -> Value {
        if let Some(wanted) = &self.0 {
            project(&mut fields, wanted);
        }
        Value::Object(fields)
    }
}

/// Loads a record the caller may view; anything else is 404. Readings of
/// a series collection cannot be changed or deleted one by one, so the
/// update and delete paths that start here are 405 for them.
fn viewable(
    state: &AppState,
    collection: &Collection,
    caller: &Caller,
    id: &str,
) -> ApiResult<Record> {
    if collection.is_series() {
        return Err(ApiError::new(
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{} is a series collection: readings cannot be changed or deleted one by one \
                 (an admin may drop old ones with DELETE /api/collections/{}/records?before=TIME)",
                collection.def.name, collection.def.name
            ),
        ));
    }
    let record = state
        .store
        .get_record(collection.id, id)?
        .ok_or_else(|| record_not_found(id))?;
    let sighted = Sighted::new(collection, &record.fields);
    if !visibility::may_view(&caller.viewer, collection, &sighted, &caller.now) {
        return Err(record_not_found(id));
    }
    Ok(record)
}

/// What the caller sees of a record it may view (or has just written).
fn seen_by(caller: &Caller, collection: &Collection, record: &Record) -> Map<String, Value> {
    Sighted::new(collection, &record.fields)
        .as_seen_by(caller.is_admin())
        .clone()
}

/// One record the caller may view; anything else is `not_found`.
pub async fn get(
    state: &AppState,
    principal: &Principal,
    name: &str,
    id: &str,
) -> ApiResult<Value> {
    let collection = collection(state, name)?;
    if collection.is_series() {
        return super::series::get(state, principal, name, id).await;
    }
    let caller = Caller::new(principal);
    let record = viewable(state, &collection, &caller, id)?;
    Ok(Value::Object(seen_by(&caller, &collection, &record)))
}

#[derive(Clone, Copy)]
pub enum UpdateKind {
    Merge,
    Replace,
}

/// Merges (`UpdateKind::Merge`, RFC 7396) or replaces a record; with
/// `expected` (If-Match) only if it is still at that rev.
pub async fn update(
    state: &AppState,
    principal: &Principal,
    name: &str,
    id: &str,
    expected: Option<u64>,
    body: Value,
    kind: UpdateKind,
) -> ApiResult<Value> {
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("expected a JSON object"));
    };
    let caller = Caller::new(principal);
    for attempt in 1..=WRITE_ATTEMPTS {
        let collection = collection(state, name)?;
        let current = viewable(state, &collection, &caller, id)?;
        if expected.is_some_and(|rev| rev != current.rev()) {
            return Err(ApiError::precondition_failed(format!(
                "the record is at rev {}",
                current.rev()
            ))
            .with_details(json!({"rev": current.rev()})));
        }
        if caller
            .authorize(&collection, Action::Update, &current.fields)
            .is_none()
        {
            return Err(ApiError::forbidden("the update rule does not allow this"));
        }
        let owner = owner_for(
            &caller,
            body.get("owner"),
            current.owner().map(str::to_owned),
        )?;
        let mut input = body.clone();
        drop_system_fields(&mut input);
        let data = match kind {
            UpdateKind::Merge => {
                let mut data = current.data();
                merge_patch(&mut data, input);
                data
            }
            UpdateKind::Replace => input,
        };
        let data = collection
            .validate(data, matches!(kind, UpdateKind::Replace))
            .map_err(|errors| ApiError::validation("invalid record", &errors))?;
        let now = crate::clock::now_rfc3339();
        let record = Record::new(
            id,
            current.created(),
            &now,
            owner.as_deref(),
            current.rev() + 1,
            data,
        );
        // Checked on the result too, so nobody can move a record into a
        // state they could not have created.
        let permit = caller
            .authorize(&collection, Action::Update, &record.fields)
            .ok_or_else(|| {
                ApiError::forbidden("the update rule does not allow the record that would result")
            })?;
        let visible = seen_by(&caller, &collection, &record);
        let mutation = Mutation::Records {
            collection: collection.clone(),
            ops: vec![RecordOp::Replace {
                record,
                expected_rev: current.rev(),
                permit,
            }],
            actor: principal.id(),
        };
        match state.writer.submit(mutation).await {
            Ok(_) => return Ok(Value::Object(visible)),
            Err(WriteError::RevMismatch { .. } | WriteError::CollectionChanged)
                if expected.is_none() && attempt < WRITE_ATTEMPTS =>
            {
                continue
            }
            Err(WriteError::NotFound(_)) => return Err(record_not_found(id)),
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict("the record kept changing; try again"))
}

/// Deletes a record; with `expected` (If-Match) only at that rev.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    name: &str,
    id: &str,
    expected: Option<u64>,
) -> ApiResult<()> {
    let caller = Caller::new(principal);
    let collection = collection(state, name)?;
    let current = viewable(state, &collection, &caller, id)?;
    let permit = caller
        .authorize(&collection, Action::Delete, &current.fields)
        .ok_or_else(|| ApiError::forbidden("the delete rule does not allow this"))?;
    // Without If-Match the delete is of the record the rule was checked on.
    let expected_rev = Some(expected.unwrap_or(current.rev()));
    let mutation = Mutation::Records {
        collection,
        ops: vec![RecordOp::Delete {
            id: id.to_owned(),
            expected_rev,
            expired: false,
            permit,
        }],
        actor: principal.id(),
    };
    match state.writer.submit(mutation).await {
        Ok(_) => Ok(()),
        Err(WriteError::NotFound(_)) => Err(record_not_found(id)),
        Err(WriteError::RevMismatch { current, .. }) if expected.is_none() => Err(
            ApiError::conflict(format!("the record changed (now rev {current}); try again")),
        ),
        Err(e) => Err(e.into()),
    }
}
