//! The hub's side of bucket subscriptions: readings go into each
//! subscription's open buckets, closed buckets go out, and a new
//! subscription's buckets are held until the stored readings they already
//! cover are folded in (see `fanout::backfill`).

use super::*;

impl Hub {
    /// A bucket subscription registered at `upto` starts over: its buckets
    /// are held until [`Hub::seeded`] brings what was stored by then. Any
    /// other subscription of the topic has no buckets.
    pub(super) fn reset_buckets(&mut self, conn: ConnId, subscription: &Subscription, upto: u64) {
        let key = (conn, subscription.topic.clone());
        self.buckets.remove(&key);
        if subscription.aggregate.is_some() {
            self.seeding.insert(key, upto);
        } else {
            self.seeding.remove(&key);
        }
    }

    /// The stored part of a bucket subscription's buckets, as of `upto`:
    /// folded in beside the live part, unless the subscription ended or
    /// was made again since (then a newer seed is on its way).
    pub(super) fn seeded(&mut self, conn: ConnId, topic: String, upto: u64, mut seed: LiveBuckets) {
        let key = (conn, topic);
        if self.seeding.get(&key) != Some(&upto) {
            return;
        }
        self.seeding.remove(&key);
        let subscribed = self
            .topics
            .get(&key.1)
            .and_then(|s| s.get(&conn))
            .is_some_and(|s| s.aggregate.is_some());
        if !subscribed {
            return;
        }
        if let Some(live) = self.buckets.remove(&key) {
            seed.absorb(live);
        }
        self.buckets.insert(key, seed);
        self.close_buckets();
    }

    /// Adds a reading to the open buckets of each `aggregate` subscription
    /// of `topic` that may see it.
    pub(super) fn feed_buckets(
        &mut self,
        view: &ChangeView,
        reading: &Reading,
        topic: &str,
        collection: &Collection,
        bucket_subscribers: &[ConnId],
    ) {
        let Some(subscribers) = self.topics.get(topic) else {
            return;
        };
        let series_field = collection
            .series
            .as_ref()
            .map_or("", |s| s.series_field.as_str());
        for conn_id in bucket_subscribers {
            let Some(subscription) = subscribers.get(conn_id) else {
                continue;
            };
            let Some(spec) = &subscription.aggregate else {
                continue;
            };
            let Some(conn) = self.conns.get(conn_id) else {
                continue;
            };
            if view
                .seen(Some(collection), subscription, &conn.viewer)
                .is_none()
            {
                continue;
            }
            self.buckets
                .entry((*conn_id, topic.to_owned()))
                .or_insert_with(|| LiveBuckets::new((**spec).clone(), series_field))
                .add(reading);
        }
    }

    /// Sends every bucket whose end plus grace has passed, and forgets the
    /// buckets of subscriptions that ended.
    pub(super) fn close_buckets(&mut self) {
        self.last_bucket_check = Instant::now();
        let topics = &self.topics;
        self.buckets
            .retain(|(conn, topic), _| topics.get(topic).is_some_and(|s| s.contains_key(conn)));
        let now = clock::now_ms();
        let seq = self.next - 1;
        let mut frames = Vec::new();
        for (key, live) in &mut self.buckets {
            // Held until the stored readings are folded in: a bucket sent
            // now would lack them.
            if self.seeding.contains_key(key) {
                continue;
            }
            let (conn, topic) = key;
            for bucket in live.close_due(now) {
                frames.push((*conn, Arc::new(render::render_bucket(topic, &bucket, seq))));
            }
        }
        let mut overflowing = Vec::new();
        for (conn_id, frame) in frames {
            if let Some(conn) = self.conns.get(&conn_id) {
                if offer(conn, frame, &self.limits) {
                    self.delivered += 1;
                } else {
                    overflowing.push(conn_id);
                }
            }
        }
        overflowing.dedup();
        self.close_slow(overflowing);
    }
}
