use super::*;
use crate::config::Durability;
use crate::model::CollectionDef;
use crate::store::writer::{Mutation, NewRecord, RecordOp, Writer};

pub(crate) async fn store_with_records(n: usize) -> (tempfile::TempDir, Store, Writer) {
    store_with(
        serde_json::json!({"name": "c"}),
        (0..n).map(|_| serde_json::json!({})),
    )
    .await
}

/// A store with one collection defined by `def`, holding `records`
/// (given ids `r0000`, `r0001`, ...).
pub(crate) async fn store_with(
    def: serde_json::Value,
    records: impl IntoIterator<Item = serde_json::Value>,
) -> (tempfile::TempDir, Store, Writer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let writer = Writer::start(store.clone(), Durability::Relaxed, 10, None).unwrap();
    let collection = create_collection(&writer, def).await;
    let ops = records
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let data = data.as_object().cloned().unwrap_or_default();
            let created = crate::clock::format_ms(1_700_000_000_000 + i as i64);
            let record = Record::new(&format!("r{i:04}"), &created, &created, None, 1, data);
            RecordOp::Create(NewRecord::prepare(
                &collection,
                &record,
                None,
                true,
                crate::access::system(),
            ))
        })
        .collect::<Vec<_>>();
    // One write per record, so each gets its own seq.
    for op in ops {
        writer
            .submit(Mutation::Records {
                collection: collection.clone(),
                ops: vec![op],
                actor: None,
            })
            .await
            .unwrap();
    }
    (dir, store, writer)
}

#[tokio::test]
async fn writes_and_their_changes_get_consecutive_seqs() {
    let (_dir, store, writer) = store_with_records(5).await;
    let seqs: Vec<u64> = store.changes_after(0).map(|c| c.unwrap().seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let collection = store.catalog().get("c").unwrap();
    // A failing request takes no seq: the log keeps no holes.
    let duplicate = Record::new("r0000", "t", "t", None, 1, serde_json::Map::new());
    let fresh = Record::new("fresh", "t", "t", None, 1, serde_json::Map::new());
    let create = |record: &Record| {
        RecordOp::Create(NewRecord::prepare(
            &collection,
            record,
            Some("u1"),
            true,
            crate::access::system(),
        ))
    };
    let failed = writer
        .submit(Mutation::Records {
            collection: collection.clone(),
            ops: vec![create(&fresh), create(&duplicate)],
            actor: None,
        })
        .await;
    assert!(failed.is_err());
    assert!(
        store.get_record(collection.id, "fresh").unwrap().is_none(),
        "all or nothing"
    );
    let done = writer
        .submit(Mutation::Records {
            collection: collection.clone(),
            ops: vec![create(&fresh)],
            actor: Some("u1".into()),
        })
        .await
        .unwrap();
    assert_eq!(done.seqs, Some((6, 6)));
    let change = store.changes_after(5).next().unwrap().unwrap();
    assert_eq!(change.record_id, "fresh");
    assert_eq!(change.actor.as_deref(), Some("u1"));
    assert_eq!(store.record_count(1).unwrap(), 6);
    writer.shutdown().await;
}

#[tokio::test]
async fn concurrent_creates_share_a_batch_without_holes_or_duplicates() {
    let (_dir, store, writer) = store_with(serde_json::json!({"name": "c"}), []).await;
    let collection = store.catalog().get("c").unwrap();
    let submits = (0..64).map(|i| {
        // Requests 10 and 11 race for the same client id.
        let id = if i == 11 {
            "r10".to_owned()
        } else {
            format!("r{i}")
        };
        let record = Record::new(&id, "t", "t", None, 1, serde_json::Map::new());
        let op = RecordOp::Create(NewRecord::prepare(
            &collection,
            &record,
            None,
            true,
            crate::access::system(),
        ));
        let writer = writer.clone();
        let collection = collection.clone();
        tokio::spawn(async move {
            writer
                .submit(Mutation::Records {
                    collection,
                    ops: vec![op],
                    actor: None,
                })
                .await
        })
    });
    let mut conflicts = 0;
    for handle in submits.collect::<Vec<_>>() {
        match handle.await.unwrap() {
            Ok(_) => {}
            Err(crate::store::writer::WriteError::Conflict(id)) => {
                assert_eq!(id, "r10");
                conflicts += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(conflicts, 1);
    let seqs: Vec<u64> = store.changes_after(0).map(|c| c.unwrap().seq).collect();
    assert_eq!(seqs, (1..=63).collect::<Vec<_>>());
    assert_eq!(store.record_count(collection.id).unwrap(), 63);
    writer.shutdown().await;
}

#[tokio::test]
async fn dropping_a_collection_is_logged_and_purges_its_keys() {
    let (_dir, store, writer) = store_with(
        serde_json::json!({"name": "c", "indexes": ["k"]}),
        (0..50).map(|k| serde_json::json!({"k": k})),
    )
    .await;
    let id = store.catalog().get("c").unwrap().id;
    writer
        .submit(Mutation::DropCollection {
            name: "c".into(),
            actor: Some("admin".into()),
        })
        .await
        .unwrap();
    let last = store.changes_after(50).next().unwrap().unwrap();
    assert_eq!(
        (last.seq, last.kind, last.collection.as_str()),
        (51, change::ChangeKind::DropCollection, "c")
    );
    assert!(store.catalog().get("c").is_none());
    wait_until_purged(&store, id).await;
    writer.shutdown().await;
}

fn keys_left(store: &Store, id: u32) -> usize {
    [keys::RECORD, keys::INDEX, keys::COUNT, keys::PURGE]
        .iter()
        .map(|tag| {
            store
                .data()
                .scan_prefix(keys::collection_prefix(*tag, id))
                .count()
        })
        .sum()
}

async fn wait_until_purged(store: &Store, id: u32) {
    for _ in 0..200 {
        if keys_left(store, id) == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "{} keys of the dropped collection left",
        keys_left(store, id)
    );
}

/// Creates the collection `def` describes, through the writer.
pub(crate) async fn create_collection(
    writer: &Writer,
    def: serde_json::Value,
) -> std::sync::Arc<crate::model::Collection> {
    let def: CollectionDef = serde_json::from_value(def).unwrap();
    writer
        .submit(Mutation::CreateCollection(def))
        .await
        .unwrap()
        .collection
        .unwrap()
}

/// The purge of a dropped collection runs a chunk at a time between
/// write groups: a write made right after the drop does not wait for
/// all of it.
#[tokio::test]
async fn writes_go_on_while_a_dropped_collection_is_purged() {
    let (_dir, store, writer) = store_with(
        serde_json::json!({"name": "big", "indexes": ["k"]}),
        (0..10_000).map(|k| serde_json::json!({"k": k})),
    )
    .await;
    create_collection(&writer, serde_json::json!({"name": "small"})).await;
    let id = store.catalog().get("big").unwrap().id;
    writer
        .submit(Mutation::DropCollection {
            name: "big".into(),
            actor: None,
        })
        .await
        .unwrap();
    let user = plain_user();
    writer.submit(Mutation::CreateUser(user)).await.unwrap();
    let left = keys_left(&store, id);
    // 30,002 keys in all: each record, its `created` and `k` index
    // entries, the count and the marker.
    assert!(left > 0, "the write waited for the whole purge");
    wait_until_purged(&store, id).await;
    writer.shutdown().await;
}

pub(crate) fn plain_user() -> crate::model::User {
    crate::model::User::plain()
}

async fn durable_after_one_write(durability: Durability, flush_ms: u64, wait_ms: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let writer = Writer::start(store.clone(), durability, flush_ms, None).unwrap();
    let user = plain_user();
    let seq = writer
        .submit(Mutation::CreateUser(user))
        .await
        .unwrap()
        .seqs
        .unwrap()
        .1;
    let mut durable = writer.durable_seq();
    let reached = tokio::time::timeout(
        std::time::Duration::from_millis(wait_ms),
        durable.wait_for(|d| *d >= seq),
    )
    .await
    .is_ok();
    writer.shutdown().await;
    reached
}

#[tokio::test]
async fn sync_answers_only_after_the_fsync() {
    assert!(durable_after_one_write(Durability::Sync, 100, 0).await);
}

#[tokio::test]
async fn relaxed_fsyncs_within_flush_ms_and_not_before() {
    // 10 s, not 100 ms: the point is that it comes without more writes;
    // a loaded machine's fdatasync took over 2 s here.
    assert!(durable_after_one_write(Durability::Relaxed, 100, 10_000).await);
    assert!(!durable_after_one_write(Durability::Relaxed, 60_000, 300).await);
}
