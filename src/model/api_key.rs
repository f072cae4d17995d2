//! An API key as the server keeps it (the secret only as a digest).

use serde::{Deserialize, Serialize};

/// A device's or backend's credential: it acts with its roles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub created: String,
    /// Epoch ms after which the key no longer works.
    pub expires_ms: Option<i64>,
    pub secret_digest: Vec<u8>,
}
