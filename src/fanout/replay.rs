//! Replay: what a resuming subscriber missed, streamed in pages.
//!
//! One subscribe request (several topics, one position) replays in one pass
//! in seq order, so one `since` or `Last-Event-ID` resumes all its topics.
//! A collection's changes are found through its index of the log (`x` keys,
//! see `store::keys`), so a resume reads its own collection's entries, not
//! the whole log; custom-topic messages come from the topic's history. Each
//! page reads at most [`PAGE`] entries per source, so a replay holds one
//! page in memory however long the history is, and the transport writes a
//! page before the next is read.
//!
//! Each change goes through the same decision as live delivery
//! ([`ChangeView::seen`]). A replay ends a topic early with `unsubscribed`:
//! `collection_dropped` when it reaches the drop of the collection it
//! subscribed to, `history_expired` when the log or the topic's history was
//! trimmed past the replay's position while it ran (never a silent gap).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::render::{self, ChangeView};
use super::target::Target;
use super::{Frame, Subscription};
use crate::clock;
use crate::protocol::server::{UnsubscribeReason, Unsubscribed};
use crate::protocol::ServerMessage;
use crate::store::change::ChangeKind;
use crate::store::topics::Message;
use crate::store::{Store, StoreError};
use crate::visibility::Viewer;

/// Entries read per source and page.
pub const PAGE: usize = 256;

/// A replay in progress.
pub struct Replay {
    subscribed: Vec<(Target, Subscription)>,
    viewer: Viewer,
    /// The first seq not yet replayed.
    next: u64,
    /// The last seq to replay: what the hub had released when it registered
    /// the subscriptions; live delivery covers everything after it.
    upto: u64,
    /// Per subscribed topic: still being replayed.
    open: Vec<bool>,
}

/// One page: frames in seq order, and the topics it ended.
#[derive(Default)]
pub struct Page {
    pub frames: Vec<Frame>,
    pub ended: Vec<String>,
}

enum Entry {
    Change,
    Message(usize, Message),
}

impl Replay {
    /// Replays `since < seq <= upto` of every topic in `subscribed` (system
    /// topics keep no history and are skipped).
    pub fn new(
        subscribed: Vec<(Target, Subscription)>,
        viewer: Viewer,
        since: u64,
        upto: u64,
    ) -> Replay {
        let open = subscribed
            .iter()
            .map(|(target, _)| !matches!(target, Target::System))
            .collect();
        Replay {
            subscribed,
            viewer,
            next: since.saturating_add(1),
            upto,
            open,
        }
    }

    pub fn done(&self) -> bool {
        self.next > self.upto || !self.open.contains(&true)
    }

    /// Reads and renders the next page. Blocking: call it off the async
    /// workers.
    pub fn next_page(&mut self, store: &Store) -> Result<Page, StoreError> {
        let mut page = Page::default();
        if self.done() {
            return Ok(page);
        }
        let after = self.next - 1;
        self.end_trimmed(store, after, &mut page)?;
        let mut end = self.upto;
        let mut entries: BTreeMap<u64, Vec<Entry>> = BTreeMap::new();
        let mut collections: Vec<u32> = Vec::new();
        for (i, (target, _)) in self.subscribed.iter().enumerate() {
            if !self.open[i] {
                continue;
            }
            match target {
                Target::Collection(c) | Target::Record(c, _) => {
                    if collections.contains(&c.id) {
                        continue;
                    }
                    collections.push(c.id);
                    let seqs = store.collection_changes(c.id, after, self.upto, PAGE)?;
                    if seqs.len() == PAGE {
                        end = end.min(seqs[PAGE - 1]);
                    }
                    for seq in seqs {
                        entries.entry(seq).or_default().push(Entry::Change);
                    }
                }
                Target::Custom(topic) => {
                    let messages = store.history_after(&topic.def.name, after, self.upto, PAGE)?;
                    if messages.len() == PAGE {
                        end = end.min(messages[PAGE - 1].seq);
                    }
                    for message in messages {
                        entries
                            .entry(message.seq)
                            .or_default()
                            .push(Entry::Message(i, message));
                    }
                }
                Target::System => {}
            }
        }
        let now = clock::now_rfc3339();
        // A block of readings covers seqs past its own.
        let mut reached = end;
        for (seq, at_seq) in entries.range(..=end) {
            for entry in at_seq {
                match entry {
                    Entry::Change => {
                        let through = self.change(store, *seq, &mut page)?;
                        reached = reached.max(through);
                    }
                    Entry::Message(i, message) => {
                        let (Target::Custom(topic), subscription) = &self.subscribed[*i] else {
                            continue;
                        };
                        let data: Map<String, Value> =
                            serde_json::from_slice(&message.data).unwrap_or_default();
                        if self.open[*i]
                            && render::message_reaches(
                                topic,
                                &data,
                                subscription,
                                &self.viewer,
                                &now,
                            )
                        {
                            page.frames.push(render::render_message(message));
                        }
                    }
                }
            }
        }
        self.next = reached.saturating_add(1);
        Ok(page)
    }

    /// Ends the topics whose history was trimmed past `after` since the
    /// replay began (or was checked): they would have a gap.
    fn end_trimmed(
        &mut self,
        store: &Store,
        after: u64,
        page: &mut Page,
    ) -> Result<(), StoreError> {
        let log_trimmed = store.changelog_trimmed()?;
        for i in 0..self.subscribed.len() {
            if !self.open[i] {
                continue;
            }
            let trimmed = match &self.subscribed[i].0 {
                Target::Collection(_) | Target::Record(..) => log_trimmed,
                Target::Custom(topic) => store.history_trimmed(&topic.def.name)?,
                Target::System => 0,
            };
            if trimmed > after {
                self.expire(i, trimmed + 1, page);
            }
        }
        Ok(())
    }

    fn expire(&mut self, i: usize, oldest: u64, page: &mut Page) {
        self.end(i, UnsubscribeReason::HistoryExpired { oldest }, page);
    }

    fn end(&mut self, i: usize, reason: UnsubscribeReason, page: &mut Page) {
        self.open[i] = false;
        let topic = self.subscribed[i].1.topic.clone();
        let notice = ServerMessage::Unsubscribed(Unsubscribed {
            topic: &topic,
            reason,
        });
        page.frames.push(Frame::control(&notice));
        page.ended.push(topic);
    }

    /// Replays the change at `seq`; returns the last seq it covered.
    fn change(&mut self, store: &Store, seq: u64, page: &mut Page) -> Result<u64, StoreError> {
        let Some(change) = store.change_at(seq)? else {
            // Trimmed between reading the index and the entry.
            let oldest = store.changelog_trimmed()? + 1;
            for i in 0..self.subscribed.len() {
                let logged = matches!(
                    self.subscribed[i].0,
                    Target::Collection(_) | Target::Record(..)
                );
                if self.open[i] && logged {
                    self.expire(i, oldest, page);
                }
            }
            return Ok(seq);
        };
        let mut view = None;
        // Only the readings this replay has not reached yet.
        let readings = match change.kind {
            ChangeKind::Append => Some(store.readings_between(
                change.collection_id,
                change.seq.max(self.next),
                change.through,
            )?),
            _ => None,
        };
        for i in 0..self.subscribed.len() {
            let (collection, record) = match &self.subscribed[i].0 {
                Target::Record(c, id) => (c.clone(), Some(id.clone())),
                Target::Collection(c) => (c.clone(), None),
                _ => continue,
            };
            if !self.open[i] || change.collection_id != collection.id {
                continue;
            }
            if change.kind == ChangeKind::DropCollection {
                self.end(i, UnsubscribeReason::CollectionDropped, page);
                continue;
            }
            if change.kind == ChangeKind::Truncate {
                if record.is_none() {
                    let topic = &self.subscribed[i].1.topic;
                    page.frames.push(render::render_truncate(&change, topic));
                }
                continue;
            }
            if !collection.emits(change.kind.event_op()) {
                continue;
            }
            if change.kind == ChangeKind::Append {
                let readings = match &readings {
                    Some(readings) => readings.clone(),
                    None => Vec::new(),
                };
                let subscription = &self.subscribed[i].1;
                // Bucket subscriptions resume live: buckets are not replayed
                // (the `aggregate` endpoint answers for the past).
                if subscription.aggregate.is_some() {
                    continue;
                }
                for (_, reading, fields) in render::readings_of(&change, &collection, readings) {
                    if record.as_ref().is_some_and(|id| *id != reading.record_id) {
                        continue;
                    }
                    let view = ChangeView::reading(&reading, &collection, fields);
                    if let Some(seen) = view.seen(Some(&collection), subscription, &self.viewer) {
                        page.frames
                            .push(view.render(&subscription.topic, seen, self.viewer.admin));
                    }
                }
                continue;
            }
            if record.is_some_and(|id| id != change.record_id) {
                continue;
            }
            let subscription = &self.subscribed[i].1;
            let view = view.get_or_insert_with(|| ChangeView::new(&change, Some(&collection)));
            if let Some(seen) = view.seen(Some(&collection), subscription, &self.viewer) {
                page.frames
                    .push(view.render(&subscription.topic, seen, self.viewer.admin));
            }
        }
        Ok(change.through)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fanout::Ops;
    use crate::store::tests::store_with;

    fn events(page: &Page) -> Vec<u64> {
        page.frames
            .iter()
            .filter(|f| f.seq != 0)
            .map(|f| f.seq)
            .collect()
    }

    /// A collection `c` open to everyone, holding `records` changes.
    async fn open_collection(
        records: usize,
    ) -> (tempfile::TempDir, Store, crate::store::writer::Writer) {
        store_with(
            json!({"name": "c", "strict": false, "rules": {"list": "true", "view": "true"}}),
            (0..records).map(|i| json!({"n": i})),
        )
        .await
    }

    /// An anonymous replay of all of `c` up to `upto`.
    fn replay_of_c(store: &Store, upto: u64) -> Replay {
        let target = Target::Collection(store.catalog().get("c").unwrap());
        let subscription = target.subscription("c", Ops::ALL, None);
        Replay::new(vec![(target, subscription)], Viewer::default(), 0, upto)
    }

    #[tokio::test]
    async fn a_long_history_replays_in_bounded_pages_in_seq_order() {
        let (_dir, store, writer) = open_collection(600).await;
        let upto = store.last_seq().unwrap();
        let mut replay = replay_of_c(&store, upto);
        let mut seqs = Vec::new();
        let mut pages = 0;
        while !replay.done() {
            let page = replay.next_page(&store).unwrap();
            assert!(page.frames.len() <= PAGE, "{} frames", page.frames.len());
            seqs.extend(events(&page));
            pages += 1;
        }
        assert_eq!(pages, 3);
        let expected: Vec<u64> = (1..=upto).collect();
        assert_eq!(seqs, expected);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn a_trim_during_a_replay_ends_it_with_history_expired() {
        let (_dir, store, writer) = open_collection(600).await;
        let upto = store.last_seq().unwrap();
        let mut replay = replay_of_c(&store, upto);
        let first = replay.next_page(&store).unwrap();
        assert_eq!(events(&first).len(), PAGE);
        // The log loses everything but its newest 10 while the client reads.
        store.trim_changelog(10, -1000).unwrap();
        let second = replay.next_page(&store).unwrap();
        assert_eq!(second.ended, ["c"]);
        let notice: Value = serde_json::from_str(second.frames[0].text.as_str()).unwrap();
        assert_eq!(
            notice,
            json!({"type": "unsubscribed", "topic": "c", "reason": "history_expired",
                   "oldest": upto - 9})
        );
        assert!(replay.done(), "no gap: nothing after the trim is sent");
        writer.shutdown().await;
    }
}
