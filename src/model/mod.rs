//! Domain types: collections and their schemas, records, users. Nothing here
//! knows about HTTP or sled.

pub mod api_key;
pub mod collection;
pub mod principal;
pub mod record;
pub mod series;
pub mod user;

pub use api_key::ApiKey;
pub use collection::{Collection, CollectionDef, FieldErrors};
pub use principal::Principal;
pub use record::Record;
pub use user::{User, UserChanges};
