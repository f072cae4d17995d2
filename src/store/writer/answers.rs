//! Where the writer's answers go: at once, or with the group to the
//! flusher, to be sent after its fsync. The decision is made here once, for
//! the writer's own writes and for the writes made beside it that ask to
//! [`Settle`](super::Writer::settle).

use super::{Committed, Reply, WriteError};
use crate::series::Reading;

/// How durable a write made beside the writer (refresh tokens and revoked
/// sessions, in the `auth` tree) must be before
/// [`Writer::settle`](super::Writer::settle) returns.
/// Its caller asks once the write is applied in sled; the next group's
/// flush covers it, as sled's flush writes out the log of every tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// As `durability` says for the writer's own writes: after the fsync in
    /// sync mode; at once in relaxed mode, the fsync following within
    /// `flush_ms`.
    AsConfigured,
    /// After an fsync in either mode, without waiting for `flush_ms`: what
    /// a crash must never undo (a revocation).
    Always,
}

pub(in crate::store) type Answer = (Reply, Result<Committed, WriteError>);

/// Where answers go. In sync mode every answer waits for the group's fsync,
/// errors included: a 409 or 412 is a claim about state that may not be on
/// disk yet (a staged duplicate id), and a crash must not make it false.
pub(super) struct Answers {
    pub(super) wait_for_flush: bool,
    pub(super) pending: Vec<Answer>,
    /// Readings the group has encoded: they go to the flusher with the
    /// answers and are freed there. Freeing a write group's readings (a
    /// map and strings each) took a tenth of the writer's time, and the
    /// writer is the one stage every write waits for.
    pub(super) spent: Vec<Vec<Reading>>,
}

impl Answers {
    pub(super) fn send(&mut self, reply: Reply, result: Result<Committed, WriteError>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(crate::metrics::WRITES, "result" => outcome).increment(1);
        if self.wait_for_flush {
            self.pending.push((reply, result));
        } else {
            let _ = reply.send(result);
        }
    }

    /// A [`Settle`] is answered like a write (it is not counted as one),
    /// or after the fsync whatever the mode.
    pub(super) fn settle(&mut self, how: Settle, reply: Reply) {
        if self.wait_for_flush || how == Settle::Always {
            self.pending.push((reply, Ok(Committed::default())));
        } else {
            let _ = reply.send(Ok(Committed::default()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Settle;
    use crate::config::Durability;
    use crate::store::writer::Writer;
    use crate::store::Store;

    /// Whether `settle(how)` returns within `limit` while the flusher
    /// waits up to a minute between fsyncs.
    async fn settles_within(how: Settle, limit: Duration) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let writer = Writer::start(store, Durability::Relaxed, 60_000, None).unwrap();
        let settled = tokio::time::timeout(limit, writer.settle(how)).await;
        writer.shutdown().await;
        settled.is_ok_and(|result| result.is_ok())
    }

    /// Relaxed mode answers a session write at once, like a write, and a
    /// revocation after an fsync that does not wait for `flush_ms`.
    #[tokio::test]
    async fn relaxed_mode_settles_at_once_but_a_revocation_gets_its_fsync_now() {
        assert!(settles_within(Settle::AsConfigured, Duration::from_millis(500)).await);
        // 10 s, not less: an fdatasync took over 2 s on the loaded machine;
        // had it waited for `flush_ms` it would take the whole minute.
        assert!(settles_within(Settle::Always, Duration::from_secs(10)).await);
    }
}
