//! A live backup lets writes through while it copies, and still holds the
//! `data` tree exactly as it was when it began.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::model::{CollectionDef, Record};
use crate::store::tests::store_with;
use crate::store::topics::{Message, StoredTopic};
use crate::store::writer::{Mutation, NewRecord, RecordOp, Writer};

type Tree = Vec<(Vec<u8>, Vec<u8>)>;
/// The backup thread: the file's bytes, or why it failed.
type Backup = std::thread::JoinHandle<Result<Vec<u8>, BackupError>>;

fn dump(tree: &sled::Tree) -> Tree {
    tree.iter()
        .map(|entry| {
            let (key, value) = entry.expect("read");
            (key.to_vec(), value.to_vec())
        })
        .collect()
}

/// The `data` tree a backup file restores to.
fn restored_data(bytes: &[u8]) -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("b.pbbackup");
    std::fs::write(&file, bytes).expect("write");
    crate::store::backup::restore(&file, &dir.path().join("r")).expect("restore");
    // sled lets go of its lock a little after restore's handle drops.
    let path = dir.path().join("r/db");
    let mut tries = 0;
    let store = loop {
        match Store::open(&path) {
            Ok(store) => break store,
            Err(e) if tries < 100 => {
                tries += 1;
                tracing::debug!(error = %e, "restored store still locked");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open the restored store: {e}"),
        }
    };
    dump(&store.data)
}

fn options(dir: &Path, chunk: usize, memory: usize) -> Options {
    let mut options = Options::new(dir);
    options.chunk = chunk;
    options.limits.memory = memory;
    options
}

/// Runs a live backup on its own thread; after each chunk it tells
/// `chunks` and waits for a go on the returned sender.
fn start_backup(
    store: &Store,
    options: Options,
) -> (mpsc::Receiver<u64>, mpsc::Sender<()>, Backup) {
    let (chunk_tx, chunks) = mpsc::channel();
    let (go, go_rx) = mpsc::channel::<()>();
    let store = store.clone();
    let thread = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        write_with(&store, &mut bytes, &options, |n| {
            let _ = chunk_tx.send(n);
            // A test that is done lets the rest run through.
            let _ = go_rx.recv_timeout(Duration::from_secs(30));
            true
        })?;
        Ok(bytes)
    });
    (chunks, go, thread)
}

async fn next_chunk(chunks: &mpsc::Receiver<u64>) -> Option<u64> {
    tokio::task::block_in_place(|| chunks.recv_timeout(Duration::from_secs(30)).ok())
}

fn create(collection: &crate::model::Collection, id: &str, k: i64) -> RecordOp {
    let record = Record::new(
        id,
        "2026-01-01T00:00:00.000Z",
        "t",
        None,
        1,
        json!({"k": k}).as_object().cloned().unwrap_or_default(),
    );
    RecordOp::Create(NewRecord::prepare(
        collection,
        &record,
        None,
        true,
        crate::access::system(),
    ))
}

fn replace(id: &str, k: i64, rev: u64) -> RecordOp {
    let record = Record::new(
        id,
        "2026-01-01T00:00:00.000Z",
        "t",
        None,
        rev + 1,
        json!({"k": k}).as_object().cloned().unwrap_or_default(),
    );
    RecordOp::Replace {
        record,
        expected_rev: rev,
        permit: crate::access::system(),
    }
}

fn delete(id: &str) -> RecordOp {
    RecordOp::Delete {
        id: id.to_owned(),
        expected_rev: None,
        expired: false,
        permit: crate::access::system(),
    }
}

async fn write(writer: &Writer, collection: &Arc<crate::model::Collection>, ops: Vec<RecordOp>) {
    writer
        .submit(Mutation::Records {
            collection: collection.clone(),
            ops,
            actor: None,
        })
        .await
        .expect("write");
}

/// The old backup ran on the writer thread and every write waited for the
/// whole copy. Here the copy is held after its first chunk: a write
/// submitted then must commit while the backup is still unfinished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_submitted_during_a_backup_commits_before_the_backup_ends() {
    let (dir, store, writer) = store_with(
        json!({"name": "c", "indexes": ["k"]}),
        (0..200).map(|k| json!({"k": k})),
    )
    .await;
    let collection = store.catalog().get("c").expect("c");
    let before = dump(&store.data);
    let (chunks, go, backup) = start_backup(&store, options(dir.path(), 10, MEMORY));
    assert_eq!(next_chunk(&chunks).await, Some(1), "the backup started");
    let written = tokio::time::timeout(
        Duration::from_secs(10),
        write(&writer, &collection, vec![replace("r0150", -1, 1)]),
    )
    .await;
    assert!(
        !backup.is_finished(),
        "the backup is still held after its first chunk"
    );
    assert!(written.is_ok(), "the write waited for the backup");
    drop(go);
    let bytes = backup.join().expect("backup thread").expect("live backup");
    assert!(
        restored_data(&bytes) == before,
        "the backup is the tree as it began"
    );
    assert!(dump(&store.data) != before, "the write is in the database");
    writer.shutdown().await;
}

/// Writes of every kind between the chunks of a backup (records created,
/// updated, deleted; a collection dropped and its keys purged; a schema
/// change that reindexes; a user; topic messages; the change log trimmed),
/// with old values kept in memory or all spilled to the scratch file: the
/// restored tree is the tree as it was when the backup began, key for key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_is_the_tree_as_it_began_whatever_is_written_meanwhile() {
    for memory in [0, MEMORY] {
        let (dir, store, writer) = store_with(
            json!({"name": "c", "indexes": ["k"]}),
            (0..300).map(|k| json!({"k": k})),
        )
        .await;
        let c = store.catalog().get("c").expect("c");
        let doomed = writer
            .submit(Mutation::CreateCollection(def(
                json!({"name": "doomed", "indexes": ["k"]}),
            )))
            .await
            .expect("create")
            .collection
            .expect("collection");
        for i in 0..300 {
            write(
                &writer,
                &doomed,
                vec![create(&doomed, &format!("d{i:04}"), i)],
            )
            .await;
        }
        let topic = StoredTopic {
            name: "news".into(),
            owner: None,
            publish: "true".into(),
            subscribe: "true".into(),
            history: 5,
            created: String::new(),
            presence: true,
        };
        writer
            .submit(Mutation::CreateTopic(topic))
            .await
            .expect("topic");
        let before = dump(&store.data);

        let (chunks, go, backup) = start_backup(&store, options(dir.path(), 7, memory));
        let mut c = c;
        while let Some(n) = next_chunk(&chunks).await {
            if n < 150 {
                let i = n as i64;
                write(&writer, &c, vec![create(&c, &format!("n{i:04}"), i)]).await;
                write(
                    &writer,
                    &c,
                    vec![replace(&format!("r{:04}", 299 - i), -i, 1)],
                )
                .await;
                write(&writer, &c, vec![delete(&format!("r{i:04}"))]).await;
                let message = Message {
                    seq: 0,
                    topic: "news".into(),
                    from: None,
                    data: b"{}".to_vec(),
                    ts_ms: 0,
                };
                writer
                    .submit(Mutation::Publish {
                        message,
                        history: 5,
                        retain: false,
                    })
                    .await
                    .expect("publish");
            }
            match n {
                1 => {
                    writer
                        .submit(Mutation::DropCollection {
                            name: "doomed".into(),
                            actor: None,
                        })
                        .await
                        .expect("drop");
                }
                3 => {
                    c = writer
                        .submit(Mutation::UpdateCollection(def(
                            json!({"name": "c", "indexes": ["k", "j"]}),
                        )))
                        .await
                        .expect("update")
                        .collection
                        .expect("collection");
                }
                5 => {
                    writer
                        .submit(Mutation::CreateUser(crate::store::tests::plain_user()))
                        .await
                        .expect("user");
                }
                8 => {
                    store.trim_changelog(50, -1000).expect("trim");
                }
                _ => {}
            }
            let _ = go.send(());
        }
        let bytes = backup.join().expect("backup thread").expect("live backup");
        let restored = restored_data(&bytes);
        assert_eq!(restored.len(), before.len(), "memory bound {memory}");
        assert!(
            restored == before,
            "memory bound {memory}: the backup differs from the tree as it began"
        );
        assert!(
            dump(&store.data) != before,
            "the writes are in the database"
        );
        writer.shutdown().await;
    }
}

fn def(value: serde_json::Value) -> CollectionDef {
    serde_json::from_value(value).expect("collection definition")
}

/// Old values that cannot be kept (here: no scratch dir for them) fail the
/// backup, never the write that was saving them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_that_cannot_keep_old_values_fails_and_the_write_goes_through() {
    let (dir, store, writer) = store_with(json!({"name": "c"}), (0..100).map(|_| json!({}))).await;
    let collection = store.catalog().get("c").expect("c");
    let (chunks, go, backup) = start_backup(&store, options(&dir.path().join("missing"), 5, 0));
    assert_eq!(next_chunk(&chunks).await, Some(1));
    write(&writer, &collection, vec![delete("r0090")]).await;
    drop(go);
    let error = backup
        .join()
        .expect("backup thread")
        .expect_err("no room for old values");
    assert!(error.to_string().contains("scratch file"), "{error}");
    assert!(store
        .get_record(collection.id, "r0090")
        .expect("read")
        .is_none());
    // The next backup starts afresh.
    let mut bytes = Vec::new();
    write_with(&store, &mut bytes, &options(dir.path(), 5, 0), |_| true).expect("backup");
    writer.shutdown().await;
}
