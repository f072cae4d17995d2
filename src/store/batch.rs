//! Every write to the `data` tree goes through [`Store::apply`], with a
//! [`Batch`] that remembers the keys it writes.
//!
//! Why: a live backup copies the tree a chunk at a time while writes go on
//! (`backup::live`), and must still hold the tree exactly as it was when it
//! began. So before a write lands, the keys it is about to change that the
//! copy has not reached yet have their old values saved
//! (`backup::preimages`); the copy uses those instead of what it finds.
//! `sled::Batch` does not tell which keys it holds, hence this wrapper. A
//! write that went around it would reach a running backup half-done:
//! `only_the_store_applies_batches_to_data` below refuses code that calls
//! sled's `apply_batch` anywhere else in `src/store`.

use sled::IVec;

use super::Store;

/// A `sled::Batch` plus the keys it writes.
#[derive(Default)]
pub struct Batch {
    inner: sled::Batch,
    keys: Vec<IVec>,
}

impl Batch {
    pub fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        let key = key.into();
        self.keys.push(key.clone());
        self.inner.insert(key, value);
    }

    pub fn remove(&mut self, key: impl Into<IVec>) {
        let key = key.into();
        self.keys.push(key.clone());
        self.inner.remove(key);
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Store {
    /// Applies `batch` to the `data` tree atomically. While a live backup
    /// runs, the old values of the keys it has not copied yet are saved
    /// first, under the same lock the copy takes for each chunk, so the copy
    /// never sees a write by half.
    pub(crate) fn apply(&self, batch: Batch) -> Result<(), sled::Error> {
        let mut copying = self.copying.lock();
        if let Some(preimages) = copying.as_mut() {
            preimages.save(&self.data, &batch.keys);
        }
        self.data.apply_batch(batch.inner)
    }

    /// One key, through [`Store::apply`].
    pub(crate) fn put(
        &self,
        key: impl Into<IVec>,
        value: impl Into<IVec>,
    ) -> Result<(), sled::Error> {
        let mut batch = Batch::default();
        batch.insert(key, value);
        self.apply(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// A write to `data` that bypasses `Store::apply` would not be seen by a
    /// running backup. Restore (a fresh, private database) and the
    /// open-time upgrades (before any backup can run) are the exceptions.
    #[test]
    fn only_the_store_applies_batches_to_data() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
        let mut offenders = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read src/store") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let relative = path.strip_prefix(&root).expect("under src/store");
                if relative == Path::new("batch.rs") || relative.starts_with("backup") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                if text.contains(".apply_batch(") || text.contains("sled::Batch") {
                    offenders.push(relative.display().to_string());
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "write to `data` with store::Batch and Store::apply: {offenders:?}"
        );
    }
}
