//! Collection updates as chunked migrations. The writer runs with chunks
//! of one or two records, so that a collection of a few thousand records
//! takes thousands of chunks and each test can act in the middle of one.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Durability;
use crate::model::{CollectionDef, Record};
use crate::store::keys;
use crate::store::writer::{Committed, Mutation, NewRecord, RecordOp, WriteError, Writer};
use crate::store::Store;

type Update = tokio::task::JoinHandle<Result<Committed, WriteError>>;

fn def(value: Value) -> CollectionDef {
    serde_json::from_value(value).unwrap()
}

fn record(id: &str, rev: u64, data: Value) -> Record {
    let data = data.as_object().cloned().unwrap_or_default();
    Record::new(id, "2026-01-01T00:00:00.000Z", "t", None, rev, data)
}

fn create(store: &Store, records: Vec<Record>) -> Mutation {
    let collection = store.catalog().get("c").unwrap();
    let ops = records
        .iter()
        .map(|r| {
            RecordOp::Create(NewRecord::prepare(
                &collection,
                r,
                None,
                true,
                crate::access::system(),
            ))
        })
        .collect();
    Mutation::Records {
        collection,
        ops,
        actor: None,
    }
}

fn replace(store: &Store, id: &str, data: Value) -> Mutation {
    let collection = store.catalog().get("c").unwrap();
    let old = store.get_record(collection.id, id).unwrap().unwrap();
    Mutation::Records {
        collection,
        ops: vec![RecordOp::Replace {
            record: record(id, old.rev() + 1, data),
            expected_rev: old.rev(),
            permit: crate::access::system(),
        }],
        actor: None,
    }
}

fn delete(store: &Store, id: &str) -> Mutation {
    Mutation::Records {
        collection: store.catalog().get("c").unwrap(),
        ops: vec![RecordOp::Delete {
            id: id.to_owned(),
            expected_rev: None,
            expired: false,
            permit: crate::access::system(),
        }],
        actor: None,
    }
}

/// A writer with housekeeping chunks of `chunk` over collection `c`
/// defined by `definition`, holding `data` as records `r0000`, `r0001`...
async fn start(path: &Path, definition: Value, data: Vec<Value>, chunk: usize) -> (Store, Writer) {
    let store = Store::open(path).unwrap();
    let writer =
        Writer::start_with_chunk(store.clone(), Durability::Relaxed, 10, None, chunk).unwrap();
    writer
        .submit(Mutation::CreateCollection(def(definition)))
        .await
        .unwrap();
    let records: Vec<_> = data
        .into_iter()
        .enumerate()
        .map(|(i, data)| record(&format!("r{i:04}"), 1, data))
        .collect();
    for batch in records.chunks(100) {
        writer.submit(create(&store, batch.to_vec())).await.unwrap();
    }
    (store, writer)
}

fn update(writer: &Writer, definition: Value) -> Update {
    let writer = writer.clone();
    let definition = def(definition);
    tokio::spawn(async move { writer.submit(Mutation::UpdateCollection(definition)).await })
}

fn id(store: &Store) -> u32 {
    store.catalog().get("c").unwrap().id
}

fn index_keys(store: &Store, collection: u32, field: &str) -> BTreeSet<Vec<u8>> {
    store
        .data()
        .scan_prefix(keys::index_field_prefix(collection, field))
        .keys()
        .map(|k| k.unwrap().to_vec())
        .collect()
}

/// The entries `field` needs for the records stored now.
fn expected_keys(store: &Store, collection: u32, field: &str) -> BTreeSet<Vec<u8>> {
    store
        .data()
        .scan_prefix(keys::collection_prefix(keys::RECORD, collection))
        .values()
        .map(|v| crate::store::decode_record(&v.unwrap()).unwrap())
        .map(|r| {
            let value = r.fields.get(field).cloned().unwrap_or(Value::Null);
            keys::index_entry(collection, field, &value, r.id())
        })
        .collect()
}

fn marked(store: &Store, collection: u32, field: &str) -> bool {
    store
        .data()
        .contains_key(keys::stale_index(collection, field))
        .unwrap()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting until {what}");
}

fn numbers(n: usize, of: impl Fn(usize) -> Value) -> Vec<Value> {
    (0..n).map(of).collect()
}

/// The point of chunking: a write that reaches the writer after a reindex
/// began does not wait for the whole of it.
#[tokio::test]
async fn a_write_submitted_during_a_reindex_commits_before_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    // 20,000 one-record chunks: far longer than one write, even on a
    // loaded machine that deschedules this task for a while.
    let data = numbers(20_000, |k| json!({ "k": k }));
    let (store, writer) = start(&dir.path().join("db"), json!({"name": "c"}), data, 1).await;
    let c = id(&store);
    let reindex = update(&writer, json!({"name": "c", "indexes": ["k"]}));
    wait_until("the reindex began", || marked(&store, c, "k")).await;
    let late = record("late", 1, json!({"k": 9_999}));
    writer.submit(create(&store, vec![late])).await.unwrap();
    assert!(
        !reindex.is_finished(),
        "the write waited for the whole reindex"
    );
    assert_eq!(store.catalog().get("c").unwrap().version, 1);
    let done = reindex.await.unwrap().unwrap();
    assert_eq!(done.collection.unwrap().version, 2);
    assert_eq!(store.catalog().get("c").unwrap().def.indexes, ["k"]);
    assert!(!marked(&store, c, "k"));
    assert_eq!(index_keys(&store, c, "k"), expected_keys(&store, c, "k"));
    assert_eq!(index_keys(&store, c, "k").len(), 20_001);
    writer.shutdown().await;
}

/// While a change is pending, writes must fit both schemas and keep the
/// new index right whether or not the walk has reached their record.
#[tokio::test]
async fn writes_during_a_reindex_fit_both_schemas_and_index_right() {
    let dir = tempfile::tempdir().unwrap();
    let definition = json!({"name": "c", "fields": {"size": {"type": "number"}}});
    let data = numbers(3_000, |i| json!({ "size": i % 10 }));
    let (store, writer) = start(&dir.path().join("db"), definition, data, 1).await;
    let c = id(&store);
    let reindex = update(
        &writer,
        json!({"name": "c", "fields": {"size": {"type": "number", "max": 10}}, "indexes": ["size"]}),
    );
    wait_until("the reindex began", || {
        index_keys(&store, c, "size").len() > 10
    })
    .await;
    let refused = writer
        .submit(create(&store, vec![record("big", 1, json!({"size": 50}))]))
        .await;
    assert!(
        matches!(&refused, Err(WriteError::DoesNotFitNewSchema(e)) if e.contains_key("size")),
        "{refused:?}"
    );
    let refused = writer
        .submit(replace(&store, "r2999", json!({"size": 70})))
        .await;
    assert!(matches!(refused, Err(WriteError::DoesNotFitNewSchema(_))));
    // Walked already, and not yet: their entries must move either way.
    writer
        .submit(replace(&store, "r0000", json!({"size": 7})))
        .await
        .unwrap();
    writer
        .submit(replace(&store, "r2998", json!({"size": 3})))
        .await
        .unwrap();
    writer.submit(delete(&store, "r0001")).await.unwrap();
    writer.submit(delete(&store, "r2997")).await.unwrap();
    let fresh = record("r5000", 1, json!({"size": 1}));
    writer.submit(create(&store, vec![fresh])).await.unwrap();
    let busy = writer
        .submit(Mutation::UpdateCollection(def(json!({"name": "c"}))))
        .await;
    assert!(
        matches!(busy, Err(WriteError::CollectionBusy(_))),
        "{busy:?}"
    );
    assert!(!reindex.is_finished());

    reindex.await.unwrap().unwrap();
    assert_eq!(
        index_keys(&store, c, "size"),
        expected_keys(&store, c, "size")
    );
    assert_eq!(index_keys(&store, c, "size").len(), 2_999);
    writer.shutdown().await;
}

/// A change that a stored record does not fit is refused as before, with
/// the record named, and the entries it added on the way are removed.
#[tokio::test]
async fn a_refused_reindex_leaves_no_new_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let data = numbers(
        2_000,
        |i| json!({ "size": if i == 1_990 { 500 } else { 1 } }),
    );
    let (store, writer) = start(&dir.path().join("db"), json!({"name": "c"}), data, 2).await;
    let c = id(&store);
    let result = update(
        &writer,
        json!({"name": "c", "fields": {"size": {"type": "number", "max": 100}}, "indexes": ["size"]}),
    )
    .await
    .unwrap();
    let Err(WriteError::Invalid(errors)) = result else {
        panic!("{result:?}");
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors["records.r1990.size"], "must be at most 100");
    let current = store.catalog().get("c").unwrap();
    assert_eq!((current.version, current.def.indexes.len()), (1, 0));
    wait_until("the new entries are gone", || {
        index_keys(&store, c, "size").is_empty() && !marked(&store, c, "size")
    })
    .await;
    // Nothing is left that blocks the next change.
    let good = json!({"name": "c", "fields": {"size": {"type": "number", "max": 1000}}, "indexes": ["size"]});
    update(&writer, good).await.unwrap().unwrap();
    assert_eq!(
        index_keys(&store, c, "size"),
        expected_keys(&store, c, "size")
    );
    writer.shutdown().await;
}

#[tokio::test]
async fn dropping_a_collection_cancels_its_reindex() {
    let dir = tempfile::tempdir().unwrap();
    let data = numbers(3_000, |k| json!({ "k": k }));
    let (store, writer) = start(&dir.path().join("db"), json!({"name": "c"}), data, 1).await;
    let c = id(&store);
    let reindex = update(&writer, json!({"name": "c", "indexes": ["k"]}));
    wait_until("the reindex began", || marked(&store, c, "k")).await;
    writer
        .submit(Mutation::DropCollection {
            name: "c".into(),
            actor: None,
        })
        .await
        .unwrap();
    let result = reindex.await.unwrap();
    assert!(
        matches!(result, Err(WriteError::CollectionNotFound(_))),
        "{result:?}"
    );
    let left = || {
        [
            keys::RECORD,
            keys::INDEX,
            keys::COUNT,
            keys::PURGE,
            keys::STALE_INDEX,
        ]
        .iter()
        .map(|tag| {
            store
                .data()
                .scan_prefix(keys::collection_prefix(*tag, c))
                .count()
        })
        .sum::<usize>()
    };
    wait_until("the collection is purged", || left() == 0).await;
    writer.shutdown().await;
}

/// A removed index's entries go in chunks after the switch; the field can
/// be indexed again once they are gone, and then its entries are right.
#[tokio::test]
async fn a_removed_index_is_cleared_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let data = numbers(2_000, |k| json!({ "k": k }));
    let definition = json!({"name": "c", "indexes": ["k"]});
    let (store, writer) = start(&dir.path().join("db"), definition, data, 1).await;
    let c = id(&store);
    let done = update(&writer, json!({"name": "c"}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.collection.unwrap().version, 2);
    assert!(store.catalog().get("c").unwrap().def.indexes.is_empty());
    // Queries of version 2 never read `k` entries, whatever is left of them.
    wait_until("the old entries are gone", || {
        index_keys(&store, c, "k").is_empty() && !marked(&store, c, "k")
    })
    .await;
    writer
        .submit(replace(&store, "r0000", json!({"k": -1})))
        .await
        .unwrap();
    update(&writer, json!({"name": "c", "indexes": ["k"]}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index_keys(&store, c, "k"), expected_keys(&store, c, "k"));
    writer.shutdown().await;
}

/// A reindex cut short (here by a shutdown; `tests/reindex.rs` kills the
/// process) leaves the old version in force, and the next start removes
/// the entries it had added.
#[tokio::test]
async fn an_interrupted_reindex_is_undone_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let data = numbers(3_000, |k| json!({ "k": k }));
    let (store, writer) = start(&path, json!({"name": "c"}), data, 1).await;
    let c = id(&store);
    let reindex = update(&writer, json!({"name": "c", "indexes": ["k"]}));
    wait_until("the reindex is under way", || {
        index_keys(&store, c, "k").len() > 10
    })
    .await;
    writer.shutdown().await;
    assert!(matches!(
        reindex.await.unwrap(),
        Err(WriteError::Unavailable)
    ));
    assert!(index_keys(&store, c, "k").len() < 3_000);
    drop(store);

    let store = Store::open(&path).unwrap();
    let current = store.catalog().get("c").unwrap();
    assert_eq!((current.version, current.def.indexes.len()), (1, 0));
    assert!(marked(&store, c, "k"));
    let writer = Writer::start_with_chunk(store.clone(), Durability::Relaxed, 10, None, 1).unwrap();
    wait_until("the leftover entries are gone", || {
        index_keys(&store, c, "k").is_empty() && !marked(&store, c, "k")
    })
    .await;
    writer.shutdown().await;
}
