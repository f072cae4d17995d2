//! Feeds the hub from sled's `watch_prefix` on the change log.
//!
//! sled sends each event to the subscriber with a blocking send into a
//! 1024-slot channel, and a full channel stops every writer; its events for
//! one batch arrive in hash order, before the fsync. So this thread does
//! nothing but drain, decode and forward into the hub's unbounded queue;
//! the hub restores seq order and waits for the disk.

use std::sync::mpsc as std_mpsc;

use tokio::sync::watch;

use super::hub::Input;
use crate::store::change::Change;
use crate::store::{codec, keys};

pub fn spawn(subscriber: sled::Subscriber, hub: std_mpsc::Sender<Input>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("pulsebase-watcher".into())
        .spawn(move || {
            for event in subscriber {
                // Removals are the change log being trimmed: nothing to send.
                let sled::Event::Insert { key, value } = event else {
                    continue;
                };
                let Some(seq) = keys::change_seq(&key) else {
                    continue;
                };
                match codec::decode::<Change>(&value) {
                    Ok(mut change) => {
                        change.seq = seq;
                        if hub.send(Input::Change(change)).is_err() {
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

/// Forwards the release watermark (durable or applied seq) to the hub.
pub fn forward_released(mut released: watch::Receiver<u64>, hub: std_mpsc::Sender<Input>) {
    tokio::spawn(async move {
        loop {
            let seq = *released.borrow_and_update();
            if hub.send(Input::Watermark(seq)).is_err() {
                return;
            }
            if released.changed().await.is_err() {
                return;
            }
        }
    });
}
