//! Storage: the only code that touches sled.
//!
//! Trees: `data` (records, indexes, collections, users and the change log:
//! see `keys` for the layout), `meta` (the signing secret and other server
//! settings) and `auth` (refresh tokens, sessions and API keys). Reads go straight to sled from any
//! thread; every write to `data` goes through the single [`writer`], which
//! assigns change-log sequence numbers and makes writes durable in groups.

pub mod api_keys;
pub mod backup;
mod batch;
pub use batch::Batch;
pub mod change;
pub mod changelog;
pub use changelog::CHANGELOG_MIN_AGE_MS;
pub mod chores;
pub mod client_ids;
pub mod codec;
mod flusher;
mod fsync;
pub mod keys;
mod lock;
pub mod mail_tokens;
pub mod mqtt_sessions;
pub mod query;
mod segments;
mod seqs;
pub mod series;
pub mod sessions;
pub mod topics;
pub mod writer;

pub use lock::is_lock_held;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use crate::model::{Collection, CollectionDef, Record, User};
use codec::{StoredCollection, StoredRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt value: {0}")]
    Corrupt(String),
}

/// Compiled collections, shared by readers and the writer. Only the writer
/// changes it, right after the change commits.
#[derive(Clone, Default)]
pub struct Catalog {
    inner: Arc<RwLock<Collections>>,
}

#[derive(Default)]
struct Collections {
    by_name: HashMap<String, Arc<Collection>>,
    /// Every collection this process has known, dropped ones included (ids
    /// are never reused): changes of a collection still in flight when it
    /// is dropped are delivered by its own rules, never its namesake's.
    by_id: HashMap<u32, Arc<Collection>>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<Arc<Collection>> {
        self.read().by_name.get(name).cloned()
    }

    /// The collection with this id, even if it has been dropped since.
    pub fn by_id(&self, id: u32) -> Option<Arc<Collection>> {
        self.read().by_id.get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Collection>> {
        let mut all: Vec<_> = self.read().by_name.values().cloned().collect();
        all.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Collections> {
        // A panic while holding the lock cannot leave the maps half-written
        // (inserts and removes are single operations), so poison is ignored.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn put(&self, collection: Arc<Collection>) {
        let mut maps = self.inner.write().unwrap_or_else(|e| e.into_inner());
        maps.by_id.insert(collection.id, collection.clone());
        maps.by_name.insert(collection.def.name.clone(), collection);
    }

    fn remove(&self, name: &str) {
        let mut maps = self.inner.write().unwrap_or_else(|e| e.into_inner());
        maps.by_name.remove(name);
    }
}

/// sled's page cache when nothing says otherwise: `cache_mb`'s default.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    data: sled::Tree,
    meta: sled::Tree,
    auth: sled::Tree,
    catalog: Catalog,
    topics: topics::Topics,
    /// Names this change log: made when the data dir is created, made anew
    /// by a restore, so a seq from another history is never taken for one
    /// of this one.
    epoch: Arc<RwLock<String>>,
    files: Arc<fsync::StorageFiles>,
    /// A running live backup's saved old values (see `batch`).
    copying: Arc<backup::live::Copying>,
    /// Series collections' newest reading per source (`series`).
    latest: Arc<series::LatestIndex>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens with sled's page cache capped at `cache_bytes` (`cache_mb`).
    /// sled counts only its page cache against it; its write buffers and
    /// pulsebase's own queues come on top (docs/configuration.md).
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        let config = sled::Config::new()
            .path(path)
            .segment_size(segments::segment_size(path))
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            // The writer decides when to fsync (group commit); sled's own
            // timer would only add unaccounted flushes.
            .flush_every_ms(None);
        let db = lock::open_waiting(&config)?;
        let files = fsync::StorageFiles::open(path).map_err(sled::Error::Io)?;
        let store = Store {
            data: db.open_tree("data")?,
            meta: db.open_tree("meta")?,
            auth: db.open_tree("auth")?,
            db,
            catalog: Catalog::default(),
            topics: topics::Topics::default(),
            epoch: Arc::default(),
            files: Arc::new(files),
            copying: Arc::default(),
            latest: Arc::default(),
        };
        store.load_catalog()?;
        store.load_topics()?;
        store.open_changelog()?;
        Ok(store)
    }

    fn load_catalog(&self) -> Result<(), StoreError> {
        for entry in self.data.scan_prefix([keys::COLLECTION]) {
            let (_, value) = entry?;
            let collection = decode_collection(&value)?;
            self.catalog.put(Arc::new(collection));
        }
        Ok(())
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Makes every write applied so far durable: sled writes out its log,
    /// then its files are fdatasync'd (sled's flush alone is not an fsync,
    /// see `fsync`). Blocks for the disk: call it off the async runtime.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.files.sync().map_err(sled::Error::Io)?;
        Ok(())
    }

    /// Bytes on disk, as sled counts them.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    pub fn get_record(&self, collection: u32, id: &str) -> Result<Option<Record>, StoreError> {
        match self.data.get(keys::record(collection, id))? {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn record_count(&self, collection: u32) -> Result<u64, StoreError> {
        Ok(self
            .data
            .get(keys::count(collection))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    pub fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        match self.data.get(keys::user(id))? {
            Some(bytes) => codec::decode_user(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        match self.data.get(keys::email(email))? {
            Some(id) => self.get_user(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<User>, StoreError> {
        self.data
            .scan_prefix([keys::USER])
            .map(|entry| codec::decode_user(&entry?.1))
            .collect()
    }

    pub fn admin_exists(&self) -> Result<bool, StoreError> {
        Ok(self.users()?.iter().any(|u| u.is_admin() && !u.disabled))
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Writes a server setting and makes it durable before returning.
    pub fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        self.flush()?;
        Ok(())
    }

    /// The settings changed at runtime, as a JSON object of name to value.
    pub fn runtime_settings(
        &self,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        match self.meta.get(RUNTIME_SETTINGS_KEY)? {
            None => Ok(serde_json::Map::new()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|_| StoreError::Corrupt("runtime settings".into())),
        }
    }

    /// Replaces the runtime settings durably.
    pub fn save_runtime_settings(
        &self,
        settings: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(settings)
            .map_err(|_| StoreError::Corrupt("runtime settings".into()))?;
        self.meta_put(RUNTIME_SETTINGS_KEY, &bytes)
    }

    pub(crate) fn data(&self) -> &sled::Tree {
        &self.data
    }
}

/// Kept as JSON: a handful of values, read once per start, and readable by
/// whatever build comes next.
const RUNTIME_SETTINGS_KEY: &str = "settings";

pub fn decode_record(bytes: &[u8]) -> Result<Record, StoreError> {
    let stored: StoredRecord = codec::decode(bytes)?;
    Record::from_bytes(&stored.json).ok_or_else(|| StoreError::Corrupt("record json".into()))
}

fn decode_collection(bytes: &[u8]) -> Result<Collection, StoreError> {
    let stored: StoredCollection = codec::decode(bytes)?;
    let def: CollectionDef = serde_json::from_slice(&stored.def_json)
        .map_err(|e| StoreError::Corrupt(format!("collection definition: {e}")))?;
    Collection::compile(
        stored.id,
        stored.version,
        stored.created,
        stored.updated,
        def,
    )
    .map_err(|errors| StoreError::Corrupt(format!("collection definition: {errors:?}")))
}

impl Store {
    /// Ids of the oldest records by `created`, optionally only those created
    /// before `before` (a canonical timestamp).
    pub fn oldest_ids(
        &self,
        collection: u32,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let prefix = keys::index_field_prefix(collection, "created");
        let end = match before {
            Some(cutoff) => {
                let mut end = prefix.clone();
                keys::encode_value(&serde_json::Value::String(cutoff.to_owned()), &mut end);
                end
            }
            None => keys::prefix_end(&prefix),
        };
        let mut ids = Vec::new();
        for key in self.data.range(prefix.clone()..end).keys().take(limit) {
            let key = key?;
            if let Some(id) = keys::index_entry_id(&key, prefix.len()) {
                ids.push(id.to_owned());
            }
        }
        Ok(ids)
    }
}

#[cfg(test)]
pub(crate) mod tests;
