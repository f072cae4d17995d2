//! An MQTT client's subscriptions, kept in the same hub as WebSocket and
//! SSE connections: a filter stands for one or more realtime topics, each
//! subscribed through [`topics::resolve_for_subscribe`] with the same
//! rules, `ops`, `filter`, `max_subscriptions` and filter budget, and the
//! hub renders what each may see ([`crate::visibility`]). This module
//! turns filters into those topics and a rendered frame into a PUBLISH.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::Deserialize;

use super::codec::{Filter, SubCode};
use super::filters::{self, Invalid, Named};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::fanout::{
    outbox, ConnHandle, ConnId, Frame, FrameKind, MqttAddress, Ops, Realtime, Subscription,
    Transport,
};
use crate::services::records;
use crate::services::topics::{self, Target};
use crate::state::AppState;
use crate::store::mqtt_sessions::StoredFilter;

/// The connection's place in the hub; leaving it (drop) ends every
/// subscription, so a dropped session leaves nothing behind.
pub struct Registration {
    realtime: Realtime,
    pub conn: ConnId,
    pub outbox: outbox::Receiver,
    pub closed: outbox::CloseSignal,
}

impl Registration {
    pub fn connect(
        state: &AppState,
        principal: &Principal,
        sign_in: Option<String>,
        client_id: &str,
    ) -> Registration {
        let conn = state.realtime.next_conn_id();
        let (outbox_tx, outbox) = state.realtime.outbox();
        let closed = outbox.close_signal();
        state.realtime.connect(ConnHandle {
            id: conn,
            transport: Transport::Mqtt,
            client_id: Some(client_id.to_owned()),
            principal: principal.clone(),
            // Ending this sign-in closes the connection, as a WebSocket.
            sign_in: sign_in.clone(),
            outbox: outbox_tx,
        });
        state
            .realtime
            .close_if_signed_out(&state.auth, sign_in.as_deref());
        Registration {
            realtime: state.realtime.clone(),
            conn,
            outbox,
            closed,
        }
    }
}

impl Registration {
    /// Leaves the hub now: a closed connection still finishing its writes
    /// must not fill its outbox and count as a slow consumer.
    pub fn leave(&self) {
        self.realtime.disconnect(self.conn);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.realtime.disconnect(self.conn);
    }
}

/// One filter the client holds.
#[derive(Debug, Clone)]
struct Grant {
    qos: u8,
    topics: Vec<String>,
    /// The `filter` and `ops` properties it came with, kept for a
    /// persistent session.
    props: Props,
}

/// The `filter` and `ops` user properties of a SUBSCRIBE, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub filter: Option<String>,
    pub ops: Option<String>,
}

impl Props {
    pub fn of(properties: &[(String, String)]) -> Props {
        let find = |key: &str| {
            properties
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        Props {
            filter: find("filter"),
            ops: find("ops"),
        }
    }
}

/// A realtime topic one or more filters stand for.
#[derive(Clone)]
struct Held {
    /// The highest QoS of the filters that name it.
    qos: u8,
    /// What its `filter` costs per event (see [`topics::FILTER_BUDGET`]).
    cost: usize,
    target: Target,
    subscription: Subscription,
}

/// The answer to a SUBSCRIBE, and what to replay.
pub struct Subscribed {
    pub codes: Vec<SubCode>,
    /// The message of the first refusal (5.0 reason string).
    pub reason: Option<String>,
    /// The realtime topics this SUBSCRIBE added, with the position the hub
    /// registered them at.
    pub added: Vec<(Target, Subscription)>,
    pub upto: u64,
}

/// Ordered maps rather than hash maps: a session holds a few filters, and
/// an empty `HashMap` (with its hasher's keys) is twice the room of an
/// empty `BTreeMap` in every idle connection's task.
#[derive(Default)]
pub struct Subscriptions {
    filters: BTreeMap<String, Grant>,
    topics: BTreeMap<String, Held>,
}

/// The parts of a rendered event or message that name where it goes.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    record: Option<RecordHead<'a>>,
}

#[derive(Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl Subscriptions {
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Whether any delivery may be QoS 1, and so count against the
    /// in-flight window.
    pub fn any_qos1(&self) -> bool {
        self.filters.values().any(|grant| grant.qos > 0)
    }

    /// The filters held, to be kept for a persistent session.
    pub fn stored(&self) -> Vec<StoredFilter> {
        let mut stored: Vec<StoredFilter> = self
            .filters
            .iter()
            .map(|(path, grant)| StoredFilter {
                path: path.clone(),
                qos: grant.qos,
                filter: grant.props.filter.clone(),
                ops: grant.props.ops.clone(),
            })
            .collect();
        stored.sort_by(|a, b| a.path.cmp(&b.path));
        stored
    }

    /// Subscribes `requested`, each filter with its `filter` and `ops`
    /// (5.0 user properties). Each filter is answered on its own; the
    /// realtime topics of all granted ones are registered at one position.
    pub async fn subscribe(
        &mut self,
        state: &AppState,
        principal: &Principal,
        conn: ConnId,
        requested: &[(Filter, Props)],
    ) -> Subscribed {
        let mut out = Subscribed {
            codes: Vec::with_capacity(requested.len()),
            reason: None,
            added: Vec::new(),
            upto: 0,
        };
        let max = state.live.get().max_subscriptions;
        let mut changed: Vec<String> = Vec::new();
        for (filter, props) in requested {
            let qos = filter.qos.min(1);
            let options = match options(props) {
                Ok(options) => options,
                Err(e) => {
                    out.codes.push(code_of(&e));
                    out.reason.get_or_insert_with(|| e.message.clone());
                    continue;
                }
            };
            if let Err(why) = filters::parse(&filter.path) {
                out.codes.push(SubCode::TopicFilterInvalid);
                out.reason.get_or_insert_with(|| invalid(&filter.path, why));
                continue;
            }
            let answer = self
                .resolve(state, principal, &filter.path, &options)
                .and_then(|found| self.check_limits(&found, &filter.path, max).map(|()| found));
            let found = match answer {
                Ok(found) => found,
                Err(e) => {
                    out.codes.push(code_of(&e));
                    out.reason.get_or_insert_with(|| e.message.clone());
                    continue;
                }
            };
            let names: Vec<String> = found.iter().map(|(t, _)| t.clone()).collect();
            if let Some(old) = self.filters.remove(&filter.path) {
                self.release(&old, &names);
            }
            for (name, (target, subscription)) in found {
                let cost = options.filter.as_ref().map_or(0, |f| f.cost());
                let held = self.topics.entry(name.clone()).or_insert_with(|| Held {
                    qos,
                    cost,
                    target: target.clone(),
                    subscription: subscription.clone(),
                });
                // The newest ops and filter win, as a WebSocket subscribe
                // to a topic already held does.
                held.cost = cost;
                held.subscription = subscription;
                held.target = target;
                changed.push(name);
            }
            self.filters.insert(
                filter.path.clone(),
                Grant {
                    qos,
                    topics: names,
                    props: props.clone(),
                },
            );
            self.requalify();
            out.codes.push(SubCode::Granted(qos));
        }
        changed.sort_unstable();
        changed.dedup();
        let subscriptions: Vec<Subscription> = changed
            .iter()
            .filter_map(|name| self.topics.get(name))
            .map(|held| held.subscription.clone())
            .collect();
        if !subscriptions.is_empty() {
            out.upto = state.realtime.subscribe(conn, subscriptions).await;
        }
        out.added = changed
            .iter()
            .filter_map(|name| self.topics.get(name))
            .map(|held| (held.target.clone(), held.subscription.clone()))
            .collect();
        out
    }

    /// Whether a filter covers custom topics by wildcard, so topics
    /// created later may be its too.
    pub fn has_wildcard(&self) -> bool {
        self.filters.keys().any(|path| is_wildcard(path))
    }

    /// Adds to each wildcard filter the custom topics created since it was
    /// subscribed (or last widened) that it matches and the client may
    /// read, under the same limits as a SUBSCRIBE; a topic past the limits
    /// is left out, as one the client may not read is. Answers what was
    /// registered in the hub, at which position.
    pub async fn widen(
        &mut self,
        state: &AppState,
        principal: &Principal,
        conn: ConnId,
    ) -> Subscribed {
        let max = state.live.get().max_subscriptions;
        let wildcards: Vec<(String, Props)> = self
            .filters
            .iter()
            .filter(|(path, _)| is_wildcard(path))
            .map(|(path, grant)| (path.clone(), grant.props.clone()))
            .collect();
        let mut added = Vec::new();
        for (path, props) in wildcards {
            let Ok(options) = options(&props) else {
                continue;
            };
            let found = match self
                .resolve(state, principal, &path, &options)
                .and_then(|found| self.check_limits(&found, &path, max).map(|()| found))
            {
                Ok(found) => found,
                Err(e) => {
                    tracing::debug!(filter = %path, error = %e.message, "mqtt: new topics not added");
                    continue;
                }
            };
            let Some(grant) = self.filters.get_mut(&path) else {
                continue;
            };
            for (name, (target, subscription)) in found {
                if grant.topics.contains(&name) {
                    continue;
                }
                grant.topics.push(name.clone());
                if self.topics.contains_key(&name) {
                    continue;
                }
                let cost = options.filter.as_ref().map_or(0, |f| f.cost());
                self.topics.insert(
                    name,
                    Held {
                        qos: grant.qos,
                        cost,
                        target: target.clone(),
                        subscription: subscription.clone(),
                    },
                );
                added.push((target, subscription));
            }
        }
        self.requalify();
        let subscriptions: Vec<Subscription> = added.iter().map(|(_, s)| s.clone()).collect();
        let upto = if subscriptions.is_empty() {
            0
        } else {
            state.realtime.subscribe(conn, subscriptions).await
        };
        Subscribed {
            codes: Vec::new(),
            reason: None,
            added,
            upto,
        }
    }

    /// Drops `filter`; its realtime topics that no other filter names are
    /// unsubscribed in the hub.
    pub async fn unsubscribe(&mut self, realtime: &Realtime, conn: ConnId, filter: &str) {
        let Some(grant) = self.filters.remove(filter) else {
            return;
        };
        for topic in self.release(&grant, &[]) {
            realtime.unsubscribe(conn, topic).await;
        }
        self.requalify();
    }

    /// The hub ended a subscription (its topic deleted, its collection
    /// dropped, a replay that cannot go on): forgets the topic. The
    /// filters that named it stay, naming what remains.
    pub fn forget(&mut self, topic: &str) {
        self.topics.remove(topic);
        for grant in self.filters.values_mut() {
            grant.topics.retain(|t| t != topic);
        }
    }

    /// The topic an `unsubscribed` notice from the hub ends.
    pub fn ended_by(frame: &Frame) -> Option<String> {
        if frame.kind != FrameKind::Control("unsubscribed") {
            return None;
        }
        let head: Head = serde_json::from_str(frame.text.as_str()).ok()?;
        Some(head.topic.into_owned())
    }

    /// Forgets the topics of `grant` that no other filter (nor `keep`)
    /// names; answers them.
    fn release(&mut self, grant: &Grant, keep: &[String]) -> Vec<String> {
        let mut gone = Vec::new();
        for topic in &grant.topics {
            let named =
                keep.contains(topic) || self.filters.values().any(|g| g.topics.contains(topic));
            if !named && self.topics.remove(topic).is_some() {
                gone.push(topic.clone());
            }
        }
        gone
    }

    /// Each topic's QoS is the highest of the filters naming it.
    fn requalify(&mut self) {
        for (name, held) in &mut self.topics {
            held.qos = self
                .filters
                .values()
                .filter(|g| g.topics.contains(name))
                .map(|g| g.qos)
                .max()
                .unwrap_or(0);
        }
    }

    /// The realtime topics `filter` stands for, each checked as a
    /// WebSocket subscribe would be.
    fn resolve(
        &self,
        state: &AppState,
        principal: &Principal,
        filter: &str,
        options: &Options,
    ) -> ApiResult<Vec<(String, (Target, Subscription))>> {
        let named =
            filters::parse(filter).map_err(|why| ApiError::bad_request(invalid(filter, why)))?;
        let one = |name: String| -> ApiResult<Vec<(String, (Target, Subscription))>> {
            let target = topics::resolve_for_subscribe(state, principal, &name)?;
            let subscription = target.subscription(&name, options.ops, options.filter.clone());
            Ok(vec![(name, (target, subscription))])
        };
        match named {
            Named::Name(name) => one(name),
            Named::Below(name, id) => {
                if state.store.catalog().get(&name).is_none() {
                    return Err(ApiError::not_found(format!(
                        "{filter} matches nothing: only collections have topics below their name"
                    )));
                }
                one(format!("{name}/{id}"))
            }
            // The custom topics the caller may subscribe to that exist
            // now; one it may not is left out, as `GET /api/topics` does.
            Named::Wildcard => Ok(state
                .store
                .topics()
                .all()
                .into_iter()
                .filter(|topic| filters::matches(filter, &topic.def.name))
                .filter_map(|topic| one(topic.def.name.clone()).ok())
                .flatten()
                .collect()),
        }
    }

    /// `max_subscriptions` and the filter budget, counted over realtime
    /// topics as for a WebSocket connection.
    fn check_limits(
        &self,
        found: &[(String, (Target, Subscription))],
        filter: &str,
        max: usize,
    ) -> ApiResult<()> {
        // The realtime topics held once this filter is (re)placed.
        let mut after: HashSet<&str> = self
            .filters
            .iter()
            .filter(|(f, _)| f.as_str() != filter)
            .flat_map(|(_, g)| g.topics.iter().map(String::as_str))
            .collect();
        after.extend(found.iter().map(|(name, _)| name.as_str()));
        if after.len() > max {
            return Err(ApiError::too_many_subscriptions(max));
        }
        let cost: usize = found
            .iter()
            .map(|(_, (_, s))| s.filter.as_ref().map_or(0, |f| f.cost()))
            .sum();
        let kept: usize = self
            .topics
            .iter()
            .filter(|(name, _)| !found.iter().any(|(n, _)| n == *name))
            .map(|(_, held)| held.cost)
            .sum();
        topics::check_filter_budget(kept + cost)
    }

    /// The PUBLISH a rendered frame becomes: its topic name, payload (the
    /// frame's JSON as it is) and QoS. Replies and notices other than
    /// events and messages have no MQTT form and are skipped.
    pub fn delivery<'f>(&self, frame: &'f Frame) -> Option<(&'f str, &'f [u8], u8)> {
        let address = frame.mqtt.get_or_init(|| address_of(frame)).as_ref()?;
        let qos = self.topics.get(&*address.topic).map_or(0, |h| h.qos);
        Some((address.name(), frame.text.as_bytes(), qos))
    }
}

/// Where an event or message goes, read from its JSON.
fn address_of(frame: &Frame) -> Option<MqttAddress> {
    if !matches!(frame.kind, FrameKind::Event | FrameKind::Message) {
        return None;
    }
    let head: Head = serde_json::from_str(frame.text.as_str()).ok()?;
    let name = match (frame.kind, head.record.and_then(|r| r.id)) {
        (FrameKind::Event, Some(id)) => {
            let collection = head.topic.split('/').next().unwrap_or_default();
            Some(format!("{collection}/{id}").into_boxed_str())
        }
        _ => None,
    };
    Some(MqttAddress {
        topic: head.topic.into(),
        name,
    })
}

/// The `filter` and `ops` user properties of a SUBSCRIBE.
struct Options {
    ops: Ops,
    filter: Option<Arc<crate::rules::Expr>>,
}

fn options(props: &Props) -> ApiResult<Options> {
    let ops: Vec<String> = props
        .ops
        .as_deref()
        .map(|ops| {
            ops.split(',')
                .map(|op| op.trim().to_owned())
                .filter(|op| !op.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let ops = Ops::parse(&ops).map_err(ApiError::bad_request)?;
    let filter = records::parse_filter(props.filter.as_deref())?.map(Arc::new);
    Ok(Options { ops, filter })
}

fn is_wildcard(filter: &str) -> bool {
    filters::parse(filter) == Ok(Named::Wildcard)
}

fn invalid(filter: &str, why: Invalid) -> String {
    match why {
        Invalid::Syntax => format!("{filter} is not an MQTT topic filter"),
        Invalid::Shared => "shared subscriptions are not offered".to_owned(),
        Invalid::TooDeep => format!("{filter} matches nothing delivered here"),
    }
}

/// A refusal in SUBACK terms.
fn code_of(error: &ApiError) -> SubCode {
    match error.code {
        "forbidden" | "unauthorized" => SubCode::NotAuthorized,
        "not_found" => SubCode::TopicFilterInvalid,
        "too_many_subscriptions" => SubCode::QuotaExceeded,
        "bad_request" if error.message.starts_with("the filters of") => SubCode::QuotaExceeded,
        "bad_request" => SubCode::BadRequest,
        _ => SubCode::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::server::{UnsubscribeReason, Unsubscribed};
    use crate::protocol::ServerMessage;

    #[test]
    fn an_unsubscribed_notice_names_the_topic_it_ends() {
        let notice = ServerMessage::Unsubscribed(Unsubscribed {
            topic: "chat-1",
            reason: UnsubscribeReason::TopicDeleted,
        });
        let frame = Frame::control(&notice);
        assert_eq!(Subscriptions::ended_by(&frame), Some("chat-1".to_owned()));
        let pong = Frame::control(&ServerMessage::Pong { id: None });
        assert_eq!(Subscriptions::ended_by(&pong), None);
    }

    #[test]
    fn forgetting_a_topic_keeps_the_filters_that_named_it() {
        let mut subscriptions = Subscriptions::default();
        let grant = |topics: &[&str]| Grant {
            qos: 1,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            props: Props::default(),
        };
        subscriptions.filters.insert("#".into(), grant(&["a", "b"]));
        subscriptions.filters.insert("a".into(), grant(&["a"]));
        subscriptions.forget("a");
        assert_eq!(subscriptions.filters["#"].topics, ["b"]);
        assert!(subscriptions.filters["a"].topics.is_empty());
        let paths: Vec<String> = subscriptions.stored().into_iter().map(|f| f.path).collect();
        assert_eq!(paths, ["#", "a"]);
    }
}
