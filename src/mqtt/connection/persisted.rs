//! What goes before live deliveries (retained messages, a resumed
//! session's replay) and a persistent session's saves.

use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use tokio::time::Instant;

use super::{End, Session};
use crate::store::StoreError;

impl Session {
    /// Hands out retained messages, then what a replay read, as far as the
    /// in-flight window allows; a replay that is over is let go.
    pub(super) fn fill_window(&mut self) {
        while self.inflight.len() < usize::from(self.out_window) {
            if let Some(frame) = self.retained.pop_front() {
                self.deliver_retained(&frame);
            } else if let Some(frame) = self.replaying.as_mut().and_then(|r| r.next_frame()) {
                self.deliver(&frame);
            } else {
                break;
            }
        }
        if self.replaying.as_ref().is_some_and(|r| !r.active()) {
            self.replaying = None;
        }
    }

    /// A replay page was read: the topics it ended are left.
    pub(super) async fn replayed(&mut self, page: Result<Vec<String>, StoreError>) -> Option<End> {
        match page {
            Ok(ended) => {
                for topic in ended {
                    self.subscriptions.forget(&topic);
                    let conn = self.registration.conn;
                    self.state.realtime.unsubscribe(conn, topic).await;
                }
                None
            }
            Err(e) => {
                tracing::warn!(client = %self.client_id, error = %e, "mqtt: a replay failed");
                Some(End::Close(DisconnectReasonCode::UnspecifiedError))
            }
        }
    }

    /// When a persistent session's position is next due to be saved.
    pub(super) fn save_due(&self) -> Option<Instant> {
        self.keeper
            .as_ref()
            .and_then(|k| k.next_save(self.position()))
    }

    /// Saves a persistent session's filters and position.
    pub(super) async fn save(&mut self, durable: bool) {
        let position = self.position();
        if let Some(keeper) = self.keeper.as_mut() {
            keeper
                .save(&self.state, &self.subscriptions, position, durable)
                .await;
        }
    }
}
