//! Feeds the hub from sled's `watch_prefix` on the change log.
//!
//! sled sends each event to the subscriber with a blocking send into a
//! 1024-slot channel, and a full channel stops every writer; its events for
//! one batch arrive in hash order, before the fsync. So this thread does
//! nothing but drain, decode and forward into the hub's queue, within the
//! byte budget of [`Backlog`]; the hub restores seq order and waits for
//! the disk.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use super::backlog::{self, Backlog};
use super::hub::{Input, Shed};
use crate::store::change::{Change, ChangeKind, USERS_ID};
use crate::store::keys;

/// The thread is not joined at shutdown: it blocks in sled's iterator until
/// the next change-log event, sled's `next_timeout` is broken (it reports
/// `Disconnected` forever after one no-op write), and dropping a subscriber
/// early can deadlock writers (sled #1152). It owns nothing that needs a
/// clean end: it stops at the next event once the hub is gone, or with the
/// process.
pub fn spawn(
    subscriber: sled::Subscriber,
    hub: std_mpsc::Sender<Input>,
    backlog: Arc<Backlog>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("pulsebase-watcher".into())
        .spawn(move || {
            crate::priority::favour_current_thread();
            for event in subscriber {
                // Removals are the change log being trimmed: nothing to send.
                let sled::Event::Insert { key, value } = event else {
                    continue;
                };
                let Some(seq) = keys::change_seq(&key) else {
                    continue;
                };
                match Change::decode(&value) {
                    Ok(change) => {
                        let change = change.at(seq);
                        let size = backlog::change_size(&change);
                        let input = if change.collection_id == USERS_ID
                            || change.kind == ChangeKind::DropCollection
                        {
                            backlog.charge(size);
                            Input::Change(change)
                        } else if backlog.admit(size) {
                            Input::Change(change)
                        } else {
                            Input::Shed {
                                seq,
                                through: change.through,
                                shed: Shed::Collection(change.collection_id),
                                stored: true,
                            }
                        };
                        if hub.send(input).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(seq, error = %e, "undecodable change-log entry");
                        if hub.send(Input::Unreadable(seq)).is_err() {
                            return;
                        }
                    }
                }
            }
        })?;
    Ok(())
}
