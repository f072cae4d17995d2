//! The writer's side of series collections, on a real store: blocks per
//! write group, seq ranges in the change log, idempotency, merging and
//! truncation.

use std::sync::Arc;

use serde_json::json;

use super::{Append, Mutation, Truncation, Writer};
use crate::model::Collection;
use crate::series::{Fields, Reading, Value};
use crate::store::change::ChangeKind;
use crate::store::Store;

async fn series_store() -> (tempfile::TempDir, Store, Writer, Arc<Collection>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let writer =
        Writer::start(store.clone(), crate::config::Durability::Relaxed, 10, None).unwrap();
    let collection = crate::store::tests::create_collection(
        &writer,
        json!({
            "name": "r", "kind": "series", "series": "device",
            "fields": {"device": {"type": "string"}, "temp": {"type": "number"}}
        }),
    )
    .await;
    (dir, store, writer, collection)
}

fn readings(times: impl IntoIterator<Item = i64>) -> Vec<Reading> {
    times
        .into_iter()
        .map(|time| Reading {
            seq: 0,
            time,
            created: time,
            owner: None,
            series: format!("d{}", time % 3),
            fields: Fields::from([("temp".to_owned(), Value::Number(time as f64))]),
        })
        .collect()
}

async fn append(
    writer: &Writer,
    collection: &Arc<Collection>,
    times: impl IntoIterator<Item = i64>,
    key: Option<&str>,
) -> (u64, u64, bool) {
    let committed = writer
        .submit(Mutation::Append(Append {
            collection: collection.clone(),
            readings: readings(times),
            actor: None,
            idempotency: key.map(|k| ("caller".to_owned(), k.to_owned())),
        }))
        .await
        .unwrap();
    let (first, last) = committed.seqs.unwrap();
    (first, last, committed.repeated)
}

#[tokio::test]
async fn an_append_is_one_block_and_one_change_covering_its_seqs() {
    let (_dir, store, writer, collection) = series_store().await;
    let (first, last, _) = append(&writer, &collection, 0..100, None).await;
    assert_eq!(last - first, 99);
    let blocks: Vec<_> = store
        .series_blocks(collection.id)
        .map(Result::unwrap)
        .collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].summary.count, 100);
    let change = store.change_at(first).unwrap().unwrap();
    assert_eq!((change.kind, change.through), (ChangeKind::Append, last));
    assert!(
        store.change_at(first + 1).unwrap().is_none(),
        "one entry, not one per reading"
    );
    assert_eq!(store.last_seq().unwrap(), last);
    let some = store
        .readings_between(collection.id, first + 10, first + 12)
        .unwrap();
    assert_eq!(
        some.iter().map(|r| r.time).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    assert_eq!(
        store.reading(collection.id, last).unwrap().unwrap().time,
        99
    );
    writer.shutdown().await;
}

#[tokio::test]
async fn a_large_write_group_is_split_into_even_blocks_each_with_its_change() {
    let (_dir, store, writer, collection) = series_store().await;
    let n = 2 * super::series::BLOCK_READINGS as i64 + 100;
    let (first, last, _) = append(&writer, &collection, 0..n, None).await;
    let blocks: Vec<_> = store
        .series_blocks(collection.id)
        .map(Result::unwrap)
        .collect();
    let counts: Vec<u64> = blocks.iter().map(|b| b.summary.count).collect();
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c.abs_diff(n as u64 / 3) <= 1),
        "{counts:?}"
    );
    let mut next = first;
    for (block, count) in blocks.iter().zip(&counts) {
        assert_eq!(block.first_seq, next);
        let change = store.change_at(next).unwrap().unwrap();
        assert_eq!(
            (change.kind, change.through),
            (ChangeKind::Append, next + count - 1)
        );
        next += count;
    }
    assert_eq!(next, last + 1);
    let all = store.readings_between(collection.id, first, last).unwrap();
    assert!(all.iter().map(|r| r.time).eq(0..n));
    let second = blocks[1].first_seq;
    for seq in [second - 1, second] {
        let time = store.reading(collection.id, seq).unwrap().unwrap().time;
        assert_eq!(time, (seq - first) as i64);
    }
    writer.shutdown().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_writes_nothing_and_answers_the_same_seqs() {
    let (_dir, store, writer, collection) = series_store().await;
    let once = append(&writer, &collection, 0..5, Some("k")).await;
    let again = append(&writer, &collection, 0..5, Some("k")).await;
    assert_eq!((once.0, once.1), (again.0, again.1));
    assert!(!once.2 && again.2);
    assert_eq!(store.record_count(collection.id).unwrap(), 5);
    assert_eq!(store.last_seq().unwrap(), once.1);
    writer.shutdown().await;
}

#[tokio::test]
async fn small_blocks_merge_into_one_and_every_seq_still_finds_its_reading() {
    let (_dir, store, writer, collection) = series_store().await;
    let mut seqs = Vec::new();
    for i in 0..12 {
        let (first, ..) = append(&writer, &collection, [i], None).await;
        seqs.push(first);
    }
    // The writer merges in the background once 8 small blocks wait at the
    // tail; a merged block is small too and joins the next merge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let blocks = store.series_blocks(collection.id).count();
        if blocks <= 5 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{blocks} blocks still"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for (time, seq) in seqs.iter().enumerate() {
        assert_eq!(
            store.reading(collection.id, *seq).unwrap().unwrap().time,
            time as i64
        );
    }
    let all = store
        .readings_between(collection.id, seqs[0], seqs[11])
        .unwrap();
    assert_eq!(all.len(), 12);
    writer.shutdown().await;
}

#[tokio::test]
async fn truncation_drops_whole_blocks_or_cuts_exactly_and_logs_one_entry() {
    let (_dir, store, writer, collection) = series_store().await;
    append(&writer, &collection, 0..10, None).await;
    append(&writer, &collection, 10..20, None).await;
    append(&writer, &collection, 20..30, None).await;
    let truncate = |truncation| Mutation::Truncate {
        collection: collection.clone(),
        truncation,
    };
    // Whole blocks only: 15 falls inside the second block, which stays.
    let whole = Truncation {
        before_ms: Some(15),
        ..Truncation::default()
    };
    let (seq, _) = writer.submit(truncate(whole)).await.unwrap().seqs.unwrap();
    assert_eq!(
        store.change_at(seq).unwrap().unwrap().kind,
        ChangeKind::Truncate
    );
    assert_eq!(store.record_count(collection.id).unwrap(), 20);
    // Exactly: the second block is rewritten with 15..20.
    let exact = Truncation {
        before_ms: Some(15),
        exact: true,
        max_bytes: None,
    };
    writer.submit(truncate(exact)).await.unwrap();
    assert_eq!(store.record_count(collection.id).unwrap(), 15);
    let left: Vec<i64> = store
        .series_blocks(collection.id)
        .map(Result::unwrap)
        .map(|b| b.summary.min_time)
        .collect();
    assert_eq!(left, [15, 20]);
    // By size: the oldest go first.
    let by_size = Truncation {
        max_bytes: Some(1),
        ..Truncation::default()
    };
    writer.submit(truncate(by_size)).await.unwrap();
    assert_eq!(store.series_size(collection.id).unwrap(), (0, 0));
    writer.shutdown().await;
}

#[tokio::test]
async fn the_latest_index_follows_appends_and_drops() {
    let (_dir, store, writer, collection) = series_store().await;
    let newest = |store: &Store| {
        let mut times: Vec<(String, i64)> = store
            .latest_readings(collection.id)
            .unwrap()
            .into_iter()
            .map(|r| (r.reading().series.clone(), r.reading().time))
            .collect();
        times.sort();
        times
    };
    append(&writer, &collection, 0..6, None).await;
    assert_eq!(
        newest(&store),
        [("d0".into(), 3), ("d1".into(), 4), ("d2".into(), 5)]
    );
    // Built once; later appends update it, late readings do not win.
    append(&writer, &collection, [9, 1], None).await;
    assert_eq!(
        newest(&store),
        [("d0".into(), 9), ("d1".into(), 4), ("d2".into(), 5)]
    );
    let drop_old = Truncation {
        before_ms: Some(5),
        exact: true,
        max_bytes: None,
    };
    writer
        .submit(Mutation::Truncate {
            collection: collection.clone(),
            truncation: drop_old,
        })
        .await
        .unwrap();
    assert_eq!(newest(&store), [("d0".into(), 9), ("d2".into(), 5)]);
    writer.shutdown().await;
}

/// The hub and replays read a block's readings while the writer merges
/// the newest blocks (a merged block is keyed by its lowest seq): every
/// read of a committed range finds all of it, merge or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_read_during_merges_finds_every_reading() {
    let (_dir, store, writer, collection) = series_store().await;
    let (latest_tx, latest_rx) = tokio::sync::watch::channel(None::<(u64, u64)>);
    let reader_store = store.clone();
    let id = collection.id;
    let reader = std::thread::spawn(move || {
        let mut reads = 0u64;
        loop {
            let Some((first, last)) = *latest_rx.borrow() else {
                if latest_rx.has_changed().is_err() {
                    return reads;
                }
                continue;
            };
            let found = reader_store.readings_between(id, first, last).unwrap();
            let seqs: Vec<u64> = found.iter().map(|r| r.seq).collect();
            assert_eq!(
                seqs,
                (first..=last).collect::<Vec<_>>(),
                "after {reads} reads"
            );
            reads += 1;
            if latest_rx.has_changed().is_err() {
                return reads;
            }
        }
    });
    for i in 0..3000 {
        let (first, last, _) = append(&writer, &collection, [3 * i, 3 * i + 1], None).await;
        latest_tx.send_replace(Some((first, last)));
        if reader.is_finished() {
            break;
        }
    }
    drop(latest_tx);
    let reads = reader.join().expect("a read missed readings");
    assert!(reads > 0);
    writer.shutdown().await;
}
