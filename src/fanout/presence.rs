//! Presence: who is subscribed to each custom topic created with
//! `presence: true`, and what their fellow subscribers are told about it.
//!
//! The members of a room are its live subscriptions (WebSocket, SSE and
//! MQTT alike). Changes are not announced one by one as they happen: each
//! room gathers them for [`WINDOW`], then announces the net difference
//! between what it announced last and what is true now. A connection that
//! joins and leaves within one window is never announced at all. A room
//! with more than `presence_max` members (before or after the window), or
//! a window with more than [`BURST`] changes, announces only its member
//! count, once: a room of 2,000 costs one shared message per subscriber per
//! window, not one per join per subscriber.
//!
//! This is plain bookkeeping, free of connections and outboxes; the hub
//! owns it (`hub/rooms.rs`), feeds it and sends what it answers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ConnId;
use crate::auth::Principal;
use crate::protocol::server::{ConnectionName, PresenceMember, PresenceUser};

/// How long changes are gathered before a room announces them.
pub const WINDOW: Duration = Duration::from_millis(100);

/// Most joins and leaves one window announces one by one; a window with
/// more announces the count instead. Each announcement takes a place in
/// every subscriber's outbox, and a burst as large as the outbox would
/// close them all as slow consumers.
pub const BURST: usize = 100;

/// The signed-in user a member is, as fellow subscribers see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    pub id: String,
    pub name: String,
}

impl Who {
    /// Users only: API keys and anonymous callers are members without one.
    pub fn of(principal: &Principal) -> Option<Arc<Who>> {
        principal.user().map(|user| {
            Arc::new(Who {
                id: user.id.clone(),
                name: user.name.clone(),
            })
        })
    }
}

/// One member of a room.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub user: Option<Arc<Who>>,
    /// When it subscribed (RFC 3339).
    pub since: String,
}

impl Member {
    /// As the `presence` reply and `join`/`leave` show it.
    pub fn wire(&self, conn: ConnId) -> PresenceMember<'_> {
        PresenceMember {
            connection: ConnectionName(conn),
            user: self.user.as_deref().map(|who| PresenceUser {
                id: &who.id,
                name: &who.name,
            }),
            since: &self.since,
        }
    }
}

/// What the `presence` action answers: the room as last announced.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub count: usize,
    /// `None` past `presence_max`: then only the count is told.
    pub members: Option<Vec<(ConnId, Member)>>,
}

/// What one room announces at the end of a window.
#[derive(Debug, PartialEq)]
pub enum Notice {
    /// One by one, leaves first (a member whose user changed leaves and
    /// joins again), each list in connection order.
    Changes {
        leaves: Vec<(ConnId, Member)>,
        joins: Vec<(ConnId, Member)>,
    },
    /// Only the member count.
    Count(usize),
}

#[derive(Default)]
struct Room {
    members: HashMap<ConnId, Member>,
    /// Connections changed since the last announcement, with what each
    /// was then (`None`: not a member).
    changed: HashMap<ConnId, Option<Member>>,
    /// The member count last announced.
    announced: usize,
    /// When the pending changes are announced.
    due: Option<Instant>,
}

/// Every presence room, by topic.
#[derive(Default)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    /// Rooms with changes, in the order they fall due (one window each,
    /// so that is the order they changed in). Entries of rooms dropped or
    /// announced since are skipped when they come up.
    due: VecDeque<(Instant, String)>,
}

impl Rooms {
    pub fn join(&mut self, topic: &str, conn: ConnId, member: Member, now: Instant) {
        let room = self.rooms.entry(topic.to_owned()).or_default();
        let due = touch(room, conn, now);
        room.members.insert(conn, member);
        self.schedule(due, topic);
    }

    /// Cheap for a topic without presence: one lookup.
    pub fn leave(&mut self, topic: &str, conn: ConnId, now: Instant) {
        let Some(room) = self.rooms.get_mut(topic) else {
            return;
        };
        if !room.members.contains_key(&conn) {
            return;
        }
        let due = touch(room, conn, now);
        room.members.remove(&conn);
        self.schedule(due, topic);
    }

    /// A member now acts as another user (or the user was renamed).
    pub fn set_user(&mut self, topic: &str, conn: ConnId, user: Option<Arc<Who>>, now: Instant) {
        let Some(room) = self.rooms.get_mut(topic) else {
            return;
        };
        if room.members.get(&conn).is_none_or(|m| m.user == user) {
            return;
        }
        let due = touch(room, conn, now);
        if let Some(member) = room.members.get_mut(&conn) {
            member.user = user;
        }
        self.schedule(due, topic);
    }

    /// The topic is gone, and its subscriptions with it: nothing is
    /// announced.
    pub fn remove(&mut self, topic: &str) {
        self.rooms.remove(topic);
    }

    pub fn snapshot(&self, topic: &str, max: usize) -> Snapshot {
        let Some(room) = self.rooms.get(topic) else {
            return Snapshot {
                count: 0,
                members: Some(Vec::new()),
            };
        };
        if room.announced > max {
            return Snapshot {
                count: room.announced,
                members: None,
            };
        }
        // What was announced: the members, as they were before any change
        // still pending, so the joins and leaves that follow apply to it.
        let unchanged = room
            .members
            .iter()
            .filter(|(conn, _)| !room.changed.contains_key(conn));
        let was = room
            .changed
            .iter()
            .filter_map(|(conn, was)| Some((conn, was.as_ref()?)));
        let mut members: Vec<(ConnId, Member)> = unchanged
            .chain(was)
            .map(|(conn, member)| (*conn, member.clone()))
            .collect();
        members.sort_unstable_by_key(|(conn, _)| *conn);
        Snapshot {
            count: members.len(),
            members: Some(members),
        }
    }

    /// When the next room falls due, if any has changes.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.front().map(|(at, _)| *at)
    }

    /// Ends the window of every room due by `now`, with what each
    /// announces (nothing when its changes cancelled out).
    pub fn take_due(&mut self, now: Instant, max: usize) -> Vec<(String, Notice)> {
        let mut notices = Vec::new();
        while let Some((at, _)) = self.due.front() {
            if *at > now {
                break;
            }
            let Some((_, topic)) = self.due.pop_front() else {
                break;
            };
            let Some(room) = self.rooms.get_mut(&topic) else {
                continue;
            };
            if room.due.is_none_or(|due| due > now) {
                continue;
            }
            let notice = announce(room, max);
            if room.members.is_empty() {
                self.rooms.remove(&topic);
            }
            if let Some(notice) = notice {
                notices.push((topic, notice));
            }
        }
        notices
    }

    fn schedule(&mut self, due: Option<Instant>, topic: &str) {
        if let Some(at) = due {
            self.due.push_back((at, topic.to_owned()));
        }
    }
}

/// Notes what `conn` was before it changes; answers when the room falls
/// due if this change opened its window.
fn touch(room: &mut Room, conn: ConnId, now: Instant) -> Option<Instant> {
    if !room.changed.contains_key(&conn) {
        let was = room.members.get(&conn).cloned();
        room.changed.insert(conn, was);
    }
    if room.due.is_some() {
        return None;
    }
    let at = now + WINDOW;
    room.due = Some(at);
    Some(at)
}

fn announce(room: &mut Room, max: usize) -> Option<Notice> {
    let before = room.announced;
    let after = room.members.len();
    room.announced = after;
    room.due = None;
    let mut leaves = Vec::new();
    let mut joins = Vec::new();
    for (conn, was) in room.changed.drain() {
        let now = room.members.get(&conn);
        match (was, now) {
            // Left and came back, or joined and left: nothing to tell.
            (Some(was), Some(now)) if was.user == now.user => {}
            (was, now) => {
                leaves.extend(was.map(|was| (conn, was)));
                joins.extend(now.map(|now| (conn, now.clone())));
            }
        }
    }
    if leaves.is_empty() && joins.is_empty() && before == after {
        return None;
    }
    if before > max || after > max || leaves.len() + joins.len() > BURST {
        return Some(Notice::Count(after));
    }
    leaves.sort_unstable_by_key(|(conn, _)| *conn);
    joins.sort_unstable_by_key(|(conn, _)| *conn);
    Some(Notice::Changes { leaves, joins })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str) -> Member {
        Member {
            user: Some(Arc::new(Who {
                id: user.into(),
                name: user.to_uppercase(),
            })),
            since: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn conns(list: &[(ConnId, Member)]) -> Vec<ConnId> {
        list.iter().map(|(c, _)| *c).collect()
    }

    /// The one room's notice at the end of the window opened at `t0`.
    fn end_window(rooms: &mut Rooms, t0: Instant, max: usize) -> Option<Notice> {
        assert_eq!(rooms.take_due(t0 + WINDOW / 2, max), vec![], "not due yet");
        let mut notices = rooms.take_due(t0 + WINDOW, max);
        assert!(notices.len() <= 1, "{notices:?}");
        notices.pop().map(|(topic, notice)| {
            assert_eq!(topic, "chat");
            notice
        })
    }

    #[test]
    fn changes_in_one_window_are_announced_together_when_it_ends() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms.join("chat", 2, member("b"), t0);
        rooms.join("chat", 1, member("a"), t0 + WINDOW / 4);
        assert_eq!(rooms.next_due(), Some(t0 + WINDOW));
        // Not yet announced: the list is still empty.
        assert_eq!(rooms.snapshot("chat", 10).members, Some(vec![]));
        let Some(Notice::Changes { leaves, joins }) = end_window(&mut rooms, t0, 10) else {
            panic!("expected joins");
        };
        assert_eq!((conns(&leaves), conns(&joins)), (vec![], vec![1, 2]));
        assert_eq!(rooms.next_due(), None);
        let snapshot = rooms.snapshot("chat", 10);
        assert_eq!(snapshot.count, 2);
        assert_eq!(conns(&snapshot.members.unwrap()), vec![1, 2]);

        let t1 = t0 + WINDOW * 3;
        rooms.leave("chat", 1, t1);
        rooms.leave("chat", 7, t1); // never a member
        let Some(Notice::Changes { leaves, joins }) = end_window(&mut rooms, t1, 10) else {
            panic!("expected a leave");
        };
        assert_eq!((conns(&leaves), conns(&joins)), (vec![1], vec![]));
        assert_eq!(leaves[0].1, member("a"), "a leave names who left");
    }

    #[test]
    fn a_join_and_leave_within_one_window_cancel_out() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms.join("chat", 1, member("a"), t0);
        rooms.leave("chat", 1, t0 + WINDOW / 2);
        assert_eq!(end_window(&mut rooms, t0, 10), None);
        // An empty room is forgotten.
        assert!(rooms.rooms.is_empty());

        rooms.join("chat", 1, member("a"), t0);
        assert!(end_window(&mut rooms, t0, 10).is_some());
        // Leaving and coming back is no change either.
        let t1 = t0 + WINDOW * 2;
        rooms.leave("chat", 1, t1);
        rooms.join("chat", 1, member("a"), t1);
        assert_eq!(end_window(&mut rooms, t1, 10), None);
        assert_eq!(rooms.snapshot("chat", 10).count, 1);
    }

    #[test]
    fn a_member_acting_as_someone_else_leaves_and_joins_again() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms.join("chat", 1, member("a"), t0);
        end_window(&mut rooms, t0, 10);
        let t1 = t0 + WINDOW * 2;
        rooms.set_user("chat", 1, member("a").user, t1);
        assert_eq!(rooms.next_due(), None, "the same user is no change");
        rooms.set_user("chat", 1, member("b").user, t1);
        let Some(Notice::Changes { leaves, joins }) = end_window(&mut rooms, t1, 10) else {
            panic!("expected a leave and a join");
        };
        assert_eq!(leaves, vec![(1, member("a"))]);
        assert_eq!(joins[0].1.user, member("b").user);
    }

    #[test]
    fn past_the_maximum_or_in_a_burst_only_the_count_is_announced() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        for conn in 1..=3 {
            rooms.join("chat", conn, member("a"), t0);
        }
        assert!(matches!(
            end_window(&mut rooms, t0, 3),
            Some(Notice::Changes { .. })
        ));
        // A fourth member takes the room past 3.
        let t1 = t0 + WINDOW * 2;
        rooms.join("chat", 4, member("d"), t1);
        assert_eq!(end_window(&mut rooms, t1, 3), Some(Notice::Count(4)));
        let snapshot = rooms.snapshot("chat", 3);
        assert_eq!((snapshot.count, snapshot.members), (4, None));
        // Back to 3: the count once more, so listeners know the list is
        // to be fetched again; then one by one.
        let t2 = t1 + WINDOW * 2;
        rooms.leave("chat", 4, t2);
        assert_eq!(end_window(&mut rooms, t2, 3), Some(Notice::Count(3)));
        let t3 = t2 + WINDOW * 2;
        rooms.leave("chat", 3, t3);
        assert!(matches!(
            end_window(&mut rooms, t3, 3),
            Some(Notice::Changes { .. })
        ));

        let t4 = t3 + WINDOW * 2;
        for conn in 100..100 + BURST as ConnId + 1 {
            rooms.join("chat", conn, member("x"), t4);
        }
        let max = 10 * BURST;
        assert_eq!(
            end_window(&mut rooms, t4, max),
            Some(Notice::Count(BURST + 3))
        );
    }

    #[test]
    fn a_snapshot_shows_what_was_announced_until_the_window_ends() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms.join("chat", 1, member("a"), t0);
        rooms.join("chat", 2, member("b"), t0);
        end_window(&mut rooms, t0, 10);
        let t1 = t0 + WINDOW * 2;
        rooms.leave("chat", 1, t1);
        rooms.join("chat", 3, member("c"), t1);
        let listed = |rooms: &Rooms| conns(&rooms.snapshot("chat", 10).members.unwrap());
        assert_eq!(listed(&rooms), vec![1, 2]);
        end_window(&mut rooms, t1, 10);
        assert_eq!(listed(&rooms), vec![2, 3]);
        assert_eq!(rooms.snapshot("nobody", 10).count, 0);
    }

    #[test]
    fn a_removed_room_announces_nothing() {
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms.join("chat", 1, member("a"), t0);
        rooms.remove("chat");
        assert_eq!(rooms.take_due(t0 + WINDOW, 10), vec![]);
        assert_eq!(rooms.next_due(), None);
    }
}
