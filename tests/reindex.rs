//! Collection updates against the real server: the check of every record
//! and the reindex run in chunks between write groups, so writes go on
//! meanwhile; writes made meanwhile must fit the new schema; a kill -9 in
//! the middle leaves the old collection, consistent. The server runs with
//! `PULSEBASE_CHORE_CHUNK=1` (one record per chunk), so that a collection
//! of a few thousand records takes thousands of chunks; the
//! `pulsebase_housekeeping_chunks_total{chore="migrate"}` metric says when
//! the walk has begun.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{client, error_code, send, Options, TestServer};
use pulsebase::store::Store;
use serde_json::{json, Value};

fn options() -> Options {
    Options {
        env: vec![("PULSEBASE_CHORE_CHUNK".into(), "1".into())],
        ..Options::default()
    }
}

async fn load(server: &TestServer, admin: &str, collection: &str, records: usize) {
    let url = server.url(&format!("/api/collections/{collection}/records"));
    for from in (0..records).step_by(1_000) {
        let batch: Vec<_> = (from..(from + 1_000).min(records))
            .map(|k| json!({"k": k, "size": k % 10}))
            .collect();
        let (status, body) = send(client().post(&url).bearer_auth(admin).json(&batch)).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Chunks of the collection walk done so far (0 when the metric is absent,
/// as it is for a server that updates collections in one step).
async fn migrate_chunks(server: &TestServer, admin: &str) -> u64 {
    let response = client()
        .get(server.url("/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .expect("scrape");
    let text = response.text().await.expect("metrics text");
    text.lines()
        .find_map(|l| l.strip_prefix("pulsebase_housekeeping_chunks_total{chore=\"migrate\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn wait_for_chunks(server: &TestServer, admin: &str, at_least: u64) {
    for _ in 0..2_000 {
        if migrate_chunks(server, admin).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("the collection walk did not run {at_least} chunks: is it chunked?");
}

fn patch(server: &TestServer, admin: &str, body: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = client()
        .patch(server.url("/api/collections/big"))
        .bearer_auth(admin)
        .json(&body);
    tokio::spawn(send(request))
}

async fn list(server: &TestServer, admin: &str, query: &[(&str, &str)]) -> Vec<i64> {
    let (status, page) = send(
        client()
            .get(server.url("/api/collections/big/records"))
            .bearer_auth(admin)
            .query(query),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["k"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn writes_go_on_while_a_patch_checks_and_reindexes_a_big_collection() {
    let server = TestServer::start_with(options());
    let admin = server.admin_token().await;
    let fields = json!({"size": {"type": "number"}});
    server
        .create_collection(&admin, json!({"name": "big", "fields": fields}))
        .await;
    server
        .create_collection(&admin, json!({"name": "small"}))
        .await;
    load(&server, &admin, "big", 20_000).await;

    let update = patch(
        &server,
        &admin,
        json!({"fields": {"size": {"type": "number", "max": 10}}, "indexes": ["k"]}),
    );
    wait_for_chunks(&server, &admin, 1).await;
    let records = |c: &str| server.url(&format!("/api/collections/{c}/records"));
    let (status, _) = send(
        client()
            .post(records("small"))
            .bearer_auth(&admin)
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 201);
    let during = json!({"k": -5, "size": 3});
    let (status, _) = send(
        client()
            .post(records("big"))
            .bearer_auth(&admin)
            .json(&during),
    )
    .await;
    assert_eq!(status, 201);
    // Fits the schema in force, not the one being installed.
    let misfit = json!({"k": -6, "size": 50});
    let (status, body) = send(
        client()
            .post(records("big"))
            .bearer_auth(&admin)
            .json(&misfit),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
    assert!(body["error"]["details"]["size"].is_string(), "{body}");
    assert!(
        !update.is_finished(),
        "the writes waited for the whole update"
    );
    let (status, again) = send(
        client()
            .patch(server.url("/api/collections/big"))
            .bearer_auth(&admin)
            .json(&json!({"indexes": ["size"]})),
    )
    .await;
    assert_eq!((status, error_code(&again)), (409, "conflict"), "{again}");

    let (status, body) = update.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["indexes"], json!(["k"]));
    assert_eq!(list(&server, &admin, &[("filter", "k = -5")]).await, [-5]);
    let top = list(&server, &admin, &[("filter", "k >= 19997"), ("sort", "k")]).await;
    assert_eq!(top, [19_997, 19_998, 19_999]);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// (collection version, its indexes, `k` index entries, stale markers)
fn offline(db: &Path) -> (u64, Vec<String>, usize, Vec<(u32, String)>) {
    let store = Store::open(db).expect("open the database with the library");
    let big = store.catalog().get("big").expect("big");
    (
        big.version,
        big.def.indexes.clone(),
        store.index_entry_count(big.id, "k").unwrap(),
        store.stale_indexes().unwrap(),
    )
}

#[tokio::test]
async fn a_kill_during_a_reindex_leaves_the_old_collection_consistent() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = TestServer::start_in(&data, options());
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "big"}))
        .await;
    server
        .create_collection(&admin, json!({"name": "small"}))
        .await;
    load(&server, &admin, "big", N).await;
    // Writes keep coming, so their fsyncs make the walk's entries durable
    // and the kill lands mid-walk.
    let small = server.url("/api/collections/small/records");
    let token = admin.clone();
    let writes = tokio::spawn(async move {
        loop {
            let _ = client()
                .post(&small)
                .bearer_auth(&token)
                .json(&json!({}))
                .send()
                .await;
        }
    });
    let _update = patch(&server, &admin, json!({"indexes": ["k"]}));
    wait_for_chunks(&server, &admin, 200).await;
    server.kill();
    writes.abort();

    // The crash image, read before any server recovers it.
    let copy = dir.path().join("copy");
    copy_dir(&data.join("db"), &copy);
    let (version, indexes, entries, stale) = offline(&copy);
    assert_eq!(
        (version, indexes.len()),
        (1, 0),
        "the old version is in force"
    );
    assert!(
        entries > 0 && entries < N,
        "killed mid-walk: {entries} entries"
    );
    assert_eq!(stale.len(), 1, "the walk's entries are marked: {stale:?}");

    let mut server = TestServer::start_in(&data, options());
    let admin = server.admin_token().await;
    let (status, big) = send(
        client()
            .get(server.url("/api/collections/big"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!((status, big["indexes"].clone()), (200, json!([])));
    // Record k = 0 was walked first, so it has a leftover entry; move it.
    let (_, page) = send(
        client()
            .get(server.url("/api/collections/big/records"))
            .bearer_auth(&admin)
            .query(&[("filter", "k = 0")]),
    )
    .await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = send(
        client()
            .patch(server.url(&format!("/api/collections/big/records/{id}")))
            .bearer_auth(&admin)
            .json(&json!({"k": 777_777})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Indexing `k` again waits for the leftovers to be gone (409 till then).
    let mut reindexed = None;
    for _ in 0..600 {
        let (status, body) = patch(&server, &admin, json!({"indexes": ["k"]}))
            .await
            .unwrap();
        if status != 409 {
            reindexed = Some((status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = reindexed.expect("the leftovers were removed");
    assert_eq!(status, 200, "{body}");
    assert!(list(&server, &admin, &[("filter", "k = 0")])
        .await
        .is_empty());
    assert_eq!(
        list(&server, &admin, &[("filter", "k = 777777")]).await,
        [777_777]
    );
    let low = list(&server, &admin, &[("filter", "k < 4"), ("sort", "k")]).await;
    assert_eq!(low, [1, 2, 3], "no duplicates, no stale values");
    assert!(server.terminate());
    let (version, indexes, entries, stale) = offline(&data.join("db"));
    assert_eq!((version, indexes, entries), (2, vec!["k".to_owned()], N));
    assert!(stale.is_empty(), "{stale:?}");
}
