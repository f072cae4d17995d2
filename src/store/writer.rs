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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::change::{Change, ChangeKind, USERS_ID};
use super::chores::{Chore, Chores};
use super::client_ids::ClientIds;
use super::codec::{self, StoredCollection, StoredRecord};
use super::flusher::{FlushJob, Flusher};
use super::seqs::{Gate, Reservation};
use super::topics::{Message, StoredTopic, Topic};
use super::{keys, Store, StoreError};
use crate::access::Allowed;
use crate::clock;
use crate::config::Durability;
use crate::model::collection::FieldErrors;
use crate::model::{Collection, CollectionDef, Record, User, UserChanges};

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

pub enum RecordOp {
    Create(NewRecord),
    /// `record.rev()` must be `expected_rev + 1`.
    Replace {
        record: Record,
        expected_rev: u64,
        permit: Allowed,
    },
    Delete {
        id: String,
        expected_rev: Option<u64>,
        expired: bool,
        permit: Allowed,
    },
}

/// A record to create, encoded by the caller (off the writer thread): its
/// stored value, index entries and change-log entry are ready to insert,
/// and the writer only checks the id and assigns the seq.
pub struct NewRecord {
    id: String,
    collection_id: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    index_keys: Vec<Vec<u8>>,
    change: Vec<u8>,
    /// Whether the id is the client's: it is always looked up; a server id
    /// only when a client may have taken it (see [`ClientIds`]).
    client_chose_id: bool,
}

impl NewRecord {
    /// Encodes a record the access layer allowed (`_permit`) to be created.
    pub fn prepare(
        collection: &Collection,
        record: &Record,
        actor: Option<&str>,
        client_chose_id: bool,
        _permit: Allowed,
    ) -> NewRecord {
        let json = record.to_bytes();
        let value = codec::encode(&StoredRecord {
            rev: record.rev(),
            json: json.clone(),
        });
        let change = Change {
            seq: 0,
            kind: ChangeKind::Create,
            collection_id: collection.id,
            collection: collection.def.name.clone(),
            record_id: record.id().to_owned(),
            after: Some(json),
            before: None,
            ts_ms: clock::now_ms(),
            actor: actor.map(str::to_owned),
        }
        .encode();
        NewRecord {
            id: record.id().to_owned(),
            collection_id: collection.id,
            key: keys::record(collection.id, record.id()),
            value,
            index_keys: index_entries(collection, record),
            change,
            client_chose_id,
        }
    }

    fn insert_into(self, batch: &mut sled::Batch, seq: u64) {
        for entry in self.index_keys {
            batch.insert(entry, &[]);
        }
        batch.insert(self.key, self.value);
        batch.insert(&keys::change(seq)[..], self.change);
        batch.insert(
            &keys::change_by_collection(self.collection_id, seq)[..],
            &[],
        );
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

/// Work run on the writer thread between two write groups, with no write
/// in flight (a backup).
type Exclusive = Box<dyn FnOnce(&Store) + Send>;

enum Request {
    Write(Box<Mutation>, Reply),
    Exclusive(Exclusive),
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

    /// Runs `work` on the writer thread once every write submitted before it
    /// is applied, and before any later one: it sees the `data` tree exactly
    /// between two writes. Writes wait meanwhile, so keep it short (a backup
    /// goes to a local file, not to the network).
    pub async fn exclusive<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> T + Send + 'static,
    ) -> Result<T, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job: Exclusive = Box::new(move |store| {
            let _ = reply.send(work(store));
        });
        self.tx
            .send(Request::Exclusive(job))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.map_err(|_| WriteError::Unavailable)
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

/// Consecutive create-only writes of one group share one sled batch: fewer,
/// larger batches cost the writer much less than one per request.
struct Staged {
    batch: sled::Batch,
    first_seq: u64,
    replies: Vec<(Reply, Committed)>,
    /// Record keys created by this stage, for duplicate ids across requests.
    keys: HashSet<Vec<u8>>,
    /// Record counts after this stage, per collection.
    counts: HashMap<u32, u64>,
    ops: usize,
}

impl Staged {
    fn new(first_seq: u64) -> Staged {
        Staged {
            batch: sled::Batch::default(),
            first_seq,
            replies: Vec::new(),
            keys: HashSet::new(),
            counts: HashMap::new(),
            ops: 0,
        }
    }
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
            // Housekeeping runs a chunk after each group, and on while idle.
            let first = if self.chores.is_empty() {
                requests.blocking_recv()
            } else {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.chores.step(&self.store);
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
                    Request::Exclusive(work) => {
                        self.commit_staged(&mut staged, &mut answers);
                        work(&self.store);
                        continue;
                    }
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
            self.chores.step(&self.store);
        }
        // Everything handed out is at most this; the final fsync stores it.
        if let Err(e) = self.reservation.lower_to(&self.store, self.next_seq - 1) {
            tracing::warn!(error = %e, "seq mark not lowered; the next start skips some seqs");
        }
        // Later requests find the channel closed and get `Unavailable`.
        requests.close();
        while let Ok(request) = requests.try_recv() {
            // A dropped exclusive job drops its reply: the caller hears
            // Unavailable.
            if let Request::Write(_, reply) = request {
                let _ = reply.send(Err(WriteError::Unavailable));
            }
        }
    }

    /// Checks a create-only write and adds it to the group's shared batch.
    /// Nothing is staged unless every record of the write is.
    fn stage_creates(
        &mut self,
        staged: &mut Staged,
        mutation: Mutation,
    ) -> Result<Committed, WriteError> {
        let Mutation::Records {
            collection: prepared_for,
            ops,
            ..
        } = mutation
        else {
            return Err(WriteError::Storage("not a create".into()));
        };
        let current = self.current_collection(&prepared_for, false)?;
        let data = self.store.data();
        let mut fresh = HashSet::with_capacity(ops.len());
        for op in &ops {
            if let RecordOp::Create(new) = op {
                if staged.keys.contains(&new.key)
                    || !fresh.insert(new.key.clone())
                    || (self
                        .client_ids
                        .must_look_up(current.id, &new.id, new.client_chose_id)
                        && data.contains_key(&new.key)?)
                {
                    return Err(WriteError::Conflict(new.id.clone()));
                }
            }
        }
        let first_seq = self.next_seq;
        for op in ops {
            if let RecordOp::Create(new) = op {
                self.client_ids
                    .storing(current.id, &new.id, new.client_chose_id);
                new.insert_into(&mut staged.batch, self.next_seq);
                self.next_seq += 1;
                staged.ops += 1;
            }
        }
        staged.keys.extend(fresh);
        let count = staged
            .counts
            .entry(current.id)
            .or_insert_with(|| self.counts.get(&current.id).copied().unwrap_or(0));
        *count += self.next_seq - first_seq;
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: Some(current),
        })
    }

    /// Applies the staged batch; its writers hear back after the fsync
    /// (sync) or now (relaxed), or get the storage error.
    fn commit_staged(&mut self, staged: &mut Staged, answers: &mut Answers) {
        let done = std::mem::replace(staged, Staged::new(self.next_seq));
        if done.replies.is_empty() {
            return;
        }
        let mut batch = done.batch;
        for (collection, count) in &done.counts {
            batch.insert(keys::count(*collection), &count.to_be_bytes());
        }
        match self.store.data().apply_batch(batch) {
            Ok(()) => {
                self.counts.extend(done.counts);
                for (reply, committed) in done.replies {
                    answers.send(reply, Ok(committed));
                }
            }
            Err(e) => {
                // Nothing of the stage was written: give its seqs back.
                self.next_seq = done.first_seq;
                for (reply, _) in done.replies {
                    answers.send(reply, Err(WriteError::Storage(e.to_string())));
                }
            }
        }
        *staged = Staged::new(self.next_seq);
    }

    fn current_collection(
        &self,
        prepared_for: &Collection,
        only_deletes: bool,
    ) -> Result<Arc<Collection>, WriteError> {
        let current = self
            .store
            .catalog()
            .get(&prepared_for.def.name)
            .filter(|c| c.id == prepared_for.id)
            .ok_or_else(|| WriteError::CollectionNotFound(prepared_for.def.name.clone()))?;
        if current.version != prepared_for.version && !only_deletes {
            return Err(WriteError::CollectionChanged);
        }
        Ok(current)
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

    fn create_topic(&mut self, def: StoredTopic) -> Result<Committed, WriteError> {
        let name = def.name.clone();
        if self.store.catalog().get(&name).is_some() || self.store.topics().get(&name).is_some() {
            return Err(WriteError::TopicExists(name));
        }
        let topic = Topic::compile(def)
            .map_err(|(part, e)| WriteError::Invalid([(part.to_owned(), e)].into()))?;
        self.store
            .data()
            .insert(keys::topic(&name), codec::encode(&topic.def))?;
        self.store.topics().put(Arc::new(topic));
        Ok(Committed::default())
    }

    fn delete_topic(&mut self, name: &str) -> Result<Committed, WriteError> {
        if self.store.topics().get(name).is_none() {
            return Err(WriteError::TopicNotFound(name.to_owned()));
        }
        let data = self.store.data();
        let mut batch = sled::Batch::default();
        batch.remove(keys::topic(name));
        batch.remove(keys::history_trimmed(name));
        for key in data.scan_prefix(keys::history_prefix(name)).keys() {
            batch.remove(key?);
        }
        data.apply_batch(batch)?;
        self.store.topics().remove(name);
        self.history_counts.remove(name);
        Ok(Committed::default())
    }

    fn publish(&mut self, mut message: Message, history: u32) -> Result<Committed, WriteError> {
        let seq = self.next_seq;
        let data = self.store.data().clone();
        // The publisher hears the seq at once, and a message with no
        // history goes out at once: never to be handed out again.
        self.reservation.cover_now(&self.store, seq)?;
        message.seq = seq;
        let stored = history > 0;
        if stored {
            let prefix = keys::history_prefix(&message.topic);
            let count = match self.history_counts.get(&message.topic) {
                Some(count) => *count,
                None => data.scan_prefix(&prefix).count() as u64,
            };
            let mut batch = sled::Batch::default();
            batch.insert(keys::history(&message.topic, seq), codec::encode(&message));
            let excess = (count + 1).saturating_sub(u64::from(history));
            let mut dropped = None;
            for key in data.scan_prefix(&prefix).keys().take(excess as usize) {
                let key = key?;
                dropped = keys::history_seq(&key);
                batch.remove(key);
            }
            if let Some(dropped) = dropped {
                batch.insert(
                    keys::history_trimmed(&message.topic),
                    &dropped.to_be_bytes(),
                );
            }
            data.apply_batch(batch)?;
            self.history_counts
                .insert(message.topic.clone(), count + 1 - excess);
        }
        self.next_seq += 1;
        if let Some(tap) = &self.tap {
            tap(message, stored);
        }
        Ok(Committed {
            seqs: Some((seq, seq)),
            collection: None,
        })
    }

    /// Appends a change-log entry to `batch` under the next seq.
    fn change(&mut self, batch: &mut sled::Batch, entry: Entry<'_>) -> u64 {
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
        batch.insert(&keys::change(seq)[..], change.encode());
        batch.insert(
            &keys::change_by_collection(change.collection_id, seq)[..],
            &[],
        );
        seq
    }

    /// Applies a batch or, if it fails, gives back the seqs it took so the
    /// log stays without holes.
    fn commit(&mut self, batch: sled::Batch, first_seq: u64) -> Result<(), WriteError> {
        if let Err(e) = self.store.data().apply_batch(batch) {
            self.next_seq = first_seq;
            return Err(e.into());
        }
        Ok(())
    }

    fn seqs_since(&self, first_seq: u64) -> Option<(u64, u64)> {
        (self.next_seq > first_seq).then(|| (first_seq, self.next_seq - 1))
    }

    fn apply_records(
        &mut self,
        prepared_for: &Collection,
        ops: Vec<RecordOp>,
        actor: Option<String>,
    ) -> Result<Committed, WriteError> {
        let only_deletes = ops.iter().all(|op| matches!(op, RecordOp::Delete { .. }));
        let current = self.current_collection(prepared_for, only_deletes)?;
        let data = self.store.data().clone();
        let name = (current.id, current.def.name.as_str());
        let first_seq = self.next_seq;
        let mut batch = sled::Batch::default();
        let mut delta: i64 = 0;
        let mut touched = HashSet::new();
        let result = (|| {
            for op in ops {
                match op {
                    RecordOp::Create(new) => {
                        if !touched.insert(new.key.clone())
                            || (self.client_ids.must_look_up(
                                current.id,
                                &new.id,
                                new.client_chose_id,
                            ) && data.contains_key(&new.key)?)
                        {
                            return Err(WriteError::Conflict(new.id));
                        }
                        self.client_ids
                            .storing(current.id, &new.id, new.client_chose_id);
                        let seq = self.next_seq;
                        self.next_seq += 1;
                        new.insert_into(&mut batch, seq);
                        delta += 1;
                    }
                    RecordOp::Replace {
                        record,
                        expected_rev,
                        ..
                    } => {
                        let key = keys::record(current.id, record.id());
                        if !touched.insert(key.clone()) {
                            return Err(WriteError::Conflict(record.id().to_owned()));
                        }
                        let old = stored_record(&data, &key, record.id(), Some(expected_rev))?;
                        let old_record = Record::from_bytes(&old.json)
                            .ok_or_else(|| WriteError::Storage("corrupt record".into()))?;
                        let old_entries: HashSet<_> =
                            index_entries(&current, &old_record).into_iter().collect();
                        let new_entries: HashSet<_> =
                            index_entries(&current, &record).into_iter().collect();
                        for entry in old_entries.difference(&new_entries) {
                            batch.remove(entry.as_slice());
                        }
                        for entry in new_entries.difference(&old_entries) {
                            batch.insert(entry.as_slice(), &[]);
                        }
                        let json = record.to_bytes();
                        batch.insert(
                            key,
                            codec::encode(&StoredRecord {
                                rev: record.rev(),
                                json: json.clone(),
                            }),
                        );
                        self.change(
                            &mut batch,
                            Entry {
                                kind: ChangeKind::Update,
                                collection: name,
                                record_id: record.id(),
                                before: Some(old.json),
                                after: Some(json),
                                actor: &actor,
                            },
                        );
                    }
                    RecordOp::Delete {
                        id,
                        expected_rev,
                        expired,
                        ..
                    } => {
                        let key = keys::record(current.id, &id);
                        if !touched.insert(key.clone()) {
                            return Err(WriteError::Conflict(id));
                        }
                        // Retention races with ordinary deletes; a record
                        // already gone needs no expiry.
                        if expired && !data.contains_key(&key)? {
                            continue;
                        }
                        let old = stored_record(&data, &key, &id, expected_rev)?;
                        if let Some(old_record) = Record::from_bytes(&old.json) {
                            for entry in index_entries(&current, &old_record) {
                                batch.remove(entry);
                            }
                        }
                        batch.remove(key);
                        let kind = if expired {
                            ChangeKind::Expire
                        } else {
                            ChangeKind::Delete
                        };
                        self.change(
                            &mut batch,
                            Entry {
                                kind,
                                collection: name,
                                record_id: &id,
                                before: Some(old.json),
                                after: None,
                                actor: &actor,
                            },
                        );
                        delta -= 1;
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.next_seq = first_seq;
            return Err(e);
        }
        let count = self.counts.entry(current.id).or_insert(0);
        let new_count = (*count as i64 + delta).max(0) as u64;
        if delta != 0 {
            batch.insert(keys::count(current.id), &new_count.to_be_bytes());
        }
        self.commit(batch, first_seq)?;
        self.counts.insert(current.id, new_count);
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: Some(current),
        })
    }

    fn create_collection(&mut self, def: CollectionDef) -> Result<Committed, WriteError> {
        if self.store.catalog().get(&def.name).is_some() {
            return Err(WriteError::CollectionExists(def.name));
        }
        if self.store.topics().get(&def.name).is_some() {
            return Err(WriteError::TopicExists(def.name));
        }
        let data = self.store.data();
        let id = data
            .get(keys::NEXT_COLLECTION_ID)?
            .and_then(|v| v.as_ref().try_into().ok().map(u32::from_be_bytes))
            .unwrap_or(1);
        let now = clock::now_rfc3339();
        let collection =
            Collection::compile(id, 1, now.clone(), now, def).map_err(WriteError::Invalid)?;
        let mut batch = sled::Batch::default();
        batch.insert(keys::NEXT_COLLECTION_ID, &(id + 1).to_be_bytes());
        batch.insert(
            keys::collection(&collection.def.name),
            encode_collection(&collection),
        );
        self.store.data().apply_batch(batch)?;
        let collection = Arc::new(collection);
        self.counts.insert(id, 0);
        self.store.catalog().put(collection.clone());
        Ok(Committed {
            seqs: None,
            collection: Some(collection),
        })
    }

    fn update_collection(&mut self, def: CollectionDef) -> Result<Committed, WriteError> {
        let old = self
            .store
            .catalog()
            .get(&def.name)
            .ok_or_else(|| WriteError::CollectionNotFound(def.name.clone()))?;
        let collection = Collection::compile(
            old.id,
            old.version + 1,
            old.created.clone(),
            clock::now_rfc3339(),
            def,
        )
        .map_err(WriteError::Invalid)?;
        let data = self.store.data().clone();
        let mut batch = sled::Batch::default();
        let mut violations = FieldErrors::new();
        let indexes_changed = old.def.indexes != collection.def.indexes;
        for entry in data.scan_prefix(keys::collection_prefix(keys::RECORD, old.id)) {
            let (_, value) = entry?;
            let record = super::decode_record(&value)?;
            if let Err(errors) = collection.validate(record.data(), false) {
                for (field, reason) in errors {
                    if violations.len() < MAX_REPORTED_VIOLATIONS {
                        violations.insert(format!("records.{}.{field}", record.id()), reason);
                    }
                }
            }
            if indexes_changed && violations.is_empty() {
                let old_entries: HashSet<_> = index_entries(&old, &record).into_iter().collect();
                let new_entries: HashSet<_> =
                    index_entries(&collection, &record).into_iter().collect();
                for stale in old_entries.difference(&new_entries) {
                    batch.remove(stale.as_slice());
                }
                for fresh in new_entries.difference(&old_entries) {
                    batch.insert(fresh.as_slice(), &[]);
                }
            }
        }
        if !violations.is_empty() {
            return Err(WriteError::Invalid(violations));
        }
        batch.insert(
            keys::collection(&collection.def.name),
            encode_collection(&collection),
        );
        data.apply_batch(batch)?;
        let collection = Arc::new(collection);
        self.store.catalog().put(collection.clone());
        Ok(Committed {
            seqs: None,
            collection: Some(collection),
        })
    }

    fn drop_collection(
        &mut self,
        name: &str,
        actor: Option<String>,
    ) -> Result<Committed, WriteError> {
        let collection = self
            .store
            .catalog()
            .get(name)
            .ok_or_else(|| WriteError::CollectionNotFound(name.to_owned()))?;
        let first_seq = self.next_seq;
        let mut batch = sled::Batch::default();
        batch.remove(keys::collection(name));
        batch.insert(keys::purge(collection.id), &[]);
        self.change(
            &mut batch,
            Entry {
                kind: ChangeKind::DropCollection,
                collection: (collection.id, name),
                record_id: "",
                before: None,
                after: None,
                actor: &actor,
            },
        );
        self.commit(batch, first_seq)?;
        self.store.catalog().remove(name);
        self.counts.remove(&collection.id);
        // The records are unreachable from here on (ids are never reused);
        // removing them is housekeeping, done a chunk at a time between
        // write groups, that a crash may interrupt and the next start
        // resumes.
        self.chores.push(Chore::Purge(collection.id));
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: Some(collection),
        })
    }

    fn existing_user(&self, id: &str) -> Result<User, WriteError> {
        self.store.get_user(id)?.ok_or(WriteError::UserNotFound)
    }

    fn is_last_admin(&self, user: &User) -> Result<bool, WriteError> {
        if !user.is_admin() || user.disabled {
            return Ok(false);
        }
        let others = self
            .store
            .users()?
            .into_iter()
            .filter(|u| u.id != user.id && u.is_admin() && !u.disabled)
            .count();
        Ok(others == 0)
    }

    fn put_user(&mut self, old: Option<User>, user: User) -> Result<Committed, WriteError> {
        let data = self.store.data().clone();
        let mut batch = sled::Batch::default();
        let email_changed = old.as_ref().is_none_or(|o| o.email != user.email);
        if email_changed && data.contains_key(keys::email(&user.email))? {
            return Err(WriteError::EmailTaken);
        }
        if let Some(old) = &old {
            let demoted = !user.is_admin() || user.disabled;
            if demoted && self.is_last_admin(old)? {
                return Err(WriteError::LastAdmin);
            }
            if email_changed {
                batch.remove(keys::email(&old.email));
            }
        } else if data.contains_key(keys::user(&user.id))? {
            return Err(WriteError::Conflict(user.id));
        }
        batch.insert(keys::email(&user.email), user.id.as_bytes());
        batch.insert(keys::user(&user.id), codec::encode(&user));
        let first_seq = self.next_seq;
        let kind = if old.is_some() {
            ChangeKind::Update
        } else {
            ChangeKind::Create
        };
        let before = old.map(|o| public_bytes(&o));
        let after = Some(public_bytes(&user));
        self.change(
            &mut batch,
            Entry {
                kind,
                collection: (USERS_ID, "_users"),
                record_id: &user.id,
                before,
                after,
                actor: &None,
            },
        );
        self.commit(batch, first_seq)?;
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: None,
        })
    }

    fn delete_user(&mut self, id: &str) -> Result<Committed, WriteError> {
        let old = self.existing_user(id)?;
        if self.is_last_admin(&old)? {
            return Err(WriteError::LastAdmin);
        }
        let mut batch = sled::Batch::default();
        batch.remove(keys::user(id));
        batch.remove(keys::email(&old.email));
        let first_seq = self.next_seq;
        self.change(
            &mut batch,
            Entry {
                kind: ChangeKind::Delete,
                collection: (USERS_ID, "_users"),
                record_id: id,
                before: Some(public_bytes(&old)),
                after: None,
                actor: &None,
            },
        );
        self.commit(batch, first_seq)?;
        Ok(Committed {
            seqs: self.seqs_since(first_seq),
            collection: None,
        })
    }
}

fn public_bytes(user: &User) -> Vec<u8> {
    serde_json::to_vec(&user.public_json()).unwrap_or_default()
}

fn encode_collection(collection: &Collection) -> Vec<u8> {
    codec::encode(&StoredCollection {
        id: collection.id,
        version: collection.version,
        created: collection.created.clone(),
        updated: collection.updated.clone(),
        def_json: serde_json::to_vec(&collection.def).unwrap_or_default(),
    })
}

fn stored_record(
    data: &sled::Tree,
    key: &[u8],
    id: &str,
    expected_rev: Option<u64>,
) -> Result<StoredRecord, WriteError> {
    let bytes = data
        .get(key)?
        .ok_or_else(|| WriteError::NotFound(id.to_owned()))?;
    let stored: StoredRecord = codec::decode(&bytes)?;
    if let Some(expected) = expected_rev {
        if stored.rev != expected {
            return Err(WriteError::RevMismatch {
                id: id.to_owned(),
                current: stored.rev,
            });
        }
    }
    Ok(stored)
}

/// The index entries a record needs: `created` always (retention and the
/// default sort use it), plus each declared index.
pub fn index_entries(collection: &Collection, record: &Record) -> Vec<Vec<u8>> {
    let mut entries = Vec::with_capacity(1 + collection.def.indexes.len());
    let id = record.id();
    for field in std::iter::once("created").chain(
        collection
            .def
            .indexes
            .iter()
            .map(String::as_str)
            .filter(|f| *f != "created"),
    ) {
        let value = record.fields.get(field).unwrap_or(&Value::Null);
        entries.push(keys::index_entry(collection.id, field, value, id));
    }
    entries
}
