//! Reading series collections by time: a page of readings in time order,
//! and the newest reading of each source. Both read block summaries first
//! and decode only the blocks that can matter, and both judge every
//! reading through [`visibility::sees`] like a record.

use std::collections::{BTreeMap, BinaryHeap, HashSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::series_collection;
use crate::access::Caller;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::model::Collection;
use crate::rules::Expr;
use crate::series::Reading;
use crate::services::records::{parse_filter, Wanted};
use crate::state::AppState;
use crate::store::series::{BlockInfo, Newest};
use crate::store::{Store, StoreError};
use crate::visibility::{self, Reach, Sighted, Viewer};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// RFC 3339, or milliseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    text.parse::<i64>()
        .ok()
        .or_else(|| crate::clock::parse_ms(text))
}

fn time_param(name: &str, text: Option<&str>) -> ApiResult<Option<i64>> {
    text.map(|t| {
        parse_time(t).ok_or_else(|| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time or milliseconds since the epoch"
            ))
        })
    })
    .transpose()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesListParams {
    pub from: Option<String>,
    pub to: Option<String>,
    pub filter: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub fields: Option<String>,
    /// `total=true`: also how many readings match, where the stored count
    /// is the answer (see [`list`]).
    pub total: Option<bool>,
}

/// Readings are listed in time order, oldest or (`-`) newest first. The
/// sort may name `time`, the collection's time field, or `created` or
/// `id` (which follow the same order closely enough for a list view:
/// late readings aside, they arrive in time order).
fn sort_direction(collection: &Collection, sort: Option<&str>) -> ApiResult<bool> {
    let text = sort.map(str::trim).unwrap_or("");
    let (descending, name) = match text.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let time_field = collection
        .series
        .as_ref()
        .and_then(|s| s.time_field.as_deref());
    if ["", "time", "created", "id"].contains(&name) || Some(name) == time_field {
        return Ok(descending);
    }
    Err(ApiError::bad_request(format!(
        "series collections list in time order: sort=time or sort=-time, not {text}"
    )))
}

/// Position of a reading in time order: time, then seq.
type Position = (i64, u64);

fn decode_cursor(text: &str) -> Option<Position> {
    let (time, seq) = text.strip_prefix('t')?.split_once('_')?;
    Some((time.parse().ok()?, seq.parse().ok()?))
}

fn encode_cursor((time, seq): Position) -> String {
    format!("t{time}_{seq}")
}

/// What a scan keeps of a reading: its position and what the caller sees.
struct Kept {
    key: Position,
    descending: bool,
    fields: Map<String, Value>,
}

impl Ord for Kept {
    /// The heap's top is the kept reading furthest along the page's order,
    /// the first to go when a better one comes.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let order = self.key.cmp(&other.key);
        if self.descending {
            order.reverse()
        } else {
            order
        }
    }
}

impl PartialOrd for Kept {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Kept {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Kept {}

/// Who reads and what they asked for, shared by the scans.
struct Reader<'a> {
    collection: &'a Collection,
    viewer: &'a Viewer,
    now: &'a str,
    filter: Option<&'a Expr>,
}

impl Reader<'_> {
    /// The reading as the caller sees it, if they may list it and it
    /// passes the filter.
    fn sees(&self, reading: &Reading) -> Option<Map<String, Value>> {
        self.judge(reading)
            .map(|sighted| sighted.into_seen_by(self.viewer.admin))
    }

    /// The reading as stored, if the caller may list it and it passes the
    /// filter.
    fn judge(&self, reading: &Reading) -> Option<Sighted<'static>> {
        let full = self.collection.reading_json(reading);
        let sighted = Sighted::owned(self.collection, full);
        visibility::sees(
            self.viewer,
            self.collection,
            Reach::Collection,
            &sighted,
            self.filter,
            self.now,
        )
        .then_some(sighted)
    }

    /// What [`Reader::judge`] answers for every reading, when one answer
    /// holds for all.
    fn judge_all(&self) -> Option<bool> {
        visibility::sees_every(
            self.viewer,
            self.collection,
            Reach::Collection,
            self.filter,
            self.now,
        )
    }

    /// Whether the caller sees every reading whole: an admin, or a
    /// collection without protected fields.
    fn sees_whole(&self) -> bool {
        self.viewer.admin || self.collection.protected.is_empty()
    }
}

/// The block's readings; `None` once it is gone since its summary was
/// read (dropped, or merged into a block under a lower seq).
fn read_block(
    store: &Store,
    collection: u32,
    first_seq: u64,
) -> Result<Option<Vec<Reading>>, StoreError> {
    match store.series_block(collection, first_seq)? {
        Some(bytes) => crate::series::decode(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("series block: {e}"))),
        None => Ok(None),
    }
}

/// A page of the readings the caller may list, in time order. Asked for
/// a `total`, it gives the stored count when one answer holds for every
/// reading and no time range is given (an admin without a filter), and
/// null otherwise: counting reading by reading would decode every block.
pub async fn list(
    state: &AppState,
    principal: &Principal,
    name: &str,
    params: SeriesListParams,
) -> ApiResult<Value> {
    let collection = series_collection(state, name)?;
    let from = time_param("from", params.from.as_deref())?.unwrap_or(i64::MIN);
    let to = time_param("to", params.to.as_deref())?.unwrap_or(i64::MAX);
    let descending = sort_direction(&collection, params.sort.as_deref())?;
    let after = params
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c).ok_or_else(|| ApiError::bad_request("invalid cursor")))
        .transpose()?;
    let filter = parse_filter(params.filter.as_deref())?;
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let wanted = Wanted::parse(params.fields.as_deref());
    let with_total = params.total == Some(true);
    let whole = from == i64::MIN && to == i64::MAX;
    let ((items, next), total) = read_as(
        state,
        principal,
        collection,
        filter,
        move |store, reader| {
            let page = scan_page(store, reader, (from, to), after, descending, limit)?;
            let total = match reader.judge_all() {
                Some(true) if whole => Some(store.record_count(reader.collection.id)?),
                Some(false) => Some(0),
                _ => None,
            };
            Ok((page, total))
        },
    )
    .await?;
    let mut answer = json!({"items": wanted.items(items), "next_cursor": next});
    if with_total {
        answer["total"] = json!(total);
    }
    Ok(answer)
}

/// Runs `read` on a blocking thread for a caller who may list the
/// collection, with what it needs to judge each reading.
async fn read_as<T: Send + 'static>(
    state: &AppState,
    principal: &Principal,
    collection: Arc<Collection>,
    filter: Option<Expr>,
    read: impl FnOnce(&Store, &Reader) -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    let principal = principal.clone();
    tokio::task::spawn_blocking(move || {
        let caller = Caller::new(&principal);
        if visibility::rules_for(&caller.viewer, &collection, Reach::Collection).is_none() {
            return Err(ApiError::forbidden("you may not list this collection"));
        }
        let reader = Reader {
            collection: &collection,
            viewer: &caller.viewer,
            now: &caller.now,
            filter: filter.as_ref(),
        };
        read(&store, &reader)
    })
    .await
    .map_err(ApiError::internal)?
}

/// A page's readings as the caller sees them, and the cursor after it.
type Page = (Vec<Map<String, Value>>, Option<String>);

/// How many times a page is read again when the writer merged blocks
/// under it; merges are rare and quick, so a second read nearly always
/// finds them settled.
const SCAN_ATTEMPTS: usize = 8;

/// A page read while the writer merged some of its blocks is read again.
/// The writer merges the newest small blocks into one keyed by the lowest
/// seq among them: a page that read a block before such a merge and the
/// next one after it finds the next one gone (its readings moved under a
/// key already read), and in descending order can read moved readings a
/// second time. Missing readings made a page short, and a short page
/// reads as the last one.
fn scan_page(
    store: &Store,
    reader: &Reader,
    range: (i64, i64),
    after: Option<Position>,
    descending: bool,
    limit: usize,
) -> Result<Page, ApiError> {
    let mut attempts = 1;
    loop {
        let blocks = store.series_spans_between(reader.collection.id, range.0, range.1)?;
        match scan_blocks(store, reader, blocks, range, after, descending, limit)? {
            Scanned::Settled(page) => return Ok(page),
            Scanned::Moved(page) if attempts >= SCAN_ATTEMPTS => return Ok(page),
            Scanned::Moved(_) => attempts += 1,
        }
    }
}

enum Scanned {
    Settled(Page),
    /// Blocks moved during the read; the page may lack or repeat readings.
    Moved(Page),
}

/// One read of a page from `blocks`, the summaries of every block in the
/// time range (time ranges only: there is no index by anything else).
/// Reads blocks in the order of the page (by their earliest time going
/// up, their latest going down) and stops once no further block can hold
/// a reading that beats the page's last.
fn scan_blocks(
    store: &Store,
    reader: &Reader,
    mut blocks: Vec<crate::store::series::BlockSpan>,
    (from, to): (i64, i64),
    after: Option<Position>,
    descending: bool,
    limit: usize,
) -> Result<Scanned, ApiError> {
    let collection_id = reader.collection.id;
    let mut moved = false;
    if descending {
        blocks.sort_by_key(|b| std::cmp::Reverse(b.max_time));
    } else {
        blocks.sort_by_key(|b| b.min_time);
    }
    let beyond = |key: Position| match after {
        None => true,
        Some(cursor) if descending => key < cursor,
        Some(cursor) => key > cursor,
    };
    // One more than the page, to know whether there is a next one.
    let mut heap: BinaryHeap<Kept> = BinaryHeap::new();
    for info in &blocks {
        if heap.len() > limit {
            let worst = heap.peek().map(|k| k.key.0).unwrap_or_default();
            let done = if descending {
                info.max_time < worst
            } else {
                info.min_time > worst
            };
            if done {
                break;
            }
        }
        let Some(readings) = read_block(store, collection_id, info.first_seq)? else {
            moved = true;
            continue;
        };
        for reading in readings {
            let key = (reading.time, reading.seq);
            if reading.time < from || reading.time >= to || !beyond(key) {
                continue;
            }
            if heap.len() > limit {
                let worst = heap.peek().map(|k| k.key);
                let better = worst.is_some_and(|w| if descending { key > w } else { key < w });
                if !better {
                    continue;
                }
            }
            let Some(fields) = reader.sees(&reading) else {
                continue;
            };
            heap.push(Kept {
                key,
                descending,
                fields,
            });
            if heap.len() > limit + 1 {
                heap.pop();
            }
        }
    }
    let mut kept = heap.into_sorted_vec();
    let read = kept.len();
    kept.dedup_by_key(|k| k.key);
    moved |= kept.len() != read;
    let next = (kept.len() > limit).then(|| {
        kept.truncate(limit);
        kept.last().map(|k| encode_cursor(k.key))
    });
    let next = next.flatten();
    let page = (kept.into_iter().map(|k| k.fields).collect(), next);
    Ok(if moved {
        Scanned::Moved(page)
    } else {
        Scanned::Settled(page)
    })
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LatestParams {
    pub group: Option<String>,
    pub filter: Option<String>,
    pub fields: Option<String>,
}

/// The newest reading (by time, then seq) of each source the caller may
/// list, in source order, as the JSON body `{"items": [...]}`: from the
/// index of newest readings, decoding blocks only for a source whose newest
/// reading the caller may not see or the filter drops.
pub async fn latest(
    state: &AppState,
    principal: &Principal,
    name: &str,
    params: LatestParams,
) -> ApiResult<Vec<u8>> {
    let collection = series_collection(state, name)?;
    let series_field = collection
        .series
        .as_ref()
        .map(|s| s.series_field.clone())
        .unwrap_or_default();
    if let Some(group) = params.group.as_deref().map(str::trim) {
        if !group.is_empty() && group != series_field {
            return Err(ApiError::bad_request(format!(
                "latest groups readings by their source: group={series_field}"
            )));
        }
    }
    let filter = parse_filter(params.filter.as_deref())?;
    // Cut down to some fields, a reading is not the one kept in the index.
    let whole = params.fields.is_none();
    let wanted = Wanted::parse(params.fields.as_deref());
    read_as(
        state,
        principal,
        collection,
        filter,
        move |store, reader| {
            let shown = newest_per_source(store, reader, whole)?;
            latest_body(reader.collection, shown, &wanted)
        },
    )
    .await
}

/// One source's newest reading the caller may see.
enum Shown {
    /// Whole, as the index holds it, so its JSON is rendered once and kept.
    Whole(Arc<Newest>),
    /// What the caller sees of an older reading, or of one with protected
    /// fields or cut down to some fields.
    Fields(Map<String, Value>),
}

/// `{"items": [...]}`, written straight from the readings: 10,000 sources
/// through a JSON tree cost several times more than the rest of the call.
fn latest_body(collection: &Collection, shown: Vec<Shown>, wanted: &Wanted) -> ApiResult<Vec<u8>> {
    let render = |reading: &Reading| Value::Object(collection.reading_json(reading)).to_string();
    let size: usize = shown
        .iter()
        .map(|item| match item {
            Shown::Whole(newest) => newest.json(render).len() + 1,
            Shown::Fields(_) => 0,
        })
        .sum();
    let mut body = Vec::with_capacity(size + 16);
    body.extend_from_slice(br#"{"items":["#);
    for (i, item) in shown.into_iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        match item {
            Shown::Whole(newest) => body.extend_from_slice(newest.json(render).as_bytes()),
            Shown::Fields(fields) => serde_json::to_writer(&mut body, &wanted.item(fields))
                .map_err(ApiError::internal)?,
        }
    }
    body.extend_from_slice(b"]}");
    Ok(body)
}

fn newest_per_source(store: &Store, reader: &Reader, whole: bool) -> ApiResult<Vec<Shown>> {
    let collection_id = reader.collection.id;
    let whole = whole && reader.sees_whole();
    let judged_once = reader.judge_all();
    if judged_once == Some(false) {
        return Ok(Vec::new());
    }
    let newest = store.latest_readings(collection_id)?;
    if whole && judged_once == Some(true) {
        return Ok(newest.into_iter().map(Shown::Whole).collect());
    }
    let mut out: BTreeMap<String, Shown> = BTreeMap::new();
    let mut missing: HashSet<String> = HashSet::new();
    for newest in newest {
        let reading = newest.reading();
        let sighted = match judged_once {
            // All pass: only what the caller sees of each is left to work out.
            Some(_) => Sighted::owned(reader.collection, reader.collection.reading_json(reading)),
            None => match reader.judge(reading) {
                Some(sighted) => sighted,
                None => {
                    missing.insert(reading.series.clone());
                    continue;
                }
            },
        };
        let source = reading.series.clone();
        let shown = if whole {
            Shown::Whole(newest)
        } else {
            Shown::Fields(sighted.into_seen_by(reader.viewer.admin))
        };
        out.insert(source, shown);
    }
    if !missing.is_empty() {
        // The newest the caller may see, block by block from the newest.
        let mut by_newest: Vec<BlockInfo> = store
            .series_blocks(collection_id)
            .collect::<Result<_, _>>()?;
        by_newest.sort_by_key(|b| std::cmp::Reverse(b.summary.max_time));
        let mut found: BTreeMap<String, (Position, Map<String, Value>)> = BTreeMap::new();
        for info in &by_newest {
            let holds_missing = info
                .summary
                .series
                .iter()
                .any(|s| missing.contains(&s.name));
            if !holds_missing {
                continue;
            }
            // The block now holding its first seq: itself, or, merged
            // since its summary was read, the block it went into (under a
            // lower seq, maybe read already: the newest is kept once).
            let holding = store.series_block_holding(collection_id, info.first_seq)?;
            let readings = match holding {
                Some((_, bytes)) => crate::series::decode(&bytes)
                    .map_err(|e| ApiError::internal(format!("series block: {e}")))?,
                None => Vec::new(),
            };
            for reading in readings {
                if !missing.contains(&reading.series) {
                    continue;
                }
                let key = (reading.time, reading.seq);
                if found.get(&reading.series).is_some_and(|(k, _)| *k >= key) {
                    continue;
                }
                if let Some(fields) = reader.sees(&reading) {
                    found.insert(reading.series.clone(), (key, fields));
                }
            }
        }
        out.extend(
            found
                .into_iter()
                .map(|(source, (_, fields))| (source, Shown::Fields(fields))),
        );
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
mod tests;
