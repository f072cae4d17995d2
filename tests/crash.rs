//! Crash durability: runs the real binary in `sync` durability, writes with
//! many concurrent clients, SIGKILLs it at a random moment, and checks that
//! every acknowledged write survived intact, that the change log has no
//! holes, and that a write whose answer was lost is all or nothing and safe
//! to retry. Many rounds share one data dir, so later rounds also recover
//! databases that were themselves recovered.
//!
//! Each round:
//! 1. start the server on the data dir; from the second round on, check
//!    what it serves against the change log read offline after the previous
//!    kill (every id, listed through the `created` or the `n` index in turn;
//!    the full content of the records new since then), then retry each
//!    request whose answer was lost: it must get 201 if its records are
//!    absent and 409 if they are present;
//! 2. run `WRITERS` clients sending single creates and small batches with
//!    client-chosen ids, each record a pure function of its id. Some single
//!    creates go out twice at once, as a client retrying early would send
//!    them: one must get 201 and the other 409, and a 409 alone counts as an
//!    acknowledgement ("it is already there"), which is what makes retrying
//!    safe;
//! 3. after a random delay, send one more create on several connections at
//!    once and SIGKILL the server the moment one is answered 409: a 409 says
//!    the record exists, so it must be on disk by then;
//! 4. copy the database (so the server, not this test, is the first to
//!    recover the crash image), open the copy with the library and check:
//!    seqs consecutive from `first_seq` to `last_seq`; every entry decodes and
//!    its JSON parses; each `crash` create has its record, equal to the logged
//!    JSON; the count key equals the number of creates; every acknowledged id
//!    is there and equal to the answer; every lost-answer request is all or
//!    nothing; nothing appears that was never sent.
//!
//! The last restart checks every record's content over HTTP and both
//! indexes; then the server is stopped gracefully and the data dir checked
//! in full once more: by then every lost answer has been resolved by a
//! retry, so the records are exactly the acknowledged ones.
//!
//! `PULSEBASE_CRASH_SEED` replays a seed (printed at the start; the kill
//! points and request mix follow from it, thread timing does not);
//! `PULSEBASE_CRASH_ROUNDS` sets the number of kills. On failure the data dir
//! is kept and its path printed.
//!
//! The change log is not trimmed meanwhile: trimming keeps entries younger
//! than a day.
//!
//! What this can and cannot see: SIGKILL ends the process, not the kernel,
//! so whatever the server handed to the OS with write() survives even
//! without an fsync. The test catches answers sent before the write left the
//! process, torn batches, log holes, record/log/count disagreement and
//! recovery bugs, but not a missing fsync: that needs a power cut or a VM
//! kill.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pulsebase::store::change::ChangeKind;
use pulsebase::store::Store;
use serde_json::{json, Map, Value};

use common::{client, send, Options, TestServer};

const COLLECTION: &str = "crash";
const DEFAULT_ROUNDS: usize = 24;
/// Concurrent clients per round.
const WRITERS: usize = 24;
/// The race that ends in the kill starts this many milliseconds after the
/// writers.
const KILL_AFTER_MS: (u64, u64) = (40, 400);
/// One request in this many is a batch of `BATCH_SIZE` records.
const BATCH_ONE_IN: u64 = 5;
const BATCH_SIZE: (u64, u64) = (5, 20);
/// One single create in this many is sent twice at once (0: never).
const DUPLICATE_ONE_IN: u64 = 4;
/// When the kill delay has passed, the same create goes out on this many
/// connections and the kill comes at the first 409.
const RACERS: u64 = 6;
const PAGE: usize = 1000;
/// Problems quoted in a failure message; the rest are only counted.
const SHOWN_PROBLEMS: usize = 25;
const SYSTEM_FIELDS: [&str; 5] = ["id", "created", "updated", "owner", "rev"];

/// SplitMix64: small, seedable, good enough to pick delays and sizes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The user fields of record `id`: a pure function of the id, so any record
/// read back can be checked without remembering what was sent. Sizes vary
/// from a few hundred bytes to ~16 KB; numbers are exact in binary and
/// decimal so they survive any JSON round trip.
fn expected_data(id: &str) -> Map<String, Value> {
    let hash = fnv1a(id.as_bytes());
    let mut rng = Rng::new(hash);
    let pad_len = if rng.below(50) == 0 {
        rng.between((4_000, 16_000))
    } else {
        rng.below(300)
    };
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-_";
    let pad: String = (0..pad_len)
        .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
        .collect();
    let tags: Vec<Value> = (0..rng.below(5))
        .map(|i| Value::String(format!("t{}-{i}", rng.below(100))))
        .collect();
    let n = (hash % 1_000_000) as i64;
    let score = rng.below(80_000) as f64 / 8.0 - 5_000.0;
    let check = format!("{:016x}", fnv1a(format!("{id}|{n}|{pad}").as_bytes()));
    let value = json!({
        "title": format!("crash record {id}"),
        "n": n,
        "score": score,
        "flag": hash & 1 == 1,
        "tags": tags,
        "meta": {
            "hash": format!("{hash:016x}"),
            "nested": {"list": [1, "two", {"three": id}, null], "empty": {}},
            "text": "žluťoučký kůň \u{1F40E} \"quoted\" \\ back\nslash",
        },
        "pad": pad,
        "check": check,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

fn request_body(id: &str) -> Value {
    let mut body = expected_data(id);
    body.insert("id".into(), Value::String(id.to_owned()));
    Value::Object(body)
}

fn collection_definition() -> Value {
    json!({
        "name": COLLECTION,
        "strict": true,
        "fields": {
            "title": {"type": "string", "required": true, "max_length": 200},
            "n": {"type": "integer", "required": true, "min": 0},
            "score": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "max_length": 8},
            "meta": {"type": "json"},
            "pad": {"type": "string"},
            "check": {"type": "string", "required": true},
        },
        "indexes": ["n"],
    })
}

fn short(value: &impl std::fmt::Display) -> String {
    let text = value.to_string();
    if text.len() <= 300 {
        return text;
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Checks a record as stored or served against what was sent for `id`.
fn check_record(id: &str, record: &Value, owner: &str) -> Result<(), String> {
    let Some(fields) = record.as_object() else {
        return Err(format!("{id}: not a JSON object: {}", short(record)));
    };
    let mut problems = Vec::new();
    if fields.get("id").and_then(Value::as_str) != Some(id) {
        problems.push(format!("id is {:?}", fields.get("id")));
    }
    if fields.get("rev").and_then(Value::as_u64) != Some(1) {
        problems.push(format!("rev is {:?}", fields.get("rev")));
    }
    if fields.get("owner").and_then(Value::as_str) != Some(owner) {
        problems.push(format!("owner is {:?}", fields.get("owner")));
    }
    match (fields.get("created"), fields.get("updated")) {
        (Some(Value::String(created)), Some(Value::String(updated))) if created == updated => {}
        (created, updated) => problems.push(format!("created {created:?}, updated {updated:?}")),
    }
    let mut data = fields.clone();
    for name in SYSTEM_FIELDS {
        data.remove(name);
    }
    let expected = expected_data(id);
    if data != expected {
        let mut names: Vec<&String> = data.keys().chain(expected.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if data.get(name) != expected.get(name) {
                problems.push(format!(
                    "field {name}: sent {}, got {}",
                    short(&expected.get(name).cloned().unwrap_or(Value::Null)),
                    short(&data.get(name).cloned().unwrap_or(Value::Null)),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{id}: {}", problems.join("; ")))
    }
}

/// A create whose answer never arrived: all of its ids or none may exist.
#[derive(Clone, Debug)]
struct Pending {
    ids: Vec<String>,
    batch: bool,
}

impl Pending {
    fn body(&self) -> Value {
        if self.batch {
            Value::Array(self.ids.iter().map(|id| request_body(id)).collect())
        } else {
            request_body(&self.ids[0])
        }
    }
}

#[derive(Default)]
struct Problems {
    count: usize,
    lost: usize,
    shown: Vec<String>,
}

impl Problems {
    fn add(&mut self, problem: String) {
        self.count += 1;
        if self.shown.len() < SHOWN_PROBLEMS {
            self.shown.push(problem);
        }
    }

    fn lost(&mut self, problem: String) {
        self.lost += 1;
        self.add(problem);
    }
}

/// What the writers of one round saw.
#[derive(Default)]
struct RoundLog {
    /// Acknowledged ids with the record the server answered with (`None`
    /// when the 201 arrived but its body did not).
    acked: Vec<(String, Option<Value>)>,
    acked_requests: usize,
    /// Ids whose create went out more than once and was answered 409 only.
    claimed: Vec<String>,
    duplicates: usize,
    pending: Vec<Pending>,
    unexpected: Vec<String>,
}

/// Everything acknowledged so far.
#[derive(Default)]
struct Ledger {
    acked: HashMap<String, Option<Value>>,
    acked_requests: usize,
    /// Acknowledged only by a 409 to a duplicate create.
    claimed: HashSet<String>,
    duplicates: usize,
    in_doubt_requests: usize,
    in_doubt_records: usize,
    in_doubt_committed: usize,
    largest_seq: u64,
}

enum Answer {
    Created(Option<Value>),
    Other(u16, String),
    /// No answer: the server died with the request in flight (or before it
    /// was sent; the client cannot always tell).
    Lost(String),
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> Answer {
    let response = match http.post(url).bearer_auth(token).json(body).send().await {
        Ok(response) => response,
        Err(e) => return Answer::Lost(e.to_string()),
    };
    let status = response.status().as_u16();
    match (status, response.text().await) {
        (201, Ok(text)) => match serde_json::from_str(&text) {
            Ok(body) => Answer::Created(Some(body)),
            Err(_) if text.is_empty() => Answer::Created(None),
            Err(e) => Answer::Other(201, format!("unparsable body ({e}): {}", short(&text))),
        },
        // The 201 is the acknowledgement; a body cut off by the kill after
        // it does not undo the write.
        (201, Err(_)) => Answer::Created(None),
        (status, Ok(text)) => Answer::Other(status, short(&text)),
        (status, Err(e)) => Answer::Other(status, format!("(body lost: {e})")),
    }
}

/// Splits a 201 answer into one record per id, checking that it matches.
fn created_records(
    ids: &[String],
    batch: bool,
    body: Option<Value>,
    owner: &str,
) -> Result<Vec<(String, Option<Value>)>, String> {
    let Some(body) = body else {
        return Ok(ids.iter().map(|id| (id.clone(), None)).collect());
    };
    let items = if batch {
        match body.get("items").and_then(Value::as_array) {
            Some(items) if items.len() == ids.len() => items.clone(),
            _ => {
                return Err(format!(
                    "batch answer without {} items: {}",
                    ids.len(),
                    short(&body)
                ))
            }
        }
    } else {
        vec![body]
    };
    let mut records = Vec::with_capacity(ids.len());
    for (id, item) in ids.iter().zip(items) {
        check_record(id, &item, owner).map_err(|e| format!("answer to the create of {e}"))?;
        records.push((id.clone(), Some(item)));
    }
    Ok(records)
}

/// Books the answers to several sends of one single create: at most one may
/// be 201, and a 409 without a 201 still says that the record exists.
fn settle_copies(request: Pending, answers: Vec<Answer>, owner: &str, log: &mut RoundLog) {
    let id = request.ids[0].clone();
    log.duplicates += 1;
    let (mut created, mut conflicts, mut lost) = (Vec::new(), 0, 0);
    for answer in answers {
        match answer {
            Answer::Created(body) => created.push(body),
            Answer::Other(409, _) => conflicts += 1,
            Answer::Other(status, text) => log
                .unexpected
                .push(format!("create of {id}: answered {status}: {text}")),
            Answer::Lost(_) => lost += 1,
        }
    }
    if created.len() > 1 {
        log.unexpected.push(format!(
            "{} copies of the create of {id} answered 201",
            created.len()
        ));
    }
    if let Some(body) = created.pop() {
        log.acked_requests += 1;
        match created_records(&request.ids, false, body, owner) {
            Ok(records) => log.acked.extend(records),
            Err(e) => {
                log.unexpected.push(e);
                log.acked.push((id, None));
            }
        }
    } else if conflicts > 0 {
        // "Already exists": a retrying client takes it as written.
        log.claimed.push(id);
    } else if lost > 0 {
        log.pending.push(request);
    }
}

struct Writer {
    url: String,
    token: String,
    owner: String,
    round: usize,
    task: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<RoundLog>>,
}

impl Writer {
    async fn run(self) {
        let http = client();
        let mut rng = Rng::new(self.seed ^ ((self.round as u64) << 32) ^ self.task as u64);
        let mut next = 0;
        while !self.stop.load(Ordering::SeqCst) {
            let batch = rng.below(BATCH_ONE_IN) == 0;
            let size = if batch { rng.between(BATCH_SIZE) } else { 1 };
            let ids: Vec<String> = (0..size)
                .map(|_| {
                    next += 1;
                    format!("r{}-{}-{next}", self.round, self.task)
                })
                .collect();
            let request = Pending { ids, batch };
            let body = request.body();
            // A client retrying early: the same create again on another
            // connection while the first may still wait for its fsync.
            if !batch && DUPLICATE_ONE_IN > 0 && rng.below(DUPLICATE_ONE_IN) == 0 {
                let pause = Duration::from_micros(rng.below(3_000));
                let (first, second) =
                    tokio::join!(post(&http, &self.url, &self.token, &body), async {
                        tokio::time::sleep(pause).await;
                        post(&http, &self.url, &self.token, &body).await
                    });
                let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                settle_copies(request, vec![first, second], &self.owner, &mut log);
                continue;
            }
            let answer = post(&http, &self.url, &self.token, &body).await;
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            match answer {
                Answer::Created(body) => {
                    log.acked_requests += 1;
                    match created_records(&request.ids, batch, body, &self.owner) {
                        Ok(records) => log.acked.extend(records),
                        Err(e) => {
                            log.unexpected.push(e);
                            log.acked
                                .extend(request.ids.iter().map(|id| (id.clone(), None)));
                        }
                    }
                }
                Answer::Other(status, text) => log.unexpected.push(format!(
                    "create of {:?}: answered {status}: {text}",
                    request.ids
                )),
                Answer::Lost(_) => log.pending.push(request),
            }
        }
    }
}

/// What the change log holds after a kill.
#[derive(Default)]
struct LogView {
    /// `crash` creates: id → the record JSON logged with it.
    creates: HashMap<String, Value>,
    /// seq → digest of the entry, to notice old entries changing without
    /// parsing them all again every round.
    digests: HashMap<u64, u64>,
    /// Creates this check saw for the first time.
    fresh: HashSet<String>,
    first_seq: u64,
    last_seq: u64,
}

fn change_digest(change: &pulsebase::store::change::Change) -> u64 {
    let mut bytes = format!(
        "{:?}|{}|{}|",
        change.kind, change.collection, change.record_id
    )
    .into_bytes();
    for part in [&change.after, &change.before] {
        match part {
            Some(json) => {
                bytes.push(1);
                bytes.extend_from_slice(json);
            }
            None => bytes.push(0),
        }
    }
    fnv1a(&bytes)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Reads the database at `db` with the library and checks it against what
/// the clients saw. Entries unchanged since `previous` are not parsed again
/// and their records not read again, unless `full`. The store is closed
/// before returning.
fn offline_check(
    db: &Path,
    mut previous: LogView,
    full: bool,
    ledger: &Ledger,
    pending: &[Pending],
    owner: &str,
    problems: &mut Problems,
) -> LogView {
    let store = Store::open(db).expect("open the database with the library");
    let first_seq = store.first_seq().expect("first_seq");
    let last_seq = store.last_seq().expect("last_seq");
    let mut creates: HashMap<String, Value> = HashMap::new();
    let mut digests = HashMap::new();
    let mut fresh = HashSet::new();
    let mut expected_seq = first_seq;
    for change in store.changes_after(0) {
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                problems.add(format!(
                    "change-log entry after seq {} does not decode: {e}",
                    expected_seq.saturating_sub(1)
                ));
                continue;
            }
        };
        if change.seq != expected_seq {
            problems.add(format!(
                "change log: expected seq {expected_seq}, found {} (hole or disorder)",
                change.seq
            ));
        }
        expected_seq = change.seq + 1;
        let digest = change_digest(&change);
        digests.insert(change.seq, digest);
        let known = previous.digests.get(&change.seq).copied();
        if known.is_some_and(|known| known != digest) {
            problems.add(format!(
                "change-log entry {} ({:?} of {}) changed since the previous kill",
                change.seq, change.kind, change.record_id
            ));
        }
        if !full && known == Some(digest) && change.collection == COLLECTION {
            if let Some(after) = previous.creates.remove(&change.record_id) {
                creates.insert(change.record_id, after);
                continue;
            }
        }
        let parse = |what: &str, bytes: &Option<Vec<u8>>, problems: &mut Problems| {
            let bytes = bytes.as_ref()?;
            match serde_json::from_slice::<Value>(bytes) {
                Ok(value) => Some(value),
                Err(e) => {
                    problems.add(format!("change {}: `{what}` is not JSON: {e}", change.seq));
                    None
                }
            }
        };
        let after = parse("after", &change.after, problems);
        parse("before", &change.before, problems);
        if change.collection != COLLECTION {
            continue;
        }
        match (change.kind, after) {
            (ChangeKind::Create, Some(after)) => {
                if creates.insert(change.record_id.clone(), after).is_some() {
                    problems.add(format!("change log creates {} twice", change.record_id));
                }
                fresh.insert(change.record_id);
            }
            (kind, _) => problems.add(format!(
                "change {}: unexpected {kind:?} of {} (or no `after`)",
                change.seq, change.record_id
            )),
        }
    }
    if expected_seq != last_seq + 1 && last_seq != 0 {
        problems.add(format!(
            "change log ends at {}, last_seq says {last_seq}",
            expected_seq - 1
        ));
    }

    let collection = store
        .catalog()
        .get(COLLECTION)
        .expect("the collection survives the kill");
    let count = store.record_count(collection.id).expect("record count");
    if count != creates.len() as u64 {
        problems.add(format!(
            "the count key says {count} records, the change log has {} creates",
            creates.len()
        ));
    }
    for (id, after) in &creates {
        if !full && !fresh.contains(id) {
            continue;
        }
        match store.get_record(collection.id, id) {
            Ok(Some(record)) if Value::Object(record.fields.clone()) == *after => {}
            Ok(Some(record)) => problems.add(format!(
                "record {id} differs from its change-log entry: {} vs {}",
                short(&Value::Object(record.fields)),
                short(after)
            )),
            Ok(None) => problems.add(format!(
                "the change log creates {id} but the record is missing"
            )),
            Err(e) => problems.add(format!("record {id} does not read back: {e}")),
        }
    }

    for (id, answer) in &ledger.acked {
        let Some(stored) = creates.get(id) else {
            problems.lost(if ledger.claimed.contains(id) {
                format!(
                    "LOST: {id} was answered 409 (already exists) to a duplicate create, but is \
                     not in the change log"
                )
            } else {
                format!("LOST: acknowledged record {id} is not in the change log")
            });
            continue;
        };
        // An answer was itself checked against what was sent.
        let verdict = match answer {
            Some(answer) if answer == stored => Ok(()),
            Some(answer) => Err(format!(
                "{id}: stored {} but the server answered {}",
                short(stored),
                short(answer)
            )),
            None => check_record(id, stored, owner),
        };
        if let Err(e) = verdict {
            problems.add(format!("acknowledged record corrupt: {e}"));
        }
    }
    let mut sent_in_doubt = HashSet::new();
    for request in pending {
        let present: Vec<&String> = request
            .ids
            .iter()
            .filter(|id| creates.contains_key(*id))
            .collect();
        if !present.is_empty() && present.len() != request.ids.len() {
            problems.add(format!(
                "torn batch: {} of {} records present: {:?}",
                present.len(),
                request.ids.len(),
                request.ids
            ));
        }
        for id in present {
            if let Err(e) = check_record(id, &creates[id], owner) {
                problems.add(format!("unacknowledged record corrupt: {e}"));
            }
        }
        sent_in_doubt.extend(request.ids.iter().cloned());
    }
    for id in creates.keys() {
        if !ledger.acked.contains_key(id) && !sent_in_doubt.contains(id) {
            problems.add(format!(
                "record {id} exists but was never sent or was refused"
            ));
        }
    }
    drop(store);
    LogView {
        creates,
        digests,
        fresh,
        first_seq,
        last_seq,
    }
}

/// The admin the clients act as.
struct Session {
    http: reqwest::Client,
    token: String,
    /// The admin's user id: the `owner` of every record.
    owner: String,
}

/// The records of the collection in `sort` order, page by page, until
/// `enough` says so or the end. `fields` projects (`id` always stays).
async fn list(
    session: &Session,
    server: &TestServer,
    sort: &str,
    fields: Option<&str>,
    mut enough: impl FnMut(&[Value]) -> bool,
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", PAGE.to_string()), ("sort", sort.to_owned())];
        if let Some(fields) = fields {
            query.push(("fields", fields.to_owned()));
        }
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let (status, body) = send(
            session
                .http
                .get(server.url(&format!("/api/collections/{COLLECTION}/records")))
                .bearer_auth(&session.token)
                .query(&query),
        )
        .await;
        assert_eq!(status, 200, "list sorted by {sort}: {}", short(&body));
        let page = body["items"].as_array().expect("items");
        assert!(page.len() <= PAGE, "a page larger than the limit");
        items.extend(page.iter().cloned());
        if enough(page) {
            return items;
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Compares what the restarted server serves with the change log read
/// offline before the restart: the id set through the `created` or the `n`
/// index (index entries commit with their records; both when `full`), and
/// the content of the records new since the previous kill (of all of them
/// when `full`).
async fn verify_over_http(
    session: &Session,
    server: &TestServer,
    view: &LogView,
    round: usize,
    full: bool,
    problems: &mut Problems,
) {
    let logged: HashSet<&String> = view.creates.keys().collect();
    let indexes: &[&str] = match (full, round % 2) {
        (true, _) => &["created", "n"],
        (false, 0) => &["created"],
        (false, _) => &["n"],
    };
    for &sort in indexes {
        let listed = list(session, server, sort, Some("id"), |_| false).await;
        let mut served = HashSet::new();
        for record in &listed {
            let id = record["id"].as_str().unwrap_or_default();
            if !served.insert(id.to_owned()) {
                problems.add(format!("listing by {sort} returned {id} twice"));
            }
        }
        let served: HashSet<&String> = served.iter().collect();
        for id in served.difference(&logged) {
            problems.add(format!(
                "listing by {sort} serves {id}, never created in the log"
            ));
        }
        for id in logged.difference(&served) {
            problems.add(format!(
                "{id} is in the change log but listing by {sort} misses it"
            ));
        }
    }
    // Newest first; unless `full`, stop once every fresh record was seen.
    let mut unseen: HashSet<&str> = view.fresh.iter().map(String::as_str).collect();
    let newest = list(session, server, "-created", None, |page| {
        for record in page {
            unseen.remove(record["id"].as_str().unwrap_or_default());
        }
        !full && unseen.is_empty()
    })
    .await;
    for record in &newest {
        let id = record["id"].as_str().unwrap_or_default();
        match view.creates.get(id) {
            Some(logged) if logged == record => {}
            Some(logged) => problems.add(format!(
                "served {} but the change log holds {}",
                short(record),
                short(logged)
            )),
            None => {} // reported above
        }
    }
    for id in unseen {
        problems.add(format!("{id} was not served in full"));
    }
}

/// Retries each request whose answer was lost: 201 if it had not been
/// written, 409 if it had (the whole of it).
async fn retry_in_doubt(
    session: &Session,
    url: &str,
    pending: Vec<Pending>,
    view: &LogView,
    ledger: &mut Ledger,
    problems: &mut Problems,
) {
    for request in pending {
        let written = request.ids.iter().all(|id| view.creates.contains_key(id));
        let answer = post(&session.http, url, &session.token, &request.body()).await;
        match (written, answer) {
            (false, Answer::Created(body)) => {
                match created_records(&request.ids, request.batch, body, &session.owner) {
                    Ok(records) => ledger.acked.extend(records),
                    Err(e) => problems.add(format!("retry: {e}")),
                }
            }
            (true, Answer::Other(409, _)) => {
                ledger.in_doubt_committed += 1;
                for id in &request.ids {
                    ledger
                        .acked
                        .insert(id.clone(), Some(view.creates[id].clone()));
                }
            }
            (written, Answer::Created(_)) => problems.add(format!(
                "retry of {:?} (written: {written}) answered 201",
                request.ids
            )),
            (written, Answer::Other(status, text)) => problems.add(format!(
                "retry of {:?} (written: {written}) answered {status}: {text}",
                request.ids
            )),
            (_, Answer::Lost(e)) => problems.add(format!("retry of {:?} failed: {e}", request.ids)),
        }
    }
}

/// Sends the create of `id` on `RACERS` connections, two at a time 1 ms
/// apart; the first to be answered 409 kills the server at once. A 409 says
/// `id` exists, so it must not come before the fsync that makes it so.
async fn race_for_conflict(
    session: &Session,
    url: &str,
    id: &str,
    server: &Arc<Mutex<TestServer>>,
    stop: &Arc<AtomicBool>,
) -> Vec<Answer> {
    let body = Arc::new(request_body(id));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let (http, url, token) = (session.http.clone(), url.to_owned(), session.token.clone());
            let (body, server, stop) = (body.clone(), server.clone(), stop.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i / 2)).await;
                let answer = post(&http, &url, &token, &body).await;
                if matches!(answer, Answer::Other(409, _)) {
                    tokio::task::block_in_place(|| {
                        server.lock().unwrap_or_else(|e| e.into_inner()).kill();
                    });
                    stop.store(true, Ordering::SeqCst);
                }
                answer
            })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.expect("racer task"));
    }
    answers
}

fn start(data: &Path) -> TestServer {
    let options = Options {
        // Explicit, so a PULSEBASE_DURABILITY in the environment cannot
        // weaken the test.
        args: vec!["--durability".into(), "sync".into()],
        ..Options::default()
    };
    tokio::task::block_in_place(|| TestServer::start_in(data, options))
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {text:?}")),
    )
}

struct Run {
    seed: u64,
    dir: Option<tempfile::TempDir>,
}

impl Run {
    /// Fails the test if the round found problems, keeping the data dir.
    fn check(&mut self, round: usize, stage: &str, problems: &Problems, ledger: &Ledger) {
        if problems.count == 0 {
            return;
        }
        let kept = self
            .dir
            .take()
            .map(|dir| dir.keep().display().to_string())
            .unwrap_or_default();
        panic!(
            "crash test failed in round {round} ({stage}): {} problems, {} acknowledged records \
             lost (of {} acknowledged so far). Seed {} (PULSEBASE_CRASH_SEED), data dir kept at \
             {kept}\n  {}",
            problems.count,
            problems.lost,
            ledger.acked.len(),
            self.seed,
            problems.shown.join("\n  ")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let started = Instant::now();
    let seed = env_number("PULSEBASE_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rounds = env_number("PULSEBASE_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |n| n as usize);
    assert!(rounds >= 1, "PULSEBASE_CRASH_ROUNDS must be at least 1");
    println!("crash test: seed {seed} (PULSEBASE_CRASH_SEED), {rounds} kills, {WRITERS} writers");

    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let scratch = dir.path().join("scratch");
    let mut run = Run {
        seed,
        dir: Some(dir),
    };
    let mut rng = Rng::new(seed);
    let mut session = Session {
        http: client(),
        token: String::new(),
        owner: String::new(),
    };
    let mut ledger = Ledger::default();
    let mut pending: Vec<Pending> = Vec::new();
    let mut view = LogView::default();

    for round in 0..=rounds {
        let round_started = Instant::now();
        let mut problems = Problems::default();
        let mut server = start(&data);
        let url = server.url(&format!("/api/collections/{COLLECTION}/records"));
        let last = round == rounds;
        if round > 0 {
            verify_over_http(&session, &server, &view, round, last, &mut problems).await;
            run.check(round, "after restart", &problems, &ledger);
            let retry = std::mem::take(&mut pending);
            retry_in_doubt(&session, &url, retry, &view, &mut ledger, &mut problems).await;
            run.check(round, "retrying lost answers", &problems, &ledger);
        } else {
            session.token = server.admin_token().await;
            let me = session
                .http
                .get(server.url("/api/auth/me"))
                .bearer_auth(&session.token);
            let (status, me) = send(me).await;
            assert_eq!(status, 200, "me: {me}");
            session.owner = me["id"].as_str().expect("admin id").to_owned();
            server
                .create_collection(&session.token, collection_definition())
                .await;
        }

        if last {
            let clean = tokio::task::block_in_place(|| server.terminate());
            assert!(clean, "the server did not stop cleanly on SIGTERM");
            let previous = std::mem::take(&mut view);
            let final_view = tokio::task::block_in_place(|| {
                offline_check(
                    &data.join("db"),
                    previous,
                    true,
                    &ledger,
                    &[],
                    &session.owner,
                    &mut problems,
                )
            });
            if final_view.creates.len() != ledger.acked.len() {
                problems.add(format!(
                    "after the last retries {} records exist, {} were acknowledged",
                    final_view.creates.len(),
                    ledger.acked.len()
                ));
            }
            run.check(round, "final check", &problems, &ledger);
            ledger.largest_seq = final_view.last_seq;
            view = final_view;
            break;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(RoundLog::default()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|task| {
                tokio::spawn(
                    Writer {
                        url: url.clone(),
                        token: session.token.clone(),
                        owner: session.owner.clone(),
                        round,
                        task,
                        seed,
                        stop: stop.clone(),
                        log: log.clone(),
                    }
                    .run(),
                )
            })
            .collect();
        let delay = rng.between(KILL_AFTER_MS);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let server = Arc::new(Mutex::new(server));
        let raced = format!("p{round}");
        let answers = race_for_conflict(&session, &url, &raced, &server, &stop).await;
        let killed_at = if server.lock().unwrap_or_else(|e| e.into_inner()).pid() == 0 {
            "a 409"
        } else {
            "the end of the race"
        };
        tokio::task::block_in_place(|| server.lock().unwrap_or_else(|e| e.into_inner()).kill());
        stop.store(true, Ordering::SeqCst);
        for writer in writers {
            writer.await.expect("writer task");
        }
        let mut log = std::mem::take(&mut *log.lock().unwrap_or_else(|e| e.into_inner()));
        let raced = Pending {
            ids: vec![raced],
            batch: false,
        };
        settle_copies(raced, answers, &session.owner, &mut log);
        for unexpected in log.unexpected {
            problems.add(unexpected);
        }
        let acked_now = log.acked.len();
        let claimed_now = log.claimed.len();
        let duplicates_now = log.duplicates;
        ledger.acked.extend(log.acked);
        ledger.duplicates += log.duplicates;
        for id in log.claimed {
            ledger.acked.insert(id.clone(), None);
            ledger.claimed.insert(id);
        }
        ledger.acked_requests += log.acked_requests;
        ledger.in_doubt_requests += log.pending.len();
        ledger.in_doubt_records += log.pending.iter().map(|p| p.ids.len()).sum::<usize>();
        pending = log.pending;

        // Copy first: the restarted server, not this check, must be the
        // first to recover this crash image.
        let copy = scratch.join(format!("db-{round}"));
        let previous = std::mem::take(&mut view);
        let round_view = tokio::task::block_in_place(|| {
            copy_dir(&data.join("db"), &copy).expect("copy the database");
            let view = offline_check(
                &copy,
                previous,
                false,
                &ledger,
                &pending,
                &session.owner,
                &mut problems,
            );
            std::fs::remove_dir_all(&copy).expect("remove the copy");
            view
        });
        let in_doubt_written = pending
            .iter()
            .filter(|p| round_view.creates.contains_key(&p.ids[0]))
            .count();
        println!(
            "round {round:2}: killed after {delay:3} ms at {killed_at}; {acked_now:4} records acknowledged in \
             {:4} requests (+{claimed_now} by a lone 409 of {duplicates_now} duplicated), {:2} \
             requests in doubt ({in_doubt_written} written); log seqs {}..={}, {} records; \
             round took {} ms",
            log.acked_requests,
            pending.len(),
            round_view.first_seq,
            round_view.last_seq,
            round_view.creates.len(),
            round_started.elapsed().as_millis()
        );
        run.check(round, "offline check after the kill", &problems, &ledger);
        ledger.largest_seq = round_view.last_seq;
        view = round_view;
    }

    let records = view.creates.len();
    println!(
        "crash test passed: {rounds} kills, {} records acknowledged ({} requests answered 201, \
         {} by a lone 409 of {} duplicated creates), {} requests ({} records) in doubt of which \
         {} had been written, 0 lost, {records} records at the end, change log up to seq {}, no \
         holes; {:.1} s (seed {seed})",
        ledger.acked.len(),
        ledger.acked_requests,
        ledger.claimed.len(),
        ledger.duplicates,
        ledger.in_doubt_requests,
        ledger.in_doubt_records,
        ledger.in_doubt_committed,
        ledger.largest_seq,
        started.elapsed().as_secs_f64()
    );
}
