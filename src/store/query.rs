//! Listing records: filter, multi-key sort, keyset cursors, and index use.
//!
//! Order: the sort keys, then `id` in the direction of the first key. With
//! no `sort` the order is `created`, oldest first. A cursor holds the sort
//! values and id of the last item returned, so a page always starts right
//! after it however many records were inserted meanwhile: nothing is
//! skipped or repeated.
//!
//! Plans, best first:
//! 1. an equality or range constraint on an indexed field taken from the
//!    filter or the caller's rules narrows the candidates, then the matches
//!    are sorted in a bounded buffer;
//! 2. a single sort key on an indexed field (`created` always is) or `id`
//!    scans in that order from the cursor and stops after `limit` matches;
//! 3. otherwise every record of the collection is visited.
//!
//! "Indexed" means indexed by the version of the collection the request
//! holds (the catalog's when it began), never by the `i` keys present: a
//! field being indexed by a pending update, or whose index was removed and
//! is being cleared, has incomplete or stale entries (`writer::migration`).

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{decode_record, keys, Store, StoreError};
use crate::model::{Collection, Record};
use crate::rules::{CmpOp, Constraint, Expr};
use crate::visibility::{self, Reach, Sighted, Viewer};

pub const MAX_SORT_KEYS: usize = 8;

type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: String,
    pub descending: bool,
}

/// `-created,device` → created descending, then device ascending.
pub fn parse_sort(text: &str) -> Result<Vec<SortKey>, String> {
    let mut keys = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (descending, field) = match part.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, part.strip_prefix('+').unwrap_or(part)),
        };
        if !crate::model::collection::is_field_name(field) {
            return Err(format!("cannot sort by {part:?}: not a field name"));
        }
        keys.push(SortKey {
            field: field.to_owned(),
            descending,
        });
    }
    if keys.len() > MAX_SORT_KEYS {
        return Err(format!("at most {MAX_SORT_KEYS} sort keys"));
    }
    if keys.is_empty() {
        keys.push(SortKey {
            field: "created".into(),
            descending: false,
        });
    }
    Ok(keys)
}

fn sort_signature(sort: &[SortKey]) -> String {
    sort.iter()
        .map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.field))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    values: Vec<Value>,
    id: String,
}

impl Cursor {
    pub fn encode(&self, sort: &[SortKey]) -> String {
        let body = json!({"s": sort_signature(sort), "v": self.values, "i": self.id});
        URL_SAFE_NO_PAD.encode(body.to_string())
    }

    /// A cursor only continues the listing it came from.
    pub fn decode(text: &str, sort: &[SortKey]) -> Result<Cursor, String> {
        let invalid = || "invalid cursor".to_owned();
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if body["s"].as_str() != Some(sort_signature(sort).as_str()) {
            return Err("the cursor belongs to a listing with another sort".into());
        }
        let values = body["v"].as_array().cloned().ok_or_else(invalid)?;
        let id = body["i"].as_str().ok_or_else(invalid)?.to_owned();
        if values.len() != sort.len() {
            return Err(invalid());
        }
        Ok(Cursor { values, id })
    }
}

pub struct ListRequest<'a> {
    pub collection: &'a Collection,
    /// Who is listing: each record is judged by [`visibility::sees`].
    pub viewer: &'a Viewer,
    pub now: &'a str,
    /// The caller's filter, evaluated on what the caller may see.
    pub filter: Option<&'a Expr>,
    pub sort: &'a [SortKey],
    pub after: Option<Cursor>,
    pub limit: usize,
}

pub struct Page {
    /// Visible fields of each record (protected fields already removed).
    pub items: Vec<Map<String, Value>>,
    pub next_cursor: Option<String>,
    /// Records read and evaluated to answer: what an index saves.
    pub scanned: usize,
}

struct Candidate {
    sort_values: Vec<Value>,
    id: String,
    visible: Map<String, Value>,
}

impl Store {
    pub fn list(&self, request: &ListRequest) -> Result<Page, StoreError> {
        let mut lister = Lister {
            request,
            matches: Vec::new(),
            scanned: 0,
        };
        let collection = request.collection;
        let protected_sort = !request.viewer.admin
            && request
                .sort
                .iter()
                .any(|k| collection.protected.contains(&k.field));
        let single_sort = match request.sort {
            [only] if !protected_sort => Some(only),
            _ => None,
        };
        let indexed =
            |field: &str| field == "created" || collection.def.indexes.iter().any(|f| f == field);

        if let Some((field, range)) = self.best_index_range(request) {
            self.each_in_index_range(collection.id, &field, range, |record| {
                lister.offer(record, false);
            })?;
        } else if let Some(key) = single_sort.filter(|k| indexed(&k.field)) {
            let prefix = keys::index_field_prefix(collection.id, &key.field);
            let (lower, upper) =
                ordered_bounds(&prefix, request.after.as_ref(), key.descending, |c| {
                    let mut at = prefix.clone();
                    keys::encode_value(&c.values[0], &mut at);
                    at.extend_from_slice(c.id.as_bytes());
                    at
                });
            let scan = self.data.range::<Vec<u8>, _>((lower, upper)).keys();
            let scan: Box<dyn Iterator<Item = _>> = if key.descending {
                Box::new(scan.rev())
            } else {
                Box::new(scan)
            };
            for entry in scan {
                let entry = entry?;
                if let Some(id) = keys::index_entry_id(&entry, prefix.len()) {
                    if let Some(record) = self.get_record(collection.id, id)? {
                        if lister.offer(record, true) {
                            break;
                        }
                    }
                }
            }
        } else if let Some(key) = single_sort.filter(|k| k.field == "id") {
            let prefix = keys::collection_prefix(keys::RECORD, collection.id);
            let (lower, upper) =
                ordered_bounds(&prefix, request.after.as_ref(), key.descending, |c| {
                    let mut at = prefix.clone();
                    at.extend_from_slice(c.id.as_bytes());
                    at
                });
            let scan = self.data.range::<Vec<u8>, _>((lower, upper)).values();
            let scan: Box<dyn Iterator<Item = _>> = if key.descending {
                Box::new(scan.rev())
            } else {
                Box::new(scan)
            };
            for value in scan {
                if lister.offer(decode_record(&value?)?, true) {
                    break;
                }
            }
        } else {
            self.each_record(collection.id, |record| {
                lister.offer(record, false);
            })?;
        }
        Ok(lister.finish())
    }

    /// How many records [`Store::list`] would give this viewer through
    /// this filter, every page together (the request's sort, cursor and
    /// limit play no part). Each record is judged by the same
    /// [`visibility::sees`], over the same index narrowing; when one
    /// answer holds for every record (an admin without a filter), the
    /// stored count answers without reading any.
    pub fn count(&self, request: &ListRequest) -> Result<u64, StoreError> {
        let collection = request.collection;
        match visibility::sees_every(
            request.viewer,
            collection,
            Reach::Collection,
            request.filter,
            request.now,
        ) {
            Some(true) => return self.record_count(collection.id),
            Some(false) => return Ok(0),
            None => {}
        }
        let mut total = 0;
        let mut judge = |record: Record| {
            let sighted = Sighted::new(collection, &record.fields);
            if visibility::sees(
                request.viewer,
                collection,
                Reach::Collection,
                &sighted,
                request.filter,
                request.now,
            ) {
                total += 1;
            }
        };
        match self.best_index_range(request) {
            Some((field, range)) => {
                self.each_in_index_range(collection.id, &field, range, judge)?
            }
            None => self.each_record(collection.id, &mut judge)?,
        }
        Ok(total)
    }

    /// Every record with an entry of `field`'s index in `range`.
    fn each_in_index_range(
        &self,
        collection: u32,
        field: &str,
        range: KeyRange,
        mut visit: impl FnMut(Record),
    ) -> Result<(), StoreError> {
        let prefix_len = keys::index_field_prefix(collection, field).len();
        for key in self.data.range::<Vec<u8>, _>(range).keys() {
            let key = key?;
            if let Some(id) = keys::index_entry_id(&key, prefix_len) {
                if let Some(record) = self.get_record(collection, id)? {
                    visit(record);
                }
            }
        }
        Ok(())
    }

    /// Every record of the collection, in id order.
    fn each_record(
        &self,
        collection: u32,
        mut visit: impl FnMut(Record),
    ) -> Result<(), StoreError> {
        let prefix = keys::collection_prefix(keys::RECORD, collection);
        for value in self.data.scan_prefix(prefix).values() {
            visit(decode_record(&value?)?);
        }
        Ok(())
    }

    /// The narrowest index range that every match must fall in, if any.
    fn best_index_range(&self, request: &ListRequest) -> Option<(String, KeyRange)> {
        let collection = request.collection;
        let viewer = request.viewer;
        let user = viewer.user.as_ref();
        let mut constraints: Vec<Constraint> = Vec::new();
        if let Some(filter) = request.filter {
            constraints.extend(
                filter
                    .index_constraints(user, request.now)
                    .into_iter()
                    // A non-admin's filter sees protected fields as absent,
                    // which an index of their real values cannot answer.
                    .filter(|c| viewer.admin || !collection.protected.contains(&c.field)),
            );
        }
        // Only a narrowing: every candidate is still judged by `sees`.
        for rule in visibility::rules_for(viewer, collection, Reach::Collection).unwrap_or_default()
        {
            constraints.extend(rule.index_constraints(user, request.now));
        }
        let indexed: HashSet<&str> = collection.def.indexes.iter().map(String::as_str).collect();
        let usable: Vec<&Constraint> = constraints
            .iter()
            .filter(|c| indexed.contains(c.field.as_str()))
            .filter(|c| c.op == CmpOp::Eq || matches!(c.value, Value::Number(_) | Value::String(_)))
            .collect();
        let chosen = usable
            .iter()
            .find(|c| c.op == CmpOp::Eq)
            .or_else(|| usable.first())?;
        let field = chosen.field.clone();
        let prefix = keys::index_field_prefix(collection.id, &field);
        let mut lower: Vec<u8> = prefix.clone();
        let mut upper: Vec<u8> = keys::prefix_end(&prefix);
        for c in usable.iter().filter(|c| c.field == field) {
            let mut at = prefix.clone();
            keys::encode_value(&c.value, &mut at);
            let type_start = {
                let mut p = prefix.clone();
                p.push(at[prefix.len()]);
                p
            };
            let type_end = keys::prefix_end(&type_start);
            let (lo, hi) = match c.op {
                CmpOp::Eq => (at.clone(), keys::prefix_end(&at)),
                CmpOp::Gt => (keys::prefix_end(&at), type_end),
                CmpOp::Ge => (at.clone(), type_end),
                CmpOp::Lt => (type_start, at.clone()),
                CmpOp::Le => (type_start, keys::prefix_end(&at)),
            };
            lower = lower.max(lo);
            upper = upper.min(hi);
        }
        if lower >= upper {
            // Contradictory constraints: an empty range, still answered
            // through the index rather than a full scan.
            upper = lower.clone();
        }
        Some((field, (Bound::Included(lower), Bound::Excluded(upper))))
    }
}

/// Range bounds for a scan in key order that resumes after a cursor.
fn ordered_bounds(
    prefix: &[u8],
    after: Option<&Cursor>,
    descending: bool,
    cursor_key: impl Fn(&Cursor) -> Vec<u8>,
) -> KeyRange {
    let start = Bound::Included(prefix.to_vec());
    let end = Bound::Excluded(keys::prefix_end(prefix));
    match after {
        None => (start, end),
        Some(c) if descending => (start, Bound::Excluded(cursor_key(c))),
        Some(c) => (Bound::Excluded(cursor_key(c)), end),
    }
}

struct Lister<'a> {
    request: &'a ListRequest<'a>,
    /// Sorted, at most `limit + 1` long.
    matches: Vec<Candidate>,
    scanned: usize,
}

impl Lister<'_> {
    /// Considers one record; returns true when an in-order scan may stop.
    fn offer(&mut self, record: Record, in_order: bool) -> bool {
        self.scanned += 1;
        let request = self.request;
        let sighted = Sighted::new(request.collection, &record.fields);
        if !visibility::sees(
            request.viewer,
            request.collection,
            Reach::Collection,
            &sighted,
            request.filter,
            request.now,
        ) {
            return false;
        }
        let visible = sighted.as_seen_by(request.viewer.admin).clone();
        let candidate = Candidate {
            sort_values: request
                .sort
                .iter()
                .map(|k| lookup(&visible, &k.field).clone())
                .collect(),
            id: record.id().to_owned(),
            visible,
        };
        if let Some(cursor) = &request.after {
            let at_cursor = (cursor.values.as_slice(), cursor.id.as_str());
            if compare(
                request.sort,
                (&candidate.sort_values, &candidate.id),
                at_cursor,
            ) != Ordering::Greater
            {
                return false;
            }
        }
        let position = self
            .matches
            .binary_search_by(|m| {
                compare(
                    request.sort,
                    (&m.sort_values, &m.id),
                    (&candidate.sort_values, &candidate.id),
                )
            })
            .unwrap_or_else(|p| p);
        if position <= request.limit {
            self.matches.insert(position, candidate);
            self.matches.truncate(request.limit + 1);
        }
        in_order && self.matches.len() > request.limit
    }

    fn finish(mut self) -> Page {
        let limit = self.request.limit;
        let next_cursor = if self.matches.len() > limit {
            self.matches.truncate(limit);
            self.matches.last().map(|last| {
                Cursor {
                    values: last.sort_values.clone(),
                    id: last.id.clone(),
                }
                .encode(self.request.sort)
            })
        } else {
            None
        };
        Page {
            items: self.matches.into_iter().map(|m| m.visible).collect(),
            next_cursor,
            scanned: self.scanned,
        }
    }
}

fn lookup<'v>(record: &'v Map<String, Value>, path: &str) -> &'v Value {
    record.get(path).unwrap_or(&Value::Null)
}

fn compare(sort: &[SortKey], a: (&[Value], &str), b: (&[Value], &str)) -> Ordering {
    for (key, (x, y)) in sort.iter().zip(a.0.iter().zip(b.0.iter())) {
        let order = compare_values(x, y);
        let order = if key.descending {
            order.reverse()
        } else {
            order
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    let by_id = a.1.cmp(b.1);
    if sort.first().is_some_and(|k| k.descending) {
        by_id.reverse()
    } else {
        by_id
    }
}

/// The same order as the index encoding: null < false < true < numbers <
/// strings < anything else.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(false) => 1,
            Value::Bool(true) => 2,
            Value::Number(_) => 3,
            Value::String(_) => 4,
            _ => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (x, y) if rank(x) == 5 && rank(y) == 5 => x.to_string().cmp(&y.to_string()),
        (x, y) => rank(x).cmp(&rank(y)),
    }
}

#[cfg(test)]
mod tests;
