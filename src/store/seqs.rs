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
//! Marks are taken a block at a time. After a write group the writer takes
//! the next block ahead, once the seqs handed out pass half of the current
//! one, without waiting: the flusher's next fsync makes it durable. Relaxed
//! mode does so after every group; sync mode only when a publisher of
//! unstored messages asked for it, so that without them its seqs have no
//! gaps.
//! In relaxed mode events past the durable mark wait for it (the writer
//! then asks the flusher not to wait for `flush_ms`). A message that is
//! never stored takes its seq from [`SeqCounter`] only under the durable
//! mark; past it, its publisher asks the writer for a group (with the mark
//! ahead) and its fsync, and the publisher that takes the seq half a block
//! below the mark asks for one without waiting, so a steady stream of
//! messages alone does not stop at each mark.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{keys, Store, StoreError};

/// Seqs reserved per mark. A crash wastes at most this many.
const BLOCK: u64 = 10_000;

/// The next seq, shared by the writer and by the publishers of messages
/// that are never stored (a topic without history, not retained). Those
/// take their seq here, without a trip through the writer's queue: their
/// publisher is not held up by the write groups ahead of it.
///
/// The writer holds the lock while it numbers one request's changes (see
/// `WriterState::leased`), so a request's seqs are contiguous and one that
/// fails its checks gives them back; a publisher holds it for one
/// increment. The hub puts everything back in seq order, so the order in
/// which the two hand over what they numbered does not matter; what it
/// needs is that every seq reaches it (a stored change, a message, or a
/// range given up as nothing).
pub struct SeqCounter {
    next: Mutex<Next>,
    /// The highest reservation mark known to be on disk (`Reservation`):
    /// an unstored message's seq must be under it before it goes out.
    durable_mark: Arc<AtomicU64>,
    /// Set by a publisher that needs the mark moved ahead. Sync mode moves
    /// it only then: a sync-mode server that publishes no such message
    /// keeps its seqs free of the gaps a mark leaves after a crash or a
    /// restored backup.
    mark_wanted: AtomicBool,
}

pub(super) struct Next {
    pub seq: u64,
    /// False once the writer stopped: its last mark counts what was
    /// handed out until then, and nothing may be handed out after.
    open: bool,
}

/// What [`SeqCounter::take_unstored`] gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Unstored {
    /// The seq, and whether the reservation should move ahead now (the
    /// seq is half a block from the durable mark; exactly one publisher
    /// is told).
    Taken { seq: u64, reserve_ahead: bool },
    /// The next seq is past the durable mark: wait for the writer to store
    /// the next one.
    Uncovered,
    /// The writer has stopped.
    Closed,
}

impl SeqCounter {
    pub(super) fn new(next: u64, durable_mark: Arc<AtomicU64>) -> SeqCounter {
        SeqCounter {
            next: Mutex::new(Next {
                seq: next,
                open: true,
            }),
            durable_mark,
            mark_wanted: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Next> {
        // Every holder leaves a consistent value (one assignment).
        self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next seq for a message that is never stored, if a durable mark
    /// covers it: a crash then cannot hand it out again.
    pub fn take_unstored(&self) -> Unstored {
        let mut next = self.lock();
        if !next.open {
            return Unstored::Closed;
        }
        let seq = next.seq;
        let mark = self.durable_mark.load(Ordering::SeqCst);
        if seq > mark {
            self.mark_wanted.store(true, Ordering::SeqCst);
            return Unstored::Uncovered;
        }
        next.seq += 1;
        let reserve_ahead = mark - seq == BLOCK / 2;
        if reserve_ahead {
            self.mark_wanted.store(true, Ordering::SeqCst);
        }
        Unstored::Taken { seq, reserve_ahead }
    }

    /// Whether a publisher asked for the mark to move ahead since the last
    /// call.
    pub(super) fn mark_wanted(&self) -> bool {
        self.mark_wanted.swap(false, Ordering::SeqCst)
    }

    /// The newest seq handed out so far.
    pub fn last(&self) -> u64 {
        self.lock().seq - 1
    }

    /// Takes `count` seqs in one go (`count > 0`): the first.
    pub(super) fn take(&self, count: u64) -> u64 {
        let mut next = self.lock();
        let first = next.seq;
        next.seq += count;
        first
    }

    /// Gives back the seqs `first..=last` taken and never used. Returns
    /// false if some were taken after them: then they stay a gap, and the
    /// caller must tell the hub there is nothing at them.
    pub(super) fn give_back(&self, first: u64, last: u64) -> bool {
        let mut next = self.lock();
        if next.seq == last + 1 {
            next.seq = first;
            true
        } else {
            false
        }
    }

    /// Stops handing out seqs: the newest handed out.
    pub(super) fn close(&self) -> u64 {
        let mut next = self.lock();
        next.open = false;
        next.seq - 1
    }
}

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
            publish: Arc::new(|_, _| {}),
            released: Arc::new(move |seq| {
                let _ = tx.send(seq);
            }),
            gap: Arc::new(|_, _| {}),
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

    fn message(topic: &str) -> Message {
        Message {
            seq: 0,
            topic: topic.into(),
            from: None,
            data: b"{}".to_vec(),
            ts_ms: 0,
        }
    }

    /// A sync-mode writer on a fresh store with collection `c`, and the
    /// seqs of the messages its publish tap hears.
    async fn synced() -> (tempfile::TempDir, Store, Writer, mpsc::Receiver<u64>) {
        let (dir, store, writer) =
            crate::store::tests::store_with(serde_json::json!({"name": "c"}), []).await;
        writer.shutdown().await;
        let (tx, heard) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let taps = Taps {
            publish: Arc::new(move |message: Message, stored| {
                assert!(!stored);
                let _ = tx.lock().unwrap().send(message.seq);
            }),
            released: Arc::new(|_| {}),
            gap: Arc::new(|_, _| {}),
        };
        let writer = Writer::start(store.clone(), Durability::Sync, 0, Some(taps)).unwrap();
        (dir, store, writer, heard)
    }

    /// Messages that are never stored take their seqs beside the writer's
    /// changes, without duplicates, each under a reservation mark already
    /// stored when its publisher hears it, over several blocks of marks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unstored_messages_take_unique_seqs_under_a_stored_mark() {
        let (_dir, store, writer, heard) = synced().await;
        let writer = Arc::new(writer);
        let mut publishers = Vec::new();
        for _ in 0..4 {
            let (store, writer) = (store.clone(), writer.clone());
            publishers.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..(BLOCK * 3 / 4) {
                    let seq = writer.publish_unstored(message("t")).await.unwrap();
                    let mark = store.seq_reserved().unwrap();
                    assert!(seq <= mark, "seq {seq} handed out above the mark {mark}");
                    seqs.push(seq);
                }
                seqs
            }));
        }
        let mut taken = Vec::new();
        for _ in 0..20 {
            let (first, last) = create(&store, &writer, 50).await;
            taken.extend(first..=last);
        }
        let mut published = Vec::new();
        for publisher in publishers {
            published.extend(publisher.await.unwrap());
        }
        let mut tapped: Vec<u64> = heard.try_iter().collect();
        tapped.sort_unstable();
        let mut sorted = published.clone();
        sorted.sort_unstable();
        assert_eq!(tapped, sorted, "the hub hears each message with its seq");
        taken.extend(published);
        let count = taken.len();
        taken.sort_unstable();
        taken.dedup();
        assert_eq!(taken.len(), count, "a seq was handed out twice");
        writer.shutdown().await;
    }

    /// A writer held inside sled (a change-log watcher that does not read
    /// blocks every write once sled's 1024-event channel is full) does not
    /// hold up a message that is never stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unstored_message_does_not_wait_for_a_stuck_writer() {
        let (_dir, store, writer, _heard) = synced().await;
        // Covered by a stored mark before the writer gets stuck.
        writer.publish_unstored(message("t")).await.unwrap();
        let watcher = store.watch_changes();
        let writer = Arc::new(writer);
        let creating = {
            let (store, writer) = (store.clone(), writer.clone());
            tokio::spawn(async move { create(&store, &writer, 1_100).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!creating.is_finished(), "the writer was not held");
        let published = tokio::time::timeout(
            Duration::from_secs(5),
            writer.publish_unstored(message("t")),
        )
        .await;
        // Let the writer go before judging, so the test ends either way.
        let draining = std::thread::spawn(move || for _ in watcher.take(1_100) {});
        let (first, last) = creating.await.unwrap();
        draining.join().unwrap();
        let seq = published
            .expect("the message waited for the writer")
            .unwrap();
        assert!(
            !(first..=last).contains(&seq),
            "seq {seq} is one of the stuck write's {first}..={last}"
        );
        writer.shutdown().await;
    }
}
