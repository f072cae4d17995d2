//! What the hub takes in, and how it waits for it.

use std::collections::HashSet;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::super::presence::Snapshot;
use super::super::{ConnHandle, ConnId, Subscription};
use super::{HubStats, Shed};
use crate::auth::Principal;
use crate::series::LiveBuckets;
use crate::store::change::Change;
use crate::store::topics::Message;

pub enum Input {
    Change(Change),
    /// A change-log entry that could not be read: released as nothing, so
    /// the ones after it are not held up forever.
    Unreadable(u64),
    /// Seqs `first..=last` that carry nothing: a write took them and
    /// failed after later seqs had gone out.
    Gap {
        first: u64,
        last: u64,
    },
    /// A custom-topic message, and whether it was stored (then it waits for
    /// the disk like a change).
    Published(Message, bool),
    /// A change or message left out because the hub was too far behind
    /// (see `backlog`): its topic's subscribers are closed as slow when it
    /// is reached, and resume.
    Shed {
        seq: u64,
        /// The last seq the shed entry covered (a block covers several).
        through: u64,
        shed: Shed,
        stored: bool,
    },
    /// Everything up to this seq may go out: on disk (in relaxed mode,
    /// applied and under a durable seq reservation, see `store::seqs`).
    Watermark(u64),
    Connect(Box<ConnHandle>),
    Disconnect(ConnId),
    Subscribe {
        conn: ConnId,
        subscriptions: Vec<Subscription>,
        reply: oneshot::Sender<u64>,
    },
    /// The stored part of a bucket subscription's buckets, registered at
    /// `upto` (see `fanout::backfill`).
    SeedBuckets {
        conn: ConnId,
        topic: String,
        upto: u64,
        seed: Box<LiveBuckets>,
    },
    Unsubscribe {
        conn: ConnId,
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Identity {
        conn: ConnId,
        principal: Principal,
    },
    TopicDeleted(String),
    PrincipalRevoked(String),
    /// The connection now uses a token of this sign-in.
    SignIn {
        conn: ConnId,
        sign_in: Option<String>,
    },
    /// This sign-in ended: its connections close.
    SignInEnded(String),
    /// The last released seq.
    Position(oneshot::Sender<u64>),
    /// Who is subscribed to a presence topic, as last announced.
    Presence {
        topic: String,
        reply: oneshot::Sender<Snapshot>,
    },
    Stats(oneshot::Sender<HubStats>),
    /// The MQTT client ids connected now.
    ClientIds(oneshot::Sender<HashSet<String>>),
    /// The server is stopping: every connection closes, now and as it
    /// connects.
    GoingAway,
    Stop,
}

/// How long the hub looks for more input before it sleeps.
const STAY_AWAKE: Duration = Duration::from_micros(50);

/// The next input if one comes within [`STAY_AWAKE`], yielding the core
/// meanwhile; asked for after messages published without the writer. Their
/// publishers hand them over one at a time, from the connection's thread,
/// and would otherwise wake the sleeping hub for each: two context
/// switches and a futex call on the publisher's thread per message, which
/// cost one connection publishing as fast as it can a third of its rate.
/// Changes come in bursts from the watcher and need no such wait.
pub(super) fn awaited(inputs: &std_mpsc::Receiver<Input>) -> Option<Input> {
    let start = Instant::now();
    loop {
        match inputs.try_recv() {
            Ok(input) => return Some(input),
            Err(std_mpsc::TryRecvError::Disconnected) => return None,
            Err(std_mpsc::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= STAY_AWAKE {
            return None;
        }
        std::thread::yield_now();
    }
}
