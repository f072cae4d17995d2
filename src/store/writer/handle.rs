//! The handle the rest of the server writes through: it starts the writer
//! and flusher threads, queues requests for them, and publishes messages
//! that are never stored without them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Committed, Mutation, PublishTap, Request, Settle, Taps, WriteError, WriterState, MAX_GROUP,
};
use crate::config::Durability;
use crate::store::chores::Chores;
use crate::store::client_ids::ClientIds;
use crate::store::flusher::{FlushQueue, Flusher};
use crate::store::seqs::{Gate, Reservation, SeqCounter, Unstored};
use crate::store::topics::Message;
use crate::store::{Store, StoreError};

/// A cheap handle for submitting writes.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
    seqs: Arc<SeqCounter>,
    /// For messages published without the writer (`publish_unstored`).
    publish_tap: Option<PublishTap>,
    committed: watch::Receiver<u64>,
    durable: watch::Receiver<u64>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Set by the first failed fsync. sled 0.34 keeps refusing writes after
    /// an I/O error until the process restarts, so this does not clear.
    storage_failed: Arc<AtomicBool>,
}

impl Writer {
    pub fn start(
        store: Store,
        durability: Durability,
        flush_ms: u64,
        taps: Option<Taps>,
    ) -> Result<Writer, StoreError> {
        let chunk = Chores::chunk_from_env();
        Writer::start_with_chunk(store, durability, flush_ms, taps, chunk)
    }

    /// [`Writer::start`] with housekeeping in chunks of `chunk` keys or
    /// records (tests make a small collection take many chunks).
    pub fn start_with_chunk(
        store: Store,
        durability: Durability,
        flush_ms: u64,
        taps: Option<Taps>,
        chunk: usize,
    ) -> Result<Writer, StoreError> {
        let mut reservation = Reservation::load(&store)?;
        let last_seq = store.last_seq()?.max(reservation.mark());
        // Relaxed mode releases events before their fsync: the first ones
        // must already be under a durable mark.
        let gate = match durability {
            Durability::Sync => None,
            Durability::Relaxed => {
                reservation.cover_now(&store, last_seq + 1)?;
                Some(Gate::new(last_seq, &reservation))
            }
        };
        let counts = load_counts(&store)?;
        let client_ids = ClientIds::load(&store)?;
        let admins = store
            .users()?
            .into_iter()
            .filter(|u| u.is_admin() && !u.disabled)
            .map(|u| u.id)
            .collect();
        let (tx, rx) = mpsc::channel(MAX_GROUP);
        let (committed_tx, committed) = watch::channel(last_seq);
        let (durable_tx, durable) = watch::channel(last_seq);
        let (flush_tx, flush_rx, in_flight) = FlushQueue::new();
        let flusher_store = store.clone();
        let storage_failed = Arc::new(AtomicBool::new(false));
        let flusher_failed = storage_failed.clone();
        let flush_interval = match durability {
            Durability::Sync => Duration::ZERO,
            Durability::Relaxed => Duration::from_millis(flush_ms),
        };
        let (publish_tap, released, gap) = match taps {
            Some(Taps {
                publish,
                released,
                gap,
            }) => (Some(publish), Some(released), Some(gap)),
            None => (None, None, None),
        };
        let seqs = Arc::new(SeqCounter::new(last_seq + 1, reservation.durable()));
        let flusher = Flusher {
            store: flusher_store,
            in_flight,
            failed: flusher_failed,
            interval: flush_interval,
            durable: durable_tx,
            on_durable: released.clone().filter(|_| gate.is_none()),
            durable_mark: gate.is_none().then(|| reservation.durable()),
            relaxed: gate.clone().map(|gate| (gate, released.clone())),
        };
        let flusher = std::thread::Builder::new()
            .name("pulsebase-flusher".into())
            .spawn(move || {
                crate::priority::favour_current_thread();
                flusher.run(flush_rx)
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start flusher: {e}")))?;
        let chores = Chores::pending(&store, chunk);
        let state = WriterState {
            store,
            next_seq: last_seq + 1,
            seqs: seqs.clone(),
            gap,
            reservation,
            counts,
            history_counts: HashMap::new(),
            client_ids,
            admins,
            tap: publish_tap.clone(),
            relaxed: gate.map(|gate| (gate, released)),
            chores,
            migrations: HashMap::new(),
            late: Vec::new(),
        };
        let wait_for_flush = durability == Durability::Sync;
        let writer = std::thread::Builder::new()
            .name("pulsebase-writer".into())
            .spawn(move || {
                crate::priority::favour_current_thread();
                state.run(rx, flush_tx, committed_tx, wait_for_flush)
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer: {e}")))?;
        Ok(Writer {
            tx,
            seqs,
            publish_tap,
            committed,
            durable,
            threads: Arc::new(Mutex::new(vec![writer, flusher])),
            storage_failed,
        })
    }

    pub async fn submit(&self, mutation: Mutation) -> Result<Committed, WriteError> {
        self.enqueue(mutation).await?.await
    }

    /// Queues `mutation` and returns its answer to await later, so a caller
    /// with several writes in order (a connection publishing a stream of
    /// messages) can queue the next before the first is answered. Writes
    /// are applied in the order they were queued.
    pub async fn enqueue(
        &self,
        mutation: Mutation,
    ) -> Result<impl Future<Output = Result<Committed, WriteError>> + Send + 'static, WriteError>
    {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Write(Box::new(mutation), reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        Ok(async move { answer.await.map_err(|_| WriteError::Unavailable)? })
    }

    /// Publishes a message that is never stored (a topic without history,
    /// not retained) without a trip through the writer's queue: it takes
    /// the next seq, goes to the hub, and its seq is returned. Only when
    /// the seq would pass the durable reservation does it wait, for a write
    /// group that moves the reservation ahead and its fsync.
    pub async fn publish_unstored(&self, mut message: Message) -> Result<u64, WriteError> {
        loop {
            match self.seqs.take_unstored() {
                Unstored::Taken { seq, reserve_ahead } => {
                    if reserve_ahead {
                        self.reserve_ahead();
                    }
                    message.seq = seq;
                    if let Some(tap) = &self.publish_tap {
                        tap(message, false);
                    }
                    return Ok(seq);
                }
                Unstored::Uncovered => self.settle(Settle::Always).await?,
                Unstored::Closed => return Err(WriteError::Unavailable),
            }
        }
    }

    /// Asks for a write group, which moves the seq reservation ahead, and
    /// its fsync, without waiting for either. A full queue means groups
    /// are coming anyway.
    fn reserve_ahead(&self) {
        let (reply, _) = oneshot::channel();
        let _ = self.tx.try_send(Request::Settle(Settle::Always, reply));
    }

    /// Returns once what the caller wrote to sled before calling is as
    /// durable as `how` asks, through the same group fsyncs as every write.
    pub async fn settle(&self, how: Settle) -> Result<(), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Settle(how, reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.map_err(|_| WriteError::Unavailable)??;
        Ok(())
    }

    /// Whether an fsync has failed (a full or broken disk). Writes are
    /// refused from then on until the server restarts.
    pub fn storage_failed(&self) -> bool {
        self.storage_failed.load(Ordering::Relaxed)
    }

    /// The newest seq applied (visible to readers, maybe not yet on disk).
    pub fn committed_seq(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// The newest seq known to be on disk.
    pub fn durable_seq(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Finishes every queued write, fsyncs, and stops both threads.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown).await;
        let threads: Vec<_> = {
            let mut guard = self.threads.lock().unwrap_or_else(|e| e.into_inner());
            guard.drain(..).collect()
        };
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

fn load_counts(store: &Store) -> Result<HashMap<u32, u64>, StoreError> {
    let mut counts = HashMap::new();
    for collection in store.catalog().all() {
        counts.insert(collection.id, store.record_count(collection.id)?);
    }
    Ok(counts)
}
