//! A byte budget for what waits for the hub.
//!
//! Writers must keep their pace whatever realtime does, so nothing that
//! feeds the hub may block (a blocked sled watcher stops every writer). And
//! memory must stay bounded when ingest outruns fan-out. So the producers
//! (the watcher for changes, the writer's tap for messages) count the bytes
//! they queue here; past the budget they queue a small marker instead of
//! the body, and when the hub reaches that seq it closes the subscribers of
//! that topic as slow consumers (4008). They resume with `since` from the
//! change log or the topic's history, so nothing is lost to them; the hub
//! has shed the work it could not keep up with.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::store::change::Change;
use crate::store::topics::Message;

/// The budget when none is given: enough for several full write groups of
/// ordinary records, small beside the storage cache.
pub const DEFAULT_BYTES: usize = 16 * 1024 * 1024;

/// Bytes of change and message bodies queued for the hub or held by it
/// until release.
#[derive(Debug)]
pub struct Backlog {
    bytes: AtomicUsize,
    limit: usize,
}

impl Backlog {
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            bytes: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `size` bytes of the budget, or refuses when it would go over.
    /// An item is always admitted into an empty backlog, so one large
    /// change never sheds by itself.
    pub fn admit(&self, size: usize) -> bool {
        let mut current = self.bytes.load(Ordering::Relaxed);
        loop {
            if current > 0 && current.saturating_add(size) > self.limit {
                return false;
            }
            match self.bytes.compare_exchange_weak(
                current,
                current + size,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Takes `size` bytes whatever the budget: for what the hub must never
    /// shed (user changes close sessions; a drop ends subscriptions).
    pub fn charge(&self, size: usize) {
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// Gives back what an admitted item took, once the hub is done with it.
    pub fn release(&self, size: usize) {
        self.bytes.fetch_sub(size, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// What a change costs the backlog: its bodies and names.
pub fn change_size(change: &Change) -> usize {
    64 + change.after.as_ref().map_or(0, Vec::len)
        + change.before.as_ref().map_or(0, Vec::len)
        + change.record_id.len()
        + change.collection.len()
}

pub fn message_size(message: &Message) -> usize {
    64 + message.data.len() + message.topic.len()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::access;
    use crate::auth::Principal;
    use crate::config::Durability;
    use crate::fanout::replay::Replay;
    use crate::fanout::target::Target;
    use crate::fanout::{ConnHandle, Ops, Wiring};
    use crate::model::Record;
    use crate::store::writer::{Mutation, NewRecord, RecordOp, Writer};
    use crate::store::Store;
    use crate::visibility::Viewer;

    /// Ingest that outruns the hub: the hub keeps no more than its budget,
    /// the write is not held up, the subscriber is closed as slow, and its
    /// resume from the log has every change.
    #[tokio::test]
    async fn a_hub_that_falls_behind_sheds_subscribers_not_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let wiring = Wiring::with_backlog(&store, 4096);
        let writer =
            Writer::start(store.clone(), Durability::Sync, 0, Some(wiring.taps())).unwrap();
        let first_seq = *writer.committed_seq().borrow() + 1;
        let live = crate::config::Live::fixed(Default::default());
        let realtime = wiring.start(store.clone(), first_seq, live).unwrap();
        let collection = crate::store::tests::create_collection(
            &writer,
            json!({"name": "feed", "strict": false}),
        )
        .await;
        let (outbox, mut frames) = realtime.outbox();
        let closed = frames.close_signal();
        let conn = realtime.next_conn_id();
        let admin = Principal::ApiKey(Arc::new(crate::store::api_keys::ApiKey {
            id: "k1".into(),
            name: "test".into(),
            roles: vec!["admin".into()],
            created: String::new(),
            expires_ms: None,
            secret_digest: Vec::new(),
        }));
        realtime.connect(ConnHandle {
            id: conn,
            transport: crate::fanout::Transport::WebSocket,
            client_id: None,
            principal: admin,
            sign_in: None,
            outbox,
        });
        let target = Target::Collection(collection.clone());
        let subscription = target.subscription("feed", Ops::ALL, None);
        let since = realtime.subscribe(conn, vec![subscription.clone()]).await;

        // One write group of 500 changes of ~200 bytes: all of it reaches the
        // watcher before the fsync lets the hub release any.
        let ops = (0..500)
            .map(|i| {
                let data = json!({"n": i, "pad": "x".repeat(100)})
                    .as_object()
                    .cloned()
                    .unwrap();
                let record = Record::new(&format!("r{i:04}"), "c", "c", None, 1, data);
                RecordOp::Create(NewRecord::prepare(
                    &collection,
                    &record,
                    None,
                    true,
                    access::system(),
                ))
            })
            .collect();
        writer
            .submit(Mutation::Records {
                collection: collection.clone(),
                ops,
                actor: None,
            })
            .await
            .expect("the write is not held up by realtime");

        let reason = tokio::time::timeout(std::time::Duration::from_secs(10), closed.closed())
            .await
            .expect("closed within the wait")
            .expect("a close");
        assert_eq!(reason.code, 4008);
        let mut taken = Vec::new();
        frames.take_into(&mut taken, usize::MAX);
        let delivered: Vec<u64> = taken.iter().map(|frame| frame.seq).collect();
        assert!(delivered.len() < 500, "some changes were shed, not held");
        // The watcher may still be forwarding the end of the group.
        let mut left = u64::MAX;
        for _ in 0..100 {
            left = realtime.stats().await.backlog_bytes;
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(left, 0, "the budget is given back");

        // The resume has everything, in order.
        let mut replay = Replay::new(
            vec![(target, subscription)],
            Viewer {
                admin: true,
                user: None,
            },
            since,
            store.last_seq().unwrap(),
        );
        let mut seqs = Vec::new();
        while !replay.done() {
            let page = replay.next_page(&store).unwrap();
            seqs.extend(page.frames.iter().map(|f| f.seq));
            if page.frames.is_empty() {
                break;
            }
        }
        assert_eq!(seqs.len(), 500);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        realtime.stop().await;
        writer.shutdown().await;
    }

    #[test]
    fn the_budget_refuses_past_its_limit_and_frees_on_release() {
        let backlog = Backlog::new(100);
        assert!(backlog.admit(500), "an empty backlog takes anything");
        assert!(!backlog.admit(1));
        backlog.release(500);
        assert!(backlog.admit(60));
        assert!(backlog.admit(40));
        assert!(!backlog.admit(1));
        assert_eq!(backlog.bytes(), 100);
    }
}
