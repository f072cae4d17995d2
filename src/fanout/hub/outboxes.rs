//! The hub's side of outboxes: offering a frame under the limits in force,
//! and keeping all outboxes together within their memory budget.
//!
//! The budget rule: after each fan-out, if the outboxes together hold more
//! than `outbox_budget_mb`, the connections holding the most bytes are
//! closed as slow, the biggest first, until the rest fit. A connection far
//! behind is the one whose queue costs memory, and the one a resume from
//! the log serves better than a queue; closing small ones instead would
//! free little and hit clients that are keeping up. The hot path pays one
//! atomic load per fan-out; the scan and sort over connections run only
//! when the budget is passed. The sum counts a frame once per queue it is
//! in, so it over-estimates the memory held (see [`crate::fanout::outbox`]).

use super::*;
use crate::fanout::outbox::Offer;

/// Hands a frame to a connection's outbox; false when it is full. A
/// connection whose task has ended counts as served: it leaves the hub on
/// its own.
pub(super) fn offer(conn: &Conn, frame: Arc<Frame>, limits: &Limits) -> bool {
    conn.handle.outbox.offer(frame, limits) != Offer::Full
}

impl Hub {
    /// The connections to close to bring all outboxes back within the
    /// budget, biggest queue first; none while within it.
    pub(super) fn over_budget(&self) -> Vec<ConnId> {
        let mut queued = self.outbox_budget.queued();
        if queued <= self.limits.budget {
            return Vec::new();
        }
        let mut queues: Vec<(usize, ConnId)> = self
            .conns
            .iter()
            .map(|(id, conn)| (conn.handle.outbox.queued().0, *id))
            .filter(|(bytes, _)| *bytes > 0)
            .collect();
        queues.sort_unstable_by(|a, b| b.cmp(a));
        let mut closing = Vec::new();
        for (bytes, id) in queues {
            if queued <= self.limits.budget {
                break;
            }
            queued = queued.saturating_sub(bytes);
            closing.push(id);
        }
        closing
    }
}
