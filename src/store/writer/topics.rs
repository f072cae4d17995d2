//! Custom topics and their messages: create, delete, and publish (a
//! message takes the next seq like a change; with history it is kept).

use std::sync::Arc;

use super::{Committed, WriteError, WriterState};
use crate::store::codec;
use crate::store::topics::{Message, StoredTopic, Topic};
use crate::store::{keys, Batch};

impl WriterState {
    pub(super) fn create_topic(&mut self, def: StoredTopic) -> Result<Committed, WriteError> {
        let name = def.name.clone();
        if self.store.catalog().get(&name).is_some() || self.store.topics().get(&name).is_some() {
            return Err(WriteError::TopicExists(name));
        }
        let topic = Topic::compile(def)
            .map_err(|(part, e)| WriteError::Invalid([(part.to_owned(), e)].into()))?;
        self.store.put(keys::topic(&name), topic.def.encode())?;
        self.store.topics().put(Arc::new(topic));
        Ok(Committed::default())
    }

    pub(super) fn delete_topic(&mut self, name: &str) -> Result<Committed, WriteError> {
        if self.store.topics().get(name).is_none() {
            return Err(WriteError::TopicNotFound(name.to_owned()));
        }
        let data = self.store.data();
        let mut batch = Batch::default();
        batch.remove(keys::topic(name));
        batch.remove(keys::history_trimmed(name));
        batch.remove(keys::retained(name));
        for key in data.scan_prefix(keys::history_prefix(name)).keys() {
            batch.remove(key?);
        }
        self.store.apply(batch)?;
        self.store.topics().remove(name);
        self.history_counts.remove(name);
        Ok(Committed::default())
    }

    pub(super) fn publish(
        &mut self,
        mut message: Message,
        history: u32,
        retain: bool,
    ) -> Result<Committed, WriteError> {
        let seq = self.next_seq;
        let data = self.store.data().clone();
        // The publisher hears the seq at once, and a message with no
        // history goes out at once: never to be handed out again.
        self.reservation.cover_now(&self.store, seq)?;
        message.seq = seq;
        let mut batch = Batch::default();
        let mut kept = None;
        if history > 0 {
            let prefix = keys::history_prefix(&message.topic);
            let count = match self.history_counts.get(&message.topic) {
                Some(count) => *count,
                None => data.scan_prefix(&prefix).count() as u64,
            };
            batch.insert(keys::history(&message.topic, seq), codec::encode(&message));
            let excess = (count + 1).saturating_sub(u64::from(history));
            let mut dropped = None;
            for key in data.scan_prefix(&prefix).keys().take(excess as usize) {
                let key = key?;
                dropped = keys::history_seq(&key);
                batch.remove(key);
            }
            if let Some(dropped) = dropped {
                batch.insert(
                    keys::history_trimmed(&message.topic),
                    &dropped.to_be_bytes(),
                );
            }
            kept = Some(count + 1 - excess);
        }
        if retain {
            batch.insert(keys::retained(&message.topic), encode_retained(&message));
        }
        let stored = !batch.is_empty();
        if stored {
            self.store.apply(batch)?;
        }
        if let Some(kept) = kept {
            self.history_counts.insert(message.topic.clone(), kept);
        }
        self.next_seq += 1;
        if let Some(tap) = &self.tap {
            tap(message, stored);
        }
        Ok(Committed {
            repeated: false,
            seqs: Some((seq, seq)),
            collection: None,
        })
    }

    pub(super) fn clear_retained(&mut self, topic: &str) -> Result<Committed, WriteError> {
        if self.store.topics().get(topic).is_none() {
            return Err(WriteError::TopicNotFound(topic.to_owned()));
        }
        let mut batch = Batch::default();
        batch.remove(keys::retained(topic));
        self.store.apply(batch)?;
        Ok(Committed::default())
    }
}

/// A retained message as stored: its seq (which the message's own
/// encoding leaves to the key, as history does), then the message.
fn encode_retained(message: &Message) -> Vec<u8> {
    let mut value = message.seq.to_be_bytes().to_vec();
    value.extend_from_slice(&codec::encode(message));
    value
}
