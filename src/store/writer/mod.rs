//! The one write path. A dedicated thread owns every write to the `data`
//! tree: it takes requests from a channel, gives each change the next
//! sequence number, applies each request as one atomic sled batch (the
//! record, its index entries, its count and its change-log entries
//! together), then hands the whole group to the flusher thread, which runs
//! one fsync for everything waiting (group commit).
//!
//! Consequences the rest of the server relies on:
//! - seq order is commit order and there are no holes: a request that fails
//!   its checks gets no seq;
//! - in `sync` durability a caller hears back only after the fsync that
//!   covers its write; in `relaxed` it hears back at once and the flusher
//!   fsyncs at most every `flush_ms`;
//! - `durable_seq` only moves after an fsync, so realtime can release events
//!   strictly up to what is on disk; relaxed mode releases them once
//!   applied, but never past a seq reservation already on disk, so a crash
//!   never hands a seq out twice (see `seqs`).
//!
//! While the flusher fsyncs group N the writer already applies group N+1,
//! so the disk and the CPU work in parallel.

mod collections;
mod records;
mod topics;
mod users;

use records::Staged;
pub use records::{index_entries, NewRecord, RecordOp};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::change::{Change, ChangeKind};
use super::changelog;
use super::chores::Chores;
use super::client_ids::ClientIds;
use super::flusher::{FlushJob, Flusher};
use super::seqs::{Gate, Reservation};
use super::topics::{Message, StoredTopic};
use super::{Batch, Store, StoreError};
use crate::clock;
use crate::config::Durability;
use crate::model::collection::FieldErrors;
use crate::model::{Collection, CollectionDef, User, UserChanges};

/// Most requests applied before the group is handed to the flusher.
const MAX_GROUP: usize = 1024;
/// Records staged in one sled batch before it is applied.
const MAX_STAGED_OPS: usize = 2_000;
/// Schema-change violations reported at most.
const MAX_REPORTED_VIOLATIONS: usize = 20;

pub enum Mutation {
    /// All or nothing, in order.
    Records {
        collection: Arc<Collection>,
        ops: Vec<RecordOp>,
        actor: Option<String>,
    },
    CreateCollection(CollectionDef),
    UpdateCollection(CollectionDef),
    DropCollection {
        name: String,
        actor: Option<String>,
    },
    CreateUser(User),
    /// Replaces the stored user whole; an edit that must not undo a
    /// concurrent one is an `EditUser`.
    UpdateUser(User),
    /// Applies the changes to the user as stored, here on the writer
    /// thread, and hands the result to `applied` once written.
    EditUser {
        id: String,
        changes: UserChanges,
        applied: oneshot::Sender<User>,
    },
    DeleteUser(String),
    CreateTopic(StoredTopic),
    DeleteTopic(String),
    /// A message on a custom topic: it takes the next seq like a change.
    /// With `history > 0` it is kept (and the topic's oldest dropped beyond
    /// that); otherwise it never touches the disk.
    Publish {
        message: Message,
        history: u32,
    },
}

impl Mutation {
    fn is_create_only(&self) -> bool {
        matches!(self, Mutation::Records { ops, .. }
            if !ops.is_empty() && ops.iter().all(|op| matches!(op, RecordOp::Create(_))))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The seqs given to this write's change-log entries, if it made any.
    pub seqs: Option<(u64, u64)>,
    pub collection: Option<Arc<Collection>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("a record with id {0} already exists")]
    Conflict(String),
    #[error("record {0} not found")]
    NotFound(String),
    #[error("record {id} is at rev {current}")]
    RevMismatch { id: String, current: u64 },
    #[error("the collection changed while the request was being prepared")]
    CollectionChanged,
    #[error("collection {0} not found")]
    CollectionNotFound(String),
    #[error("collection {0} already exists")]
    CollectionExists(String),
    #[error("a topic or collection named {0} already exists")]
    TopicExists(String),
    #[error("topic {0} not found")]
    TopicNotFound(String),
    #[error("user not found")]
    UserNotFound,
    #[error("that email is already registered")]
    EmailTaken,
    #[error("the last admin cannot be removed, disabled or demoted")]
    LastAdmin,
    #[error("existing records do not fit the new schema")]
    Invalid(FieldErrors),
    #[error("storage failure: {0}")]
    Storage(String),
    /// The fsync failed after the write was applied in memory: a later flush
    /// may still persist it, so its outcome is unknown.
    #[error("the write could not be made durable; its outcome is unknown")]
    NotDurable,
    #[error("the writer is shutting down")]
    Unavailable,
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Storage(e.to_string())
    }
}

impl From<sled::Error> for WriteError {
    fn from(e: sled::Error) -> Self {
        WriteError::Storage(e.to_string())
    }
}

pub(super) type Reply = oneshot::Sender<Result<Committed, WriteError>>;

enum Request {
    Write(Box<Mutation>, Reply),
    Shutdown,
}

/// Hears every published message, in seq order, from the writer thread:
/// `(message, stored)`; a stored message is durable only once
/// `durable_seq` reaches it.
pub type PublishTap = Box<dyn Fn(Message, bool) + Send>;

/// Hears the seq up to which changes may go out (durable in `sync` mode;
/// applied and under a durable seq reservation in `relaxed` mode, see
/// `seqs`), from the thread that moves it.
pub type ReleaseTap = Arc<dyn Fn(u64) + Send + Sync>;

/// What the realtime side hears from the writer. Called straight from the
/// writer's threads, never through the async runtime: a busy runtime must
/// not delay events.
pub struct Taps {
    pub publish: PublishTap,
    pub released: ReleaseTap,
}

/// A cheap handle for submitting writes.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
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
        let (flush_tx, flush_rx) = std_mpsc::channel();
        let flusher_store = store.clone();
        let storage_failed = Arc::new(AtomicBool::new(false));
        let flusher_failed = storage_failed.clone();
        let flush_interval = match durability {
            Durability::Sync => Duration::ZERO,
            Durability::Relaxed => Duration::from_millis(flush_ms),
        };
        let (publish_tap, released) = match taps {
            Some(Taps { publish, released }) => (Some(publish), Some(released)),
            None => (None, None),
        };
        let flusher = Flusher {
            store: flusher_store,
            failed: flusher_failed,
            interval: flush_interval,
            durable: durable_tx,
            on_durable: released.clone().filter(|_| gate.is_none()),
            relaxed: gate.clone().map(|gate| (gate, released.clone())),
        };
        let flusher = std::thread::Builder::new()
            .name("pulsebase-flusher".into())
            .spawn(move || flusher.run(flush_rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start flusher: {e}")))?;
        let chores = Chores::pending(&store);
        let state = WriterState {
            store,
            next_seq: last_seq + 1,
            reservation,
            counts,
            history_counts: HashMap::new(),
            client_ids,
            admins,
            tap: publish_tap,
            relaxed: gate.map(|gate| (gate, released)),
            chores,
        };
        let wait_for_flush = durability == Durability::Sync;
        let writer = std::thread::Builder::new()
            .name("pulsebase-writer".into())
            .spawn(move || state.run(rx, flush_tx, committed_tx, wait_for_flush))
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer: {e}")))?;
        Ok(Writer {
            tx,
            committed,
            durable,
            threads: Arc::new(Mutex::new(vec![writer, flusher])),
            storage_failed,
        })
    }

    pub async fn submit(&self, mutation: Mutation) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Request::Write(Box::new(mutation), reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.map_err(|_| WriteError::Unavailable)?
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

pub(super) type Answer = (Reply, Result<Committed, WriteError>);

/// Where answers go. In sync mode every answer waits for the group's fsync,
/// errors included: a 409 or 412 is a claim about state that may not be on
/// disk yet (a staged duplicate id), and a crash must not make it false.
struct Answers {
    wait_for_flush: bool,
    pending: Vec<Answer>,
}

impl Answers {
    fn send(&mut self, reply: Reply, result: Result<Committed, WriteError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::WRITES, "result" => outcome).increment(1);
        if self.wait_for_flush {
            self.pending.push((reply, result));
        } else {
            let _ = reply.send(result);
        }
    }
}

fn load_counts(store: &Store) -> Result<HashMap<u32, u64>, StoreError> {
    let mut counts = HashMap::new();
    for collection in store.catalog().all() {
        counts.insert(collection.id, store.record_count(collection.id)?);
    }
    Ok(counts)
}

/// A change-log entry before it gets its seq.
struct Entry<'a> {
    kind: ChangeKind,
    /// The collection's id and name, or `change::USERS_ID` and `_users`.
    collection: (u32, &'a str),
    record_id: &'a str,
    before: Option<Vec<u8>>,
    after: Option<Vec<u8>>,
    actor: &'a Option<String>,
}

struct WriterState {
    store: Store,
    next_seq: u64,
    reservation: Reservation,
    counts: HashMap<u32, u64>,
    /// Messages kept per custom topic, counted on first use.
    history_counts: HashMap<String, u64>,
    client_ids: ClientIds,
    /// Ids of the enabled admins, so the last one is known without a scan.
    admins: HashSet<String>,
    tap: Option<PublishTap>,
    /// Relaxed mode: where events may go out to, and who hears it.
    relaxed: Option<(Gate, Option<ReleaseTap>)>,
    /// Long housekeeping, done a chunk at a time between write groups.
    chores: Chores,
}

impl WriterState {
    fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        flusher: std_mpsc::Sender<FlushJob>,
        committed: watch::Sender<u64>,
        wait_for_flush: bool,
    ) {
        let mut open = true;
        while open {
            // Housekeeping runs a chunk when it is due (see `chores`): after
            // a group, or while waiting for writes.
            let first = if self.chores.is_empty() {
                requests.blocking_recv()
            } else {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        if self.chores.due() {
                            self.chores.step(&self.store);
                        } else {
                            // Not yet: look for writes again shortly.
                            std::thread::sleep(self.chores.wait().min(Duration::from_micros(500)));
                        }
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            };
            let Some(first) = first else {
                break;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            let mut answers = Answers {
                wait_for_flush,
                pending: Vec::new(),
            };
            let mut staged = Staged::new(self.next_seq);
            for request in group {
                let (mutation, reply) = match request {
                    Request::Write(mutation, reply) => (mutation, reply),
                    Request::Shutdown => {
                        open = false;
                        continue;
                    }
                };
                if mutation.is_create_only() {
                    match self.stage_creates(&mut staged, *mutation) {
                        Ok(done) => staged.replies.push((reply, done)),
                        Err(e) => answers.send(reply, Err(e)),
                    }
                    if staged.ops >= MAX_STAGED_OPS {
                        self.commit_staged(&mut staged, &mut answers);
                    }
                    continue;
                }
                // Everything else reads the store, so what is staged goes first.
                self.commit_staged(&mut staged, &mut answers);
                let result = self.apply(*mutation);
                answers.send(reply, result);
                staged = Staged::new(self.next_seq);
            }
            self.commit_staged(&mut staged, &mut answers);
            let upto = self.next_seq - 1;
            committed.send_replace(upto);
            let mut job = FlushJob {
                upto,
                answers: answers.pending,
                mark: self.reservation.mark(),
                urgent: false,
            };
            if let Some((gate, released)) = &self.relaxed {
                match self.reservation.ahead(&self.store, upto) {
                    Ok(mark) => job.mark = mark,
                    Err(e) => tracing::error!(error = %e, "cannot reserve seqs; events wait"),
                }
                let open = gate.applied(upto);
                if let Some(released) = released {
                    released(open);
                }
                // Events wait for the mark: no reason to wait for flush_ms.
                job.urgent = gate.held_back();
            }
            if let Err(std_mpsc::SendError(job)) = flusher.send(job) {
                for (reply, _) in job.answers {
                    let _ = reply.send(Err(WriteError::Unavailable));
                }
            }
            self.chores.wrote();
            if self.chores.due() {
                self.chores.step(&self.store);
            }
        }
        // Everything handed out is at most this; the final fsync stores it.
        if let Err(e) = self.reservation.lower_to(&self.store, self.next_seq - 1) {
            tracing::warn!(error = %e, "seq mark not lowered; the next start skips some seqs");
        }
        // Later requests find the channel closed and get `Unavailable`.
        requests.close();
        while let Ok(request) = requests.try_recv() {
            if let Request::Write(_, reply) = request {
                let _ = reply.send(Err(WriteError::Unavailable));
            }
        }
    }

    fn apply(&mut self, mutation: Mutation) -> Result<Committed, WriteError> {
        match mutation {
            Mutation::Records {
                collection,
                ops,
                actor,
            } => self.apply_records(&collection, ops, actor),
            Mutation::CreateCollection(def) => self.create_collection(def),
            Mutation::UpdateCollection(def) => self.update_collection(def),
            Mutation::DropCollection { name, actor } => self.drop_collection(&name, actor),
            Mutation::CreateUser(user) => self.put_user(None, user),
            Mutation::UpdateUser(user) => {
                let old = self.existing_user(&user.id)?;
                self.put_user(Some(old), user)
            }
            Mutation::EditUser {
                id,
                changes,
                applied,
            } => {
                let old = self.existing_user(&id)?;
                let mut user = old.clone();
                changes.apply(&mut user);
                let committed = self.put_user(Some(old), user.clone())?;
                let _ = applied.send(user);
                Ok(committed)
            }
            Mutation::DeleteUser(id) => self.delete_user(&id),
            Mutation::CreateTopic(def) => self.create_topic(def),
            Mutation::DeleteTopic(name) => self.delete_topic(&name),
            Mutation::Publish { message, history } => self.publish(message, history),
        }
    }

    /// Appends a change-log entry to `batch` under the next seq.
    fn change(&mut self, batch: &mut Batch, entry: Entry<'_>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let change = Change {
            seq,
            kind: entry.kind,
            collection_id: entry.collection.0,
            collection: entry.collection.1.to_owned(),
            record_id: entry.record_id.to_owned(),
            after: entry.after,
            before: entry.before,
            ts_ms: clock::now_ms(),
            actor: entry.actor.clone(),
        };
        changelog::append(batch, seq, change.collection_id, &change.encode());
        seq
    }

    /// Applies a batch or, if it fails, gives back the seqs it took so the
    /// log stays without holes.
    fn commit(&mut self, batch: Batch, first_seq: u64) -> Result<(), WriteError> {
        if let Err(e) = self.store.apply(batch) {
            self.next_seq = first_seq;
            return Err(e.into());
        }
        Ok(())
    }

    fn seqs_since(&self, first_seq: u64) -> Option<(u64, u64)> {
        (self.next_seq > first_seq).then(|| (first_seq, self.next_seq - 1))
    }
}
