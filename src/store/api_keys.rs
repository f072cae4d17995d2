//! API keys, in the `auth` tree under `k` + key id. Only a SHA-256 digest
//! of the secret is kept: secrets are 256 random bits, so a slow hash would
//! add cost without adding safety.

use super::{codec, Store, StoreError};

pub use crate::model::ApiKey;

fn key(id: &str) -> Vec<u8> {
    let mut key = vec![b'k'];
    key.extend_from_slice(id.as_bytes());
    key
}

impl Store {
    /// Stores a key durably: a device given the secret must be able to use
    /// it after a crash.
    pub fn put_api_key(&self, api_key: &ApiKey) -> Result<(), StoreError> {
        self.auth.insert(key(&api_key.id), codec::encode(api_key))?;
        self.flush()?;
        Ok(())
    }

    pub fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        match self.auth.get(key(id))? {
            Some(bytes) => codec::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        self.auth
            .scan_prefix([b'k'])
            .map(|entry| codec::decode(&entry?.1))
            .collect()
    }

    /// Revokes (removes) a key; false when there was none.
    pub fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let existed = self.auth.remove(key(id))?.is_some();
        self.flush()?;
        Ok(existed)
    }
}
