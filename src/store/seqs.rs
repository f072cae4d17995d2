//! Seq reservations: no seq is handed out twice, whatever crashes.
//!
//! A seq is handed out once someone outside can see it: an event or a
//! message delivered to a subscriber, or the seq a publisher is answered
//! with. After a crash the server must start above every seq handed out,
//! or a subscriber that saw seq N would later be told of another N.
//!
//! - A change in sync mode goes out only after the fsync that stores its
//!   change-log entry: the log itself remembers its seq.
//! - A change in relaxed mode goes out before its fsync, and a message with
//!   no history is never stored at all: their seqs are covered by a mark,
//!   `SEQ_RESERVED` in the `data` tree, that is on disk before they go out.
//!
//! A start continues after max(newest change-log seq, mark): a crash leaves
//! a gap, never a reuse. A clean stop lowers the mark to the last seq
//! handed out, so a restart leaves no gap.
//!
//! Marks are taken a block at a time. Relaxed mode takes the next block
//! ahead, when the applied seq passes half of the current one, without
//! waiting: the flusher's next fsync makes it durable, and events past the
//! durable mark wait for it (the writer then asks the flusher not to wait
//! for `flush_ms`). A message's publisher is answered at once, so a message
//! past the durable mark waits for an fsync of its own on the writer thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{keys, Store, StoreError};

/// Seqs reserved per mark. A crash wastes at most this many.
const BLOCK: u64 = 10_000;

pub(super) struct Reservation {
    /// The mark last written, on disk or not yet.
    written: u64,
    /// The highest mark known to be on disk, shared with the flusher.
    durable: Arc<AtomicU64>,
}

impl Reservation {
    /// The mark as stored: on disk, since `Store::open` fsyncs what sled
    /// recovered.
    pub fn load(store: &Store) -> Result<Reservation, StoreError> {
        let mark = store.seq_reserved()?;
        Ok(Reservation {
            written: mark,
            durable: Arc::new(AtomicU64::new(mark)),
        })
    }

    pub fn mark(&self) -> u64 {
        self.written
    }

    /// The durable mark, for the flusher to raise after each fsync.
    pub fn durable(&self) -> Arc<AtomicU64> {
        self.durable.clone()
    }

    /// Makes sure `seq` is under a durable mark before returning, with an
    /// fsync on this thread if it is not yet.
    pub fn cover_now(&mut self, store: &Store, seq: u64) -> Result<(), StoreError> {
        if seq <= self.durable.load(Ordering::SeqCst) {
            return Ok(());
        }
        if seq > self.written {
            self.write(store, seq + BLOCK)?;
        }
        store.flush()?;
        self.durable.fetch_max(self.written, Ordering::SeqCst);
        Ok(())
    }

    /// Writes the next mark, without waiting for the disk, once `seq` is
    /// past half of the block. Returns the mark the next fsync makes
    /// durable.
    pub fn ahead(&mut self, store: &Store, seq: u64) -> Result<u64, StoreError> {
        if seq + BLOCK / 2 > self.written {
            self.write(store, seq + BLOCK)?;
        }
        Ok(self.written)
    }

    /// At a clean stop, with `last` the last seq handed out: the final
    /// fsync stores the lower mark, and the next start leaves no gap.
    pub fn lower_to(&mut self, store: &Store, last: u64) -> Result<(), StoreError> {
        if self.written > last {
            self.write(store, last)?;
        }
        Ok(())
    }

    fn write(&mut self, store: &Store, mark: u64) -> Result<(), StoreError> {
        store.put(keys::SEQ_RESERVED, &mark.to_be_bytes())?;
        self.written = mark;
        Ok(())
    }
}

/// Relaxed mode's release point: events go out up to the smaller of the
/// applied seq and the durable mark. The writer raises the first, the
/// flusher the second, and each then releases what the pair allows (both
/// SeqCst, so at least one of them sees both raises).
#[derive(Clone)]
pub(super) struct Gate {
    applied: Arc<AtomicU64>,
    durable_mark: Arc<AtomicU64>,
}

impl Gate {
    pub fn new(applied: u64, reservation: &Reservation) -> Gate {
        Gate {
            applied: Arc::new(AtomicU64::new(applied)),
            durable_mark: reservation.durable(),
        }
    }

    /// After the writer applied up to `seq`: the new release point.
    pub fn applied(&self, seq: u64) -> u64 {
        self.applied.fetch_max(seq, Ordering::SeqCst);
        self.open_upto()
    }

    /// After an fsync stored `mark`: the new release point, if it moved.
    pub fn marked(&self, mark: u64) -> Option<u64> {
        let before = self.durable_mark.fetch_max(mark, Ordering::SeqCst);
        (mark > before).then(|| self.open_upto())
    }

    /// Whether applied seqs wait for a mark to reach the disk.
    pub fn held_back(&self) -> bool {
        self.applied.load(Ordering::SeqCst) > self.durable_mark.load(Ordering::SeqCst)
    }

    fn open_upto(&self) -> u64 {
        let applied = self.applied.load(Ordering::SeqCst);
        applied.min(self.durable_mark.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::config::Durability;
    use crate::model::Record;
    use crate::store::topics::Message;
    use crate::store::writer::{Mutation, NewRecord, RecordOp, Taps, Writer};

    /// A relaxed writer on a fresh store with collection `c`, and what its
    /// release tap hears.
    async fn relaxed(flush_ms: u64) -> (tempfile::TempDir, Store, Writer, mpsc::Receiver<u64>) {
        let (dir, store, writer) =
            crate::store::tests::store_with(serde_json::json!({"name": "c"}), []).await;
        writer.shutdown().await;
        let (tx, released) = mpsc::channel();
        let taps = Taps {
            publish: Box::new(|_, _| {}),
            released: Arc::new(move |seq| {
                let _ = tx.send(seq);
            }),
        };
        let writer =
            Writer::start(store.clone(), Durability::Relaxed, flush_ms, Some(taps)).unwrap();
        (dir, store, writer, released)
    }

    async fn create(store: &Store, writer: &Writer, count: usize) -> (u64, u64) {
        let collection = store.catalog().get("c").unwrap();
        let ops = (0..count)
            .map(|_| {
                let id = crate::ids::generate();
                let record = Record::new(&id, "t", "t", None, 1, serde_json::Map::new());
                RecordOp::Create(NewRecord::prepare(
                    &collection,
                    &record,
                    None,
                    false,
                    crate::access::system(),
                ))
            })
            .collect();
        let mutation = Mutation::Records {
            collection,
            ops,
            actor: None,
        };
        writer.submit(mutation).await.unwrap().seqs.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn relaxed_events_wait_for_a_durable_mark_and_the_flusher_does_not_make_them_wait_long() {
        let (_dir, store, writer, released) = relaxed(60_000).await;
        let start_mark = store.seq_reserved().unwrap();
        // More seqs in one go than the block reserved at start.
        let (_, last) = create(&store, &writer, BLOCK as usize + 2_000).await;
        assert!(last > start_mark);
        let first = released.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            first <= start_mark,
            "released {first}, beyond the durable mark {start_mark}"
        );
        // The flusher stores the next mark at once, not after flush_ms.
        let next = released.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(next, last);
        assert!(store.seq_reserved().unwrap() >= last);
        writer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_stop_leaves_no_gap_in_seqs() {
        let (_dir, store, writer, _released) = relaxed(10).await;
        let message = Message {
            seq: 0,
            topic: "t".into(),
            from: None,
            data: b"{}".to_vec(),
            ts_ms: 0,
        };
        let published = writer
            .submit(Mutation::Publish {
                message,
                history: 0,
                retain: false,
            })
            .await
            .unwrap()
            .seqs
            .unwrap();
        let (_, last) = create(&store, &writer, 3).await;
        assert!(last > published.1);
        writer.shutdown().await;
        let writer = Writer::start(store.clone(), Durability::Relaxed, 10, None).unwrap();
        assert_eq!(create(&store, &writer, 1).await, (last + 1, last + 1));
        writer.shutdown().await;
    }
}
