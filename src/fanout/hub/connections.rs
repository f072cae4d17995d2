//! The hub's side of connections: joining and leaving, subscribing,
//! identity and sign-in changes, shedding, and closing the ones that fall
//! behind or lose their topic.

use super::*;

impl Hub {
    /// A user changed: connections authenticated as them close if the
    /// change voided their tokens (disabled, deleted, password or roles
    /// changed), and otherwise see through their new groups and tenant.
    pub(super) fn identity_changed(&mut self, user_id: &str) {
        let Some(conns) = self
            .by_principal
            .get(user_id)
            .map(|c| c.keys().copied().collect::<Vec<_>>())
        else {
            return;
        };
        let user = self.store.get_user(user_id).ok().flatten();
        for conn_id in conns {
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            match &user {
                Some(user) if !user.disabled && Some(user.generation) == conn.generation => {
                    let principal = Principal::User(Arc::new(user.clone()));
                    conn.viewer = Viewer::of(&principal);
                    self.presence_user(conn_id, Who::of(&principal));
                }
                _ => self.close(
                    conn_id,
                    Close::unauthorized("unauthorized", "your account changed; sign in again"),
                ),
            }
        }
    }

    /// Closes the connections whose latest token belongs to `sign_in`.
    /// Sign-outs are rare next to events: a scan, not another index.
    pub(super) fn sign_in_ended(&mut self, sign_in: &str) {
        let ended: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.handle.sign_in.as_deref() == Some(sign_in))
            .map(|(id, _)| *id)
            .collect();
        for conn in ended {
            self.close(
                conn,
                Close::unauthorized("unauthorized", "this sign-in ended; sign in again"),
            );
        }
    }

    pub(super) fn client_ids(&self) -> HashSet<String> {
        let ids = self
            .conns
            .values()
            .filter_map(|c| c.handle.client_id.clone());
        ids.collect()
    }

    pub(super) fn connect(&mut self, handle: ConnHandle) {
        let id = handle.id;
        if let Some(client_id) = &handle.client_id {
            // MQTT: one connection per client id; the newest wins. Connects
            // are rare next to events: a scan, not another index.
            let older: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| c.handle.client_id.as_ref() == Some(client_id))
                .map(|(id, _)| *id)
                .collect();
            for conn in older {
                self.close(conn, Close::taken_over());
            }
        }
        let principal_id = handle.principal.id();
        if let Some(principal) = &principal_id {
            self.by_principal
                .entry(principal.clone())
                .or_default()
                .insert(id, ());
        }
        let conn = Conn {
            viewer: Viewer::of(&handle.principal),
            generation: handle.principal.user().map(|u| u.generation),
            who: Who::of(&handle.principal),
            principal_id,
            handle,
            topics: HashSet::new(),
        };
        self.conns.insert(id, Box::new(conn));
        self.notice(id, "connect", None);
    }

    pub(super) fn disconnect(&mut self, id: ConnId, event: &'static str) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let now = Instant::now();
        for topic in &conn.topics {
            remove_from(&mut self.topics, topic, id);
            self.routes.forget(topic);
            self.presence.leave(topic, id, now);
        }
        if let Some(principal) = &conn.principal_id {
            remove_from(&mut self.by_principal, principal, id);
        }
        let transport = conn.handle.transport;
        self.notice_for(id, conn.principal_id.as_deref(), transport, event, None);
    }

    pub(super) fn subscribe(&mut self, id: ConnId, subscription: Subscription) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let topic = subscription.topic.clone();
        let joins = conn.topics.insert(topic.clone()) && subscription.presence;
        if joins {
            self.join_presence(id, &topic);
        }
        self.routes.forget(&topic);
        self.topics
            .entry(topic.clone())
            .or_default()
            .insert(id, subscription);
        self.notice(id, "subscribe", Some(&topic));
    }

    pub(super) fn unsubscribe(&mut self, id: ConnId, topic: &str) -> bool {
        let Some(conn) = self.conns.get_mut(&id) else {
            return false;
        };
        if !conn.topics.remove(topic) {
            return false;
        }
        remove_from(&mut self.topics, topic, id);
        self.routes.forget(topic);
        self.presence.leave(topic, id, Instant::now());
        self.notice(id, "unsubscribe", Some(topic));
        true
    }

    /// The hub fell behind and left out a change or message of this topic:
    /// its subscribers are closed as slow consumers, and their resume from
    /// the log (or the topic's history) brings what they missed.
    pub(super) fn shed(&mut self, shed: &Shed) {
        let mut behind: Vec<ConnId> = Vec::new();
        for (topic, subscribers) in &self.topics {
            for (conn, subscription) in subscribers {
                let concerned = match shed {
                    Shed::Collection(id) => subscription.collection_id == Some(*id),
                    Shed::Topic(name) => topic == name,
                };
                if concerned {
                    behind.push(*conn);
                }
            }
        }
        behind.sort_unstable();
        behind.dedup();
        self.close_slow(behind);
    }

    /// A custom topic is gone: its subscribers hear `topic_deleted`.
    pub(super) fn topic_gone(&mut self, name: &str, reason: UnsubscribeReason) {
        self.presence.remove(name);
        self.end_subscriptions(|topic, _| topic == name, reason);
    }

    /// A collection is gone: subscribers of it (by id, not a namesake) and
    /// of its record topics hear `collection_dropped`, after every change
    /// of it released before the drop.
    pub(super) fn collection_dropped(&mut self, id: u32, name: &str) {
        let record_prefix = format!("{name}/");
        self.end_subscriptions(
            |topic, subscription| {
                (topic == name || topic.starts_with(&record_prefix))
                    && subscription.collection_id == Some(id)
            },
            UnsubscribeReason::CollectionDropped,
        );
    }

    /// Ends the subscriptions `ends` picks with `unsubscribed`. A subscriber
    /// whose outbox cannot take the notice is closed (it resumes), never
    /// left to believe it is still subscribed.
    pub(super) fn end_subscriptions(
        &mut self,
        ends: impl Fn(&str, &Subscription) -> bool,
        reason: UnsubscribeReason,
    ) {
        let mut ended: Vec<(String, ConnId)> = Vec::new();
        for (topic, subscribers) in &self.topics {
            for (conn, subscription) in subscribers {
                if ends(topic, subscription) {
                    ended.push((topic.clone(), *conn));
                }
            }
        }
        let mut overflowing = Vec::new();
        let now = Instant::now();
        for (topic, conn_id) in ended {
            remove_from(&mut self.topics, &topic, conn_id);
            self.routes.forget(&topic);
            self.presence.leave(&topic, conn_id, now);
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            conn.topics.remove(&topic);
            let notice = Unsubscribed {
                topic: &topic,
                reason,
            };
            let frame = Arc::new(Frame::control(&ServerMessage::Unsubscribed(notice)));
            if !offer(conn, frame, &self.limits) {
                overflowing.push(conn_id);
            }
        }
        overflowing.sort_unstable();
        overflowing.dedup();
        self.close_slow(overflowing);
    }

    /// Connections whose outbox was full: closed, and they resume. Called
    /// after every fan-out, it then keeps the outboxes within their budget.
    pub(super) fn close_slow(&mut self, overflowing: Vec<ConnId>) {
        self.close_as_slow(overflowing);
        // Closing those gave their bytes back first.
        let over_budget = self.over_budget();
        self.close_as_slow(over_budget);
    }

    fn close_as_slow(&mut self, conns: Vec<ConnId>) {
        for conn in conns {
            // Listed twice, or closed already.
            if self.conns.contains_key(&conn) {
                self.slow_closes += 1;
                self.close(conn, Close::slow_consumer());
            }
        }
    }

    pub(super) fn close(&mut self, id: ConnId, close: Close) {
        if let Some(conn) = self.conns.get(&id) {
            conn.handle.outbox.close(close.clone());
        }
        let event = if close.code == 4008 {
            "slow_consumer"
        } else {
            "disconnect"
        };
        self.disconnect(id, event);
    }

    pub(super) fn close_all(&mut self) {
        for conn in self.conns.values() {
            conn.handle.outbox.close(Close::going_away());
        }
        self.conns.clear();
    }

    pub(super) fn notice(&mut self, id: ConnId, event: &'static str, topic: Option<&str>) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let principal = conn.principal_id.clone();
        let transport = conn.handle.transport;
        self.notice_for(id, principal.as_deref(), transport, event, topic);
    }

    /// A message on `_connections` for its (admin) subscribers. It carries
    /// the last released seq; these notices are not kept for replay.
    pub(super) fn notice_for(
        &mut self,
        id: ConnId,
        user: Option<&str>,
        transport: Transport,
        event: &str,
        topic: Option<&str>,
    ) {
        let Some(subscribers) = self.topics.get(CONNECTIONS_TOPIC) else {
            return;
        };
        if topic == Some(CONNECTIONS_TOPIC) {
            return;
        }
        let ts = clock::now_rfc3339();
        let text = ServerMessage::Message(protocol::server::Message {
            topic: CONNECTIONS_TOPIC,
            seq: self.next - 1,
            ts: &ts,
            from: None,
            data: MessageData::Connection(ConnectionNotice {
                event,
                connection: ConnectionName(id),
                user,
                topic,
                transport: transport.name(),
            }),
        });
        let frame = Arc::new(Frame::new(
            self.next - 1,
            FrameKind::Message,
            text.to_text(),
        ));
        let mut overflowing = Vec::new();
        for conn_id in subscribers.keys() {
            if let Some(conn) = self.conns.get(conn_id) {
                if conn.viewer.admin && !offer(conn, frame.clone(), &self.limits) {
                    overflowing.push(*conn_id);
                }
            }
        }
        self.close_slow(overflowing);
    }
}

/// Removes `id` from the set under `key`, and the set once empty.
pub(super) fn remove_from<V>(map: &mut HashMap<String, ConnMap<V>>, key: &str, id: ConnId) {
    if let Some(set) = map.get_mut(key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(key);
        }
    }
}
