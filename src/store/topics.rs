//! Custom pub/sub topics: their definitions, and the last `history`
//! messages of each, kept for replay. Collections are topics too, but they
//! live in the collection catalog; this is only for custom ones.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{codec, keys, Store, StoreError};
use crate::rules::Expr;
use crate::visibility::Viewer;

/// A custom topic as stored. Rules are kept as text and compiled on load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredTopic {
    pub name: String,
    pub owner: Option<String>,
    pub publish: String,
    pub subscribe: String,
    pub history: u32,
    pub created: String,
    /// Whether the topic tracks who is subscribed (join and leave notices,
    /// the `presence` action).
    pub presence: bool,
}

/// Topics moved to format 2 when they gained `presence`.
const TOPIC_FORMAT: u8 = 2;

/// A topic as format 1 stored it, before `presence`.
#[derive(Deserialize)]
struct StoredTopicV1 {
    name: String,
    owner: Option<String>,
    publish: String,
    subscribe: String,
    history: u32,
    created: String,
}

impl StoredTopic {
    pub(crate) fn encode(&self) -> Vec<u8> {
        codec::encode_as(TOPIC_FORMAT, self)
    }

    /// A stored topic of either format: one written before `presence`
    /// existed reads as a topic without presence.
    pub(crate) fn decode(bytes: &[u8]) -> Result<StoredTopic, StoreError> {
        if bytes.first() == Some(&codec::FORMAT) {
            let v1: StoredTopicV1 = codec::decode(bytes)?;
            return Ok(StoredTopic {
                name: v1.name,
                owner: v1.owner,
                publish: v1.publish,
                subscribe: v1.subscribe,
                history: v1.history,
                created: v1.created,
                presence: false,
            });
        }
        codec::decode_as(TOPIC_FORMAT, bytes)
    }
}

/// A custom topic ready for use.
#[derive(Debug, Clone)]
pub struct Topic {
    pub def: StoredTopic,
    pub publish: Expr,
    pub subscribe: Expr,
}

impl Topic {
    pub fn compile(def: StoredTopic) -> Result<Topic, (&'static str, String)> {
        let publish = Expr::parse(&def.publish).map_err(|e| ("publish", e.to_string()))?;
        let subscribe = Expr::parse(&def.subscribe).map_err(|e| ("subscribe", e.to_string()))?;
        Ok(Topic {
            def,
            publish,
            subscribe,
        })
    }

    /// May this viewer subscribe (and so see who else is subscribed)? The
    /// `subscribe` rule must be able to pass for them whatever a message
    /// holds; admins always may. Each message is then judged on its own.
    pub fn admits(&self, viewer: &Viewer, now: &str) -> bool {
        viewer.admin || self.subscribe.can_be_true_for(viewer.user.as_ref(), now)
    }
}

/// A message published on a custom topic, as stored in its history and as
/// handed to the realtime hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    #[serde(skip)]
    pub seq: u64,
    #[serde(skip)]
    pub topic: String,
    pub from: Option<String>,
    /// The `data` JSON.
    pub data: Vec<u8>,
    pub ts_ms: i64,
}

/// Custom topics by name; only the writer changes it.
#[derive(Clone)]
pub struct Topics {
    inner: Arc<RwLock<HashMap<String, Arc<Topic>>>>,
    /// Counts topics created, for subscribers whose wildcards cover
    /// topics that do not exist yet.
    created: Arc<watch::Sender<u64>>,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            inner: Arc::default(),
            created: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl Topics {
    /// Changes each time a topic is created.
    pub fn watch_created(&self) -> watch::Receiver<u64> {
        self.created.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn put(&self, topic: Arc<Topic>) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.insert(topic.def.name.clone(), topic);
        drop(map);
        self.created.send_modify(|n| *n += 1);
    }

    pub(crate) fn remove(&self, name: &str) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.remove(name);
    }
}

impl Store {
    pub(crate) fn load_topics(&self) -> Result<(), StoreError> {
        for entry in self.data.scan_prefix([keys::TOPIC]) {
            let (_, value) = entry?;
            let def = StoredTopic::decode(&value)?;
            let topic = Topic::compile(def)
                .map_err(|(part, e)| StoreError::Corrupt(format!("topic {part} rule: {e}")))?;
            self.topics.put(Arc::new(topic));
        }
        Ok(())
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The retained messages of a topic with `seq > after`, oldest first.
    /// A topic's kept messages with `after < seq <= upto`, at most `limit`.
    pub fn history_after(
        &self,
        topic: &str,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let start = keys::history(topic, after.saturating_add(1));
        let end = keys::history(topic, upto);
        self.data
            .range(start..=end)
            .take(limit)
            .map(|entry| {
                let (key, value) = entry?;
                let mut message: Message = codec::decode(&value)?;
                message.seq = keys::history_seq(&key)
                    .ok_or_else(|| StoreError::Corrupt("history key".into()))?;
                message.topic = topic.to_owned();
                Ok(message)
            })
            .collect()
    }

    /// A topic's newest kept message with `seq <= upto` (what an MQTT
    /// subscriber gets as the topic's retained message).
    pub fn last_message(&self, topic: &str, upto: u64) -> Result<Option<Message>, StoreError> {
        let start = keys::history(topic, 0);
        let end = keys::history(topic, upto);
        let Some(entry) = self.data.range(start..=end).next_back() else {
            return Ok(None);
        };
        let (key, value) = entry?;
        let mut message: Message = codec::decode(&value)?;
        message.seq =
            keys::history_seq(&key).ok_or_else(|| StoreError::Corrupt("history key".into()))?;
        message.topic = topic.to_owned();
        Ok(Some(message))
    }

    /// The message an MQTT subscriber gets as a topic's retained one, as
    /// of `upto`: the newer of the last message published with the retain
    /// flag and the newest kept in the topic's history.
    pub fn retained_message(&self, topic: &str, upto: u64) -> Result<Option<Message>, StoreError> {
        let kept = self.last_message(topic, upto)?;
        let retained = match self.data.get(keys::retained(topic))? {
            None => None,
            Some(value) => {
                let (seq, encoded) = value
                    .split_first_chunk::<8>()
                    .ok_or_else(|| StoreError::Corrupt("retained message".into()))?;
                let mut message: Message = codec::decode(encoded)?;
                message.seq = u64::from_be_bytes(*seq);
                message.topic = topic.to_owned();
                Some(message).filter(|m| m.seq <= upto)
            }
        };
        Ok(match (kept, retained) {
            (Some(kept), Some(retained)) if kept.seq > retained.seq => Some(kept),
            (kept, retained) => retained.or(kept),
        })
    }

    /// The newest seq a topic's history has dropped (0 if none): a resume
    /// from before it may have missed messages.
    pub fn history_trimmed(&self, topic: &str) -> Result<u64, StoreError> {
        read_u64(&self.data, &keys::history_trimmed(topic))
    }

    /// The newest seq trimmed from the change log (0 if none).
    pub fn changelog_trimmed(&self) -> Result<u64, StoreError> {
        read_u64(&self.data, keys::CHANGELOG_TRIMMED)
    }

    /// The seq reservation mark: no seq above it was handed out (see
    /// `seqs`).
    pub fn seq_reserved(&self) -> Result<u64, StoreError> {
        read_u64(&self.data, keys::SEQ_RESERVED)
    }
}

pub(crate) fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, StoreError> {
    match tree.get(key)? {
        None => Ok(0),
        Some(bytes) => bytes
            .as_ref()
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("counter".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(presence: bool) -> StoredTopic {
        StoredTopic {
            name: "chat-1".into(),
            owner: Some("u1".into()),
            publish: "true".into(),
            subscribe: "@user != null".into(),
            history: 10,
            created: "2026-01-01T00:00:00.000Z".into(),
            presence,
        }
    }

    #[test]
    fn a_topic_round_trips_with_its_presence_setting() {
        for presence in [false, true] {
            let stored = topic(presence);
            let bytes = stored.encode();
            assert_eq!(bytes[0], TOPIC_FORMAT);
            assert_eq!(StoredTopic::decode(&bytes).unwrap(), stored);
        }
    }

    /// The bytes format 1 wrote for a topic, before `presence`.
    #[test]
    fn a_topic_stored_before_presence_existed_reads_without_presence() {
        let v1 = (
            "chat-1",
            Some("u1"),
            "true",
            "@user != null",
            10u32,
            "2026-01-01T00:00:00.000Z",
        );
        let bytes = codec::encode_as(codec::FORMAT, &v1);
        assert_eq!(StoredTopic::decode(&bytes).unwrap(), topic(false));
        // And format 2 bytes are not mistaken for format 1, nor the reverse.
        assert!(codec::decode_as::<StoredTopic>(TOPIC_FORMAT, &bytes).is_err());
    }
}
