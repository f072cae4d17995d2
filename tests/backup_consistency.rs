//! A live backup taken while creates, updates and deletes hammer several
//! collections restores to one consistent state: every write acknowledged
//! before the backup was asked for is in it, no record is at a state it
//! never had, counts and indexes agree with the records, and the change
//! log has no gap and replays to exactly the records. And writes keep being
//! answered while the backup is taken.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client, send, Options, TestServer};
use serde_json::{json, Value};

const COLLECTIONS: [&str; 3] = ["alpha", "beta", "gamma"];
const WRITERS_PER_COLLECTION: usize = 2;
/// Records loaded before the writes start, per collection: enough that the
/// copy takes many chunks.
const PRELOAD: usize = 6_000;

/// One write to one record: the state it leaves (`n`, or `None` once
/// deleted), when it was sent and when it was answered.
#[derive(Debug, Clone)]
struct Op {
    state: Option<i64>,
    sent: Instant,
    acked: Instant,
}

type History = Arc<Mutex<HashMap<(String, String), Vec<Op>>>>;

/// Creates a record, updates it twice, deletes every other one; each
/// writer owns its record ids, so a record's writes are in order.
async fn hammer(
    server_base: String,
    token: String,
    collection: &'static str,
    writer: usize,
    history: History,
    acks: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let records = format!("{server_base}/api/collections/{collection}/records");
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let id = format!("w{writer}x{i:06}");
        let key = (collection.to_owned(), id.clone());
        let mut steps: Vec<(Option<i64>, reqwest::RequestBuilder)> = vec![(
            Some(0),
            client()
                .post(&records)
                .json(&json!({"id": id, "w": format!("w{writer}"), "n": 0})),
        )];
        for n in 1..=2 {
            steps.push((
                Some(n),
                client()
                    .patch(format!("{records}/{id}"))
                    .json(&json!({"n": n})),
            ));
        }
        if i % 2 == 0 {
            steps.push((None, client().delete(format!("{records}/{id}"))));
        }
        for (state, request) in steps {
            let sent = Instant::now();
            let (status, body) = send(request.bearer_auth(&token)).await;
            assert!((200..300).contains(&status), "{status} {body}");
            let acked = Instant::now();
            acks.lock().expect("lock").push(acked);
            history
                .lock()
                .expect("lock")
                .entry(key.clone())
                .or_default()
                .push(Op { state, sent, acked });
        }
        i += 1;
    }
}

/// Every record of a collection as id → `n`, page by page.
async fn list_all(
    server: &TestServer,
    token: &str,
    collection: &str,
    filter: &str,
) -> BTreeMap<String, i64> {
    let mut found = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!(
            "/api/collections/{collection}/records?limit=1000&fields=id,n"
        ));
        if !filter.is_empty() {
            url.push_str(&format!("&filter={}", urlencode(filter)));
        }
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = send(client().get(url).bearer_auth(token)).await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            let id = item["id"].as_str().expect("id").to_owned();
            found.insert(id, item["n"].as_i64().unwrap_or(-1));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_writes_restores_to_one_consistent_state() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    for name in COLLECTIONS {
        server
            .create_collection(
                &admin,
                json!({"name": name,
                       "fields": {"w": {"type": "string"}, "n": {"type": "integer"}},
                       "indexes": ["w", "n"]}),
            )
            .await;
        let batch: Vec<Value> = (0..PRELOAD)
            .map(|i| json!({"id": format!("pre{i:06}"), "w": "pre", "n": 0}))
            .collect();
        let (status, body) = send(
            client()
                .post(server.url(&format!("/api/collections/{name}/records")))
                .bearer_auth(&admin)
                .json(&batch),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    let history: History = Arc::default();
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (c, collection) in COLLECTIONS.into_iter().enumerate() {
        for w in 0..WRITERS_PER_COLLECTION {
            tasks.push(tokio::spawn(hammer(
                server.base.clone(),
                admin.clone(),
                collection,
                c * WRITERS_PER_COLLECTION + w,
                history.clone(),
                acks.clone(),
                stop.clone(),
            )));
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let asked = Instant::now();
    let response = client()
        .get(server.url("/api/backup"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("backup");
    let answered = Instant::now();
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("backup body");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in tasks {
        task.await.expect("writer");
    }

    // Writes went on while the backup was taken: no pause in the answers
    // as long as half the backup (the old backup held every write for all
    // of its copy).
    let mut during: Vec<Instant> = acks
        .lock()
        .expect("lock")
        .iter()
        .copied()
        .filter(|t| *t > asked && *t < answered)
        .collect();
    during.sort();
    let window = answered - asked;
    let mut longest = Duration::ZERO;
    let mut last = asked;
    for t in during.iter().copied().chain([answered]) {
        longest = longest.max(t - last);
        last = t;
    }
    assert!(
        during.len() >= 10 && longest < window / 2,
        "{} writes answered during a {window:?} backup, longest pause {longest:?}",
        during.len()
    );

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("live.pbbackup");
    std::fs::write(&file, &bytes).expect("write backup");
    let restored_dir = dir.path().join("restored");
    let restore = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args(["restore"])
        .arg(&file)
        .arg("--data")
        .arg(&restored_dir)
        .output()
        .expect("restore");
    assert!(restore.status.success(), "{restore:?}");

    let mut restored = TestServer::start_in(
        &restored_dir,
        Options {
            admin: false,
            ..Options::default()
        },
    );
    let (status, stats) = send(client().get(restored.url("/api/stats")).bearer_auth(&admin)).await;
    assert_eq!(status, 200);
    let history = history.lock().expect("lock").clone();
    let mut listed: HashMap<(String, String), i64> = HashMap::new();
    for collection in COLLECTIONS {
        let all = list_all(&restored, &admin, collection, "").await;
        assert_eq!(
            stats["records"][collection],
            json!(all.len()),
            "{collection}: the count matches the records"
        );
        // Index-backed queries agree with the full listing.
        let mut by_writer = 0;
        for w in ["pre".to_owned()]
            .into_iter()
            .chain((0..COLLECTIONS.len() * WRITERS_PER_COLLECTION).map(|w| format!("w{w}")))
        {
            let found = list_all(&restored, &admin, collection, &format!("w = '{w}'")).await;
            let prefix = if w == "pre" {
                "pre".to_owned()
            } else {
                format!("{w}x")
            };
            let expected: BTreeMap<String, i64> = all
                .iter()
                .filter(|(id, _)| id.starts_with(&prefix))
                .map(|(id, n)| (id.clone(), *n))
                .collect();
            assert_eq!(found, expected, "{collection}: index on w = {w}");
            by_writer += found.len();
        }
        assert_eq!(
            by_writer,
            all.len(),
            "{collection}: every record is in the w index"
        );
        for n in 0..=2 {
            let found = list_all(&restored, &admin, collection, &format!("n = {n}")).await;
            let expected: BTreeMap<String, i64> = all
                .iter()
                .filter(|(_, v)| **v == n)
                .map(|(id, v)| (id.clone(), *v))
                .collect();
            assert_eq!(found, expected, "{collection}: index on n = {n}");
        }
        for (id, n) in all {
            listed.insert((collection.to_owned(), id), n);
        }
    }

    // Each record is at a state it had between the last write acknowledged
    // before the backup was asked for and the answer: nothing acknowledged
    // is missing, nothing is at a state that never was.
    for (key, ops) in &history {
        let now = listed.get(key).copied();
        let last_acked = ops.iter().rposition(|op| op.acked < asked);
        let mut allowed: Vec<Option<i64>> = Vec::new();
        if last_acked.is_none() {
            allowed.push(None);
        }
        for op in &ops[last_acked.unwrap_or(0)..] {
            if op.sent < answered {
                allowed.push(op.state);
            }
        }
        assert!(
            allowed.contains(&now),
            "{key:?} restored as {now:?}, allowed {allowed:?}"
        );
    }
    for (collection, id) in listed.keys() {
        assert!(
            id.starts_with("pre") || history.contains_key(&(collection.clone(), id.clone())),
            "{collection}/{id} was never written"
        );
    }
    let seq = stats["seq"].as_u64().expect("seq");
    assert!(restored.terminate(), "clean stop");

    // The change log has no gap and replays to exactly the records.
    let store = pulsebase::store::Store::open(&restored_dir.join("db")).expect("open restored");
    let mut replayed: HashMap<(String, String), i64> = HashMap::new();
    let mut expected_seq = store.first_seq().expect("first seq");
    assert_eq!(expected_seq, 1, "nothing trimmed");
    for change in store.changes_after(0) {
        let change = change.expect("change");
        assert_eq!(change.seq, expected_seq, "no gap in the change log");
        expected_seq += 1;
        if change.collection == "_users" {
            continue;
        }
        let key = (change.collection.clone(), change.record_id.clone());
        match &change.after {
            Some(after) => {
                let record: Value = serde_json::from_slice(after).expect("record json");
                replayed.insert(key, record["n"].as_i64().unwrap_or(-1));
            }
            None => {
                replayed.remove(&key);
            }
        }
    }
    assert_eq!(expected_seq - 1, seq, "the log ends at the restored seq");
    assert!(replayed == listed, "the change log replays to the records");
}
