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
pub(crate) mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::model::CollectionDef;
    use crate::store::writer::{Mutation, NewRecord, RecordOp, Writer};

    pub(crate) async fn store_with_records(n: usize) -> (tempfile::TempDir, Store, Writer) {
        store_with(
            serde_json::json!({"name": "c"}),
            (0..n).map(|_| serde_json::json!({})),
        )
        .await
    }

    /// A store with one collection defined by `def`, holding `records`
    /// (given ids `r0000`, `r0001`, ...).
    pub(crate) async fn store_with(
        def: serde_json::Value,
        records: impl IntoIterator<Item = serde_json::Value>,
    ) -> (tempfile::TempDir, Store, Writer) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let writer = Writer::start(store.clone(), Durability::Relaxed, 10, None).unwrap();
        let def: CollectionDef = serde_json::from_value(def).unwrap();
        let collection = writer
            .submit(Mutation::CreateCollection(def))
            .await
            .unwrap()
            .collection
            .unwrap();
        let ops = records
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                let data = data.as_object().cloned().unwrap_or_default();
                let created = crate::clock::format_ms(1_700_000_000_000 + i as i64);
                let record = Record::new(&format!("r{i:04}"), &created, &created, None, 1, data);
                RecordOp::Create(NewRecord::prepare(
                    &collection,
                    &record,
                    None,
                    true,
                    crate::access::system(),
                ))
            })
            .collect::<Vec<_>>();
        // One write per record, so each gets its own seq.
        for op in ops {
            writer
                .submit(Mutation::Records {
                    collection: collection.clone(),
                    ops: vec![op],
                    actor: None,
                })
                .await
                .unwrap();
        }
        (dir, store, writer)
    }

    #[tokio::test]
    async fn writes_and_their_changes_get_consecutive_seqs() {
        let (_dir, store, writer) = store_with_records(5).await;
        let seqs: Vec<u64> = store.changes_after(0).map(|c| c.unwrap().seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let collection = store.catalog().get("c").unwrap();
        // A failing request takes no seq: the log keeps no holes.
        let duplicate = Record::new("r0000", "t", "t", None, 1, serde_json::Map::new());
        let fresh = Record::new("fresh", "t", "t", None, 1, serde_json::Map::new());
        let create = |record: &Record| {
            RecordOp::Create(NewRecord::prepare(
                &collection,
                record,
                Some("u1"),
                true,
                crate::access::system(),
            ))
        };
        let failed = writer
            .submit(Mutation::Records {
                collection: collection.clone(),
                ops: vec![create(&fresh), create(&duplicate)],
                actor: None,
            })
            .await;
        assert!(failed.is_err());
        assert!(
            store.get_record(collection.id, "fresh").unwrap().is_none(),
            "all or nothing"
        );
        let done = writer
            .submit(Mutation::Records {
                collection: collection.clone(),
                ops: vec![create(&fresh)],
                actor: Some("u1".into()),
            })
            .await
            .unwrap();
        assert_eq!(done.seqs, Some((6, 6)));
        let change = store.changes_after(5).next().unwrap().unwrap();
        assert_eq!(change.record_id, "fresh");
        assert_eq!(change.actor.as_deref(), Some("u1"));
        assert_eq!(store.record_count(1).unwrap(), 6);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn concurrent_creates_share_a_batch_without_holes_or_duplicates() {
        let (_dir, store, writer) = store_with(serde_json::json!({"name": "c"}), []).await;
        let collection = store.catalog().get("c").unwrap();
        let submits = (0..64).map(|i| {
            // Requests 10 and 11 race for the same client id.
            let id = if i == 11 {
                "r10".to_owned()
            } else {
                format!("r{i}")
            };
            let record = Record::new(&id, "t", "t", None, 1, serde_json::Map::new());
            let op = RecordOp::Create(NewRecord::prepare(
                &collection,
                &record,
                None,
                true,
                crate::access::system(),
            ));
            let writer = writer.clone();
            let collection = collection.clone();
            tokio::spawn(async move {
                writer
                    .submit(Mutation::Records {
                        collection,
                        ops: vec![op],
                        actor: None,
                    })
                    .await
            })
        });
        let mut conflicts = 0;
        for handle in submits.collect::<Vec<_>>() {
            match handle.await.unwrap() {
                Ok(_) => {}
                Err(crate::store::writer::WriteError::Conflict(id)) => {
                    assert_eq!(id, "r10");
                    conflicts += 1;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(conflicts, 1);
        let seqs: Vec<u64> = store.changes_after(0).map(|c| c.unwrap().seq).collect();
        assert_eq!(seqs, (1..=63).collect::<Vec<_>>());
        assert_eq!(store.record_count(collection.id).unwrap(), 63);
        writer.shutdown().await;
    }

    #[tokio::test]
    async fn dropping_a_collection_is_logged_and_purges_its_keys() {
        let (_dir, store, writer) = store_with(
            serde_json::json!({"name": "c", "indexes": ["k"]}),
            (0..50).map(|k| serde_json::json!({"k": k})),
        )
        .await;
        let id = store.catalog().get("c").unwrap().id;
        writer
            .submit(Mutation::DropCollection {
                name: "c".into(),
                actor: Some("admin".into()),
            })
            .await
            .unwrap();
        let last = store.changes_after(50).next().unwrap().unwrap();
        assert_eq!(
            (last.seq, last.kind, last.collection.as_str()),
            (51, change::ChangeKind::DropCollection, "c")
        );
        assert!(store.catalog().get("c").is_none());
        wait_until_purged(&store, id).await;
        writer.shutdown().await;
    }

    fn keys_left(store: &Store, id: u32) -> usize {
        [keys::RECORD, keys::INDEX, keys::COUNT, keys::PURGE]
            .iter()
            .map(|tag| {
                store
                    .data()
                    .scan_prefix(keys::collection_prefix(*tag, id))
                    .count()
            })
            .sum()
    }

    async fn wait_until_purged(store: &Store, id: u32) {
        for _ in 0..200 {
            if keys_left(store, id) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!(
            "{} keys of the dropped collection left",
            keys_left(store, id)
        );
    }

    /// The purge of a dropped collection runs a chunk at a time between
    /// write groups: a write made right after the drop does not wait for
    /// all of it.
    #[tokio::test]
    async fn writes_go_on_while_a_dropped_collection_is_purged() {
        let (_dir, store, writer) = store_with(
            serde_json::json!({"name": "big", "indexes": ["k"]}),
            (0..10_000).map(|k| serde_json::json!({"k": k})),
        )
        .await;
        let def: CollectionDef =
            serde_json::from_value(serde_json::json!({"name": "small"})).unwrap();
        writer
            .submit(Mutation::CreateCollection(def))
            .await
            .unwrap();
        let id = store.catalog().get("big").unwrap().id;
        writer
            .submit(Mutation::DropCollection {
                name: "big".into(),
                actor: None,
            })
            .await
            .unwrap();
        let user = plain_user();
        writer.submit(Mutation::CreateUser(user)).await.unwrap();
        let left = keys_left(&store, id);
        // 30,002 keys in all: each record, its `created` and `k` index
        // entries, the count and the marker.
        assert!(left > 0, "the write waited for the whole purge");
        wait_until_purged(&store, id).await;
        writer.shutdown().await;
    }

    pub(crate) fn plain_user() -> crate::model::User {
        crate::model::User {
            id: "u1".into(),
            email: "a@b.c".into(),
            name: String::new(),
            roles: vec![],
            groups: vec![],
            tenant: None,
            disabled: false,
            created: String::new(),
            password_hash: String::new(),
            generation: 0,
            verified: false,
        }
    }

    async fn durable_after_one_write(durability: Durability, flush_ms: u64, wait_ms: u64) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let writer = Writer::start(store.clone(), durability, flush_ms, None).unwrap();
        let user = plain_user();
        let seq = writer
            .submit(Mutation::CreateUser(user))
            .await
            .unwrap()
            .seqs
            .unwrap()
            .1;
        let mut durable = writer.durable_seq();
        let reached = tokio::time::timeout(
            std::time::Duration::from_millis(wait_ms),
            durable.wait_for(|d| *d >= seq),
        )
        .await
        .is_ok();
        writer.shutdown().await;
        reached
    }

    #[tokio::test]
    async fn sync_answers_only_after_the_fsync() {
        assert!(durable_after_one_write(Durability::Sync, 100, 0).await);
    }

    #[tokio::test]
    async fn relaxed_fsyncs_within_flush_ms_and_not_before() {
        // 10 s, not 100 ms: the point is that it comes without more writes;
        // a loaded machine's fdatasync took over 2 s here.
        assert!(durable_after_one_write(Durability::Relaxed, 100, 10_000).await);
        assert!(!durable_after_one_write(Durability::Relaxed, 60_000, 300).await);
    }
}
