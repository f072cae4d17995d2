//! The one write path. A dedicated thread owns every write to the `data`
//! tree: it takes requests from a channel, gives each change the next
//! sequence number, applies each request as one atomic sled batch (the
//! record, its index entries, its count and its change-log entries
//! together), then hands the whole group to the flusher thread, which runs
//! one fsync for everything waiting (group commit).
//!
//! Consequences the rest of the server relies on:
//! - seq order is commit order, and a request that fails its checks gets no
//!   seq; the seqs the writer gives are a shared counter's
//!   ([`SeqCounter`]), which also numbers messages that are never stored
//!   without passing through here (`Writer::publish_unstored`);
//! - in `sync` durability a caller hears back only after the fsync that
//!   covers its write; in `relaxed` it hears back at once and the flusher
//!   fsyncs at most every `flush_ms`;
//! - `durable_seq` only moves after an fsync, so realtime can release events
//!   strictly up to what is on disk; relaxed mode releases them once
//!   applied, but never past a seq reservation already on disk, so a crash
//!   never hands a seq out twice (see `seqs`).
//!
//! In `sync` durability the writer does not apply a group while the
//! flusher fsyncs the one before it: it lets the requests that arrive
//! meanwhile queue, and applies them all as the next group once the fsync
//! ends. Their answers wait for the next fsync either way, and every sled
//! batch costs log writes of its own (sled seals and writes out its log
//! buffer twice per batch to keep the batch atomic across a crash), so one
//! batch per fsync costs the disk far less than one per request: at 64
//! clients each writing one record at a time, about twice the records per
//! second and a third of the bytes written per record (bench/RESULTS.md).
//! Requests that take the writer over a quarter of an fsync each to apply
//! (blocks of a thousand readings) are the exception: holding them would
//! line the writer's work up behind the disk's instead of beside it, which
//! cost more than the batches saved (`FlushQueue::wait_idle`).
//! In `relaxed` durability a caller hears back once its write is applied,
//! so the writer applies at once and the flusher's `flush_ms` does the
//! grouping.

mod answers;
mod collections;
mod error;
mod handle;
mod migration;
mod records;
mod series;
#[cfg(test)]
mod series_tests;
mod topics;
mod users;

pub(super) use answers::Answer;
use answers::Answers;
pub use answers::Settle;
pub use error::WriteError;
pub use handle::Writer;
use records::Staged;
pub use records::{index_entries, NewRecord, RecordOp};
pub use series::{Append, Truncation};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::change::{Change, ChangeKind};
use super::changelog;
use super::chores::{Chore, Chores};
use super::client_ids::ClientIds;
use super::flusher::{FlushJob, FlushQueue};
use super::seqs::{Gate, Reservation, SeqCounter};
use super::topics::{Message, StoredTopic};
use super::{Batch, Store};
use crate::clock;
use crate::model::{Collection, CollectionDef, User, UserChanges};

/// Most requests applied before the group is handed to the flusher.
const MAX_GROUP: usize = 1024;
/// Records staged in one sled batch before it is applied.
const MAX_STAGED_OPS: usize = 2_000;

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
    /// Readings for a series collection, all or nothing.
    Append(Append),
    /// Forgets ingest `Idempotency-Key`s (keys of the `I` prefix only).
    ForgetIdempotencyKeys(Vec<Vec<u8>>),
    /// Drops a series collection's old readings.
    Truncate {
        collection: Arc<Collection>,
        truncation: Truncation,
    },
    /// A message on a custom topic: it takes the next seq like a change.
    /// With `history > 0` it is kept (and the topic's oldest dropped beyond
    /// that); otherwise it never touches the disk. `retain` also keeps it
    /// as the topic's retained message (MQTT), whatever its history. A
    /// message that is neither kept nor retained is published with
    /// [`Writer::publish_unstored`] instead, which does not queue here;
    /// queued, it is answered like any write.
    Publish {
        message: Message,
        history: u32,
        retain: bool,
    },
    /// Forgets a custom topic's retained message.
    ClearRetained(String),
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
    /// An append answered from its `Idempotency-Key`: written before.
    pub repeated: bool,
}

pub(super) type Reply = oneshot::Sender<Result<Committed, WriteError>>;

enum Request {
    Write(Box<Mutation>, Reply),
    Settle(Settle, Reply),
    Shutdown,
}

/// Hears every published message: `(message, stored)`; a stored message
/// is durable only once `durable_seq` reaches it. Called by the writer
/// thread and by publishers of unstored messages, so not in seq order.
pub type PublishTap = Arc<dyn Fn(Message, bool) + Send + Sync>;

/// Hears seqs `first..=last` that will carry nothing: taken by a write
/// that then failed, after others took later seqs, so they could not be
/// given back. Whoever waits for every seq in order must skip them.
pub type GapTap = Arc<dyn Fn(u64, u64) + Send + Sync>;

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
    pub gap: GapTap,
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
    /// The next seq, valid while the writer holds [`SeqCounter`]'s lock
    /// (`leased`).
    next_seq: u64,
    seqs: Arc<SeqCounter>,
    gap: Option<GapTap>,
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
    /// Collection updates under way, by collection id (`migration`).
    migrations: HashMap<u32, migration::Migration>,
    /// Answers decided outside the request's own turn (a migration's end),
    /// sent with the next group or chunk.
    late: Vec<Answer>,
}

impl WriterState {
    fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        flusher: FlushQueue,
        committed: watch::Sender<u64>,
        wait_for_flush: bool,
    ) {
        let mut open = true;
        // The writer's time per request in its last group (see
        // `FlushQueue::wait_idle`).
        let mut apply_per_request = Duration::ZERO;
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
                            self.step_chore(&flusher, wait_for_flush);
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
            if wait_for_flush {
                flusher.wait_idle(apply_per_request);
            }
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            let applying = Instant::now();
            let requests_in_group = u32::try_from(group.len()).unwrap_or(u32::MAX);
            let mut answers = Answers {
                wait_for_flush,
                pending: Vec::new(),
                spent: Vec::new(),
            };
            let mut staged = Staged::new();
            let mut urgent = false;
            // Whether the group wrote anything an fsync must store.
            let mut wrote = false;
            for request in group {
                let (mutation, reply) = match request {
                    Request::Write(mutation, reply) => {
                        wrote = true;
                        (mutation, reply)
                    }
                    Request::Settle(how, reply) => {
                        wrote = true;
                        urgent |= how == Settle::Always;
                        answers.settle(how, reply);
                        continue;
                    }
                    Request::Shutdown => {
                        open = false;
                        continue;
                    }
                };
                if let Mutation::Append(append) = *mutation {
                    self.stage_append(&mut staged, &mut answers, append, reply);
                    if staged.readings >= series::MAX_BLOCK_READINGS {
                        self.commit_staged(&mut staged, &mut answers);
                    }
                    continue;
                }
                if mutation.is_create_only() {
                    match self.leased(|w| w.stage_creates(&mut staged, *mutation)) {
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
                if let Mutation::UpdateCollection(def) = *mutation {
                    // Answered now, or when its migration ends.
                    if let Some((reply, result)) = self.update_collection(def, reply) {
                        answers.send(reply, result);
                    }
                } else {
                    let result = self.leased(|w| w.apply(*mutation));
                    answers.send(reply, result);
                }
            }
            self.commit_staged(&mut staged, &mut answers);
            for (reply, result) in std::mem::take(&mut self.late) {
                answers.send(reply, result);
            }
            // Unstored messages numbered meanwhile are under it too: there
            // is nothing of them to apply or store.
            let upto = self.seqs.last();
            committed.send_replace(upto);
            let mut job = FlushJob {
                upto,
                answers: answers.pending,
                spent: answers.spent,
                mark: self.reservation.mark(),
                urgent,
            };
            if self.relaxed.is_some() || self.seqs.mark_wanted() {
                match self.reservation.ahead(&self.store, upto) {
                    Ok(mark) => job.mark = mark,
                    Err(e) => tracing::error!(error = %e, "cannot reserve seqs; events wait"),
                }
            }
            if let Some((gate, released)) = &self.relaxed {
                let open = gate.applied(upto);
                if let Some(released) = released {
                    released(open);
                }
                // Events wait for the mark: no reason to wait for flush_ms.
                job.urgent |= gate.held_back();
            }
            apply_per_request = applying.elapsed() / requests_in_group;
            let needs_flush = wrote || job.urgent || !job.answers.is_empty();
            if needs_flush {
                if let Err(std_mpsc::SendError(job)) = flusher.send(job) {
                    for (reply, _) in job.answers {
                        let _ = reply.send(Err(WriteError::Unavailable));
                    }
                }
            }
            self.chores.wrote();
            if self.chores.due() {
                self.step_chore(&flusher, wait_for_flush);
            }
        }
        // Everything handed out is at most this; the final fsync stores it.
        let last = self.seqs.close();
        if let Err(e) = self.reservation.lower_to(&self.store, last) {
            tracing::warn!(error = %e, "seq mark not lowered; the next start skips some seqs");
        }
        // Later requests find the channel closed and get `Unavailable`.
        requests.close();
        while let Ok(request) = requests.try_recv() {
            if let Request::Write(_, reply) | Request::Settle(_, reply) = request {
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
            // The run loop hands it to `update_collection` instead: its
            // answer may come later than the group's.
            Mutation::UpdateCollection(_) => Err(WriteError::Storage(
                "a collection update reached the wrong path".into(),
            )),
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
            Mutation::Publish {
                message,
                history,
                retain,
            } => self.publish(message, history, retain),
            Mutation::ClearRetained(topic) => self.clear_retained(&topic),
            Mutation::Truncate {
                collection,
                truncation,
            } => self.truncate_series(&collection, truncation, None),
            Mutation::ForgetIdempotencyKeys(keys) => self.forget_idempotency_keys(keys),
            // The run loop stages appends instead.
            Mutation::Append(_) => Err(WriteError::Storage(
                "an append reached the wrong path".into(),
            )),
        }
    }

    /// Does a chunk of the oldest chore; a migration that ended sends its
    /// answer, after an fsync in sync mode like any write's (the new
    /// definition must be on disk before the caller hears of it).
    fn step_chore(&mut self, flusher: &FlushQueue, wait_for_flush: bool) {
        let Some(chore) = self.chores.front() else {
            return;
        };
        let started = Instant::now();
        let result = match chore {
            Chore::Migrate(collection) => self.migrate_chunk(collection),
            other => self.chores.run(&self.store, &other),
        };
        self.chores.finished(started, result);
        if self.late.is_empty() {
            return;
        }
        let mut answers = Answers {
            wait_for_flush,
            pending: Vec::new(),
            spent: Vec::new(),
        };
        for (reply, result) in std::mem::take(&mut self.late) {
            answers.send(reply, result);
        }
        let job = FlushJob {
            upto: self.seqs.last(),
            answers: answers.pending,
            spent: answers.spent,
            mark: self.reservation.mark(),
            urgent: true,
        };
        if let Err(std_mpsc::SendError(job)) = flusher.send(job) {
            for (reply, _) in job.answers {
                let _ = reply.send(Err(WriteError::Unavailable));
            }
        }
    }

    /// Runs `work` holding the seq counter: `next_seq` is the counter's
    /// value during it, and whatever `work` numbered (or gave back) is the
    /// counter's after it.
    fn leased<T>(&mut self, work: impl FnOnce(&mut Self) -> T) -> T {
        let seqs = self.seqs.clone();
        let mut next = seqs.lock();
        self.next_seq = next.seq;
        let out = work(self);
        next.seq = self.next_seq;
        out
    }

    /// Gives back seqs a stage took and could not use; the ones taken
    /// before later seqs went out stay a gap the hub is told to skip.
    fn give_back(&self, taken: &[(u64, u64)]) {
        for &(first, last) in taken.iter().rev() {
            if !self.seqs.give_back(first, last) {
                if let Some(gap) = &self.gap {
                    gap(first, last);
                }
            }
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
            through: 0,
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
