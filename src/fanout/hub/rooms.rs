//! The hub's side of presence: a connection joins a presence topic's room
//! when it subscribes, leaves when it unsubscribes, disconnects or is
//! closed, and at the end of each room's window the topic's subscribers
//! hear what changed (see `fanout::presence`).

use super::*;
use crate::fanout::presence::{Member, Notice};

impl Hub {
    pub(super) fn join_presence(&mut self, conn_id: ConnId, topic: &str) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let member = Member {
            user: conn.who.clone(),
            since: clock::now_rfc3339(),
        };
        self.presence.join(topic, conn_id, member, Instant::now());
    }

    /// The connection now acts as another user, or its user was renamed:
    /// its rooms announce it anew.
    pub(super) fn presence_user(&mut self, conn_id: ConnId, who: Option<Arc<Who>>) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.who == who {
            return;
        }
        conn.who = who.clone();
        let now = Instant::now();
        for topic in &conn.topics {
            self.presence.set_user(topic, conn_id, who.clone(), now);
        }
    }

    pub(super) fn presence_snapshot(&self, topic: &str) -> Snapshot {
        self.presence.snapshot(topic, self.live.get().presence_max)
    }

    /// Announces the rooms whose window has ended.
    pub(super) fn end_presence_windows(&mut self) {
        let now = Instant::now();
        if self.presence.next_due().is_none_or(|at| at > now) {
            return;
        }
        let max = self.live.get().presence_max;
        for (topic, notice) in self.presence.take_due(now, max) {
            self.announce(&topic, &notice);
        }
    }

    /// Offers a room's notices to the topic's subscribers: the frames are
    /// serialized once and shared. Each subscriber is judged as it is now,
    /// by the same rule that let it subscribe, as messages are.
    fn announce(&mut self, topic: &str, notice: &Notice) {
        let Some(subscribers) = self.topics.get(topic) else {
            return;
        };
        let Some(custom) = self.store.topics().get(topic) else {
            return;
        };
        let frames = frames(topic, notice);
        let now = clock::now_rfc3339();
        let mut overflowing = Vec::new();
        for conn_id in subscribers.keys() {
            let Some(conn) = self.conns.get(conn_id) else {
                continue;
            };
            // MQTT has no packet for these: its members are announced to
            // the others, and hear nothing themselves.
            if conn.handle.transport == Transport::Mqtt || !custom.admits(&conn.viewer, &now) {
                continue;
            }
            if !frames
                .iter()
                .all(|frame| offer(conn, frame.clone(), &self.limits))
            {
                overflowing.push(*conn_id);
            }
        }
        self.close_slow(overflowing);
    }
}

fn frames(topic: &str, notice: &Notice) -> Vec<Arc<Frame>> {
    let messages: Vec<ServerMessage> = match notice {
        Notice::Count(count) => vec![ServerMessage::Presence {
            topic,
            count: *count,
        }],
        Notice::Changes { leaves, joins } => {
            let leaves = leaves
                .iter()
                .map(|m| ServerMessage::Leave(change(topic, m)));
            let joins = joins.iter().map(|m| ServerMessage::Join(change(topic, m)));
            leaves.chain(joins).collect()
        }
    };
    messages
        .iter()
        .map(|message| Arc::new(Frame::control(message)))
        .collect()
}

fn change<'a>(topic: &'a str, (conn, member): &'a (ConnId, Member)) -> PresenceChange<'a> {
    PresenceChange {
        topic,
        member: member.wire(*conn),
    }
}
