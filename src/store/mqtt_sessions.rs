//! Persistent MQTT sessions, in the `meta` tree under `mqtt_session/` +
//! client id: what a client that asked for a persistent session
//! subscribed to, and the change-log position up to which it has what it
//! is owed, so that when it comes back (also after a crash) the change log
//! replays the rest.

use serde::{Deserialize, Serialize};

use super::{codec, Store, StoreError};

const PREFIX: &str = "mqtt_session/";

/// One topic filter of a session, with the SUBSCRIBE properties it came
/// with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredFilter {
    pub path: String,
    pub qos: u8,
    /// The `filter` user property (an expression), as sent.
    pub filter: Option<String>,
    /// The `ops` user property, as sent.
    pub ops: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MqttSession {
    /// Whose session it is (`None`: anonymous): another principal using
    /// the same client id does not take it up.
    pub principal: Option<String>,
    pub filters: Vec<StoredFilter>,
    /// Everything up to this seq was delivered (and, at QoS 1,
    /// acknowledged) or was not for this client.
    pub seq: u64,
    /// The change log `seq` belongs to.
    pub epoch: String,
    /// When the session was last saved (ms since the epoch).
    pub saved_ms: i64,
    /// Seconds it outlives its connection (`None`: until cleaned).
    pub expiry_s: Option<u32>,
}

impl MqttSession {
    /// Whether it outlived its expiry, counted from its last save (which
    /// is its connection's end, or later for a connected client).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expiry_s
            .is_some_and(|s| now_ms - self.saved_ms > i64::from(s).saturating_mul(1000))
    }
}

fn key(client_id: &str) -> String {
    format!("{PREFIX}{client_id}")
}

impl Store {
    pub fn mqtt_session(&self, client_id: &str) -> Result<Option<MqttSession>, StoreError> {
        match self.meta.get(key(client_id))? {
            Some(bytes) => codec::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Saves a session; with `durable`, on disk before returning (a
    /// SUBSCRIBE's filters). A position saved without it reaches the disk
    /// with the next flush: after a crash the client gets again what came
    /// since the last one, never less.
    pub fn put_mqtt_session(
        &self,
        client_id: &str,
        session: &MqttSession,
        durable: bool,
    ) -> Result<(), StoreError> {
        self.meta.insert(key(client_id), codec::encode(session))?;
        if durable {
            self.flush()?;
        }
        Ok(())
    }

    pub fn delete_mqtt_session(&self, client_id: &str) -> Result<(), StoreError> {
        if self.meta.remove(key(client_id))?.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    /// How many persistent sessions are stored.
    pub fn mqtt_session_count(&self) -> usize {
        self.meta.scan_prefix(PREFIX).keys().count()
    }

    /// Forgets the sessions past their expiry whose client is not
    /// connected (`connected`), durably; answers how many.
    pub fn prune_mqtt_sessions(
        &self,
        now_ms: i64,
        connected: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        for entry in self.meta.scan_prefix(PREFIX) {
            let (key, value) = entry?;
            let client_id = String::from_utf8_lossy(key.get(PREFIX.len()..).unwrap_or_default());
            // One that cannot be read is forgotten: nothing could take it up.
            let gone = codec::decode::<MqttSession>(&value).map_or(true, |s| s.expired(now_ms));
            if gone && !connected(&client_id) {
                expired.push(key);
            }
        }
        for key in &expired {
            self.meta.remove(key)?;
        }
        if !expired.is_empty() {
            self.flush()?;
        }
        Ok(expired.len())
    }
}
