//! Domain types: collections and their schemas, records, users. Nothing here
//! knows about HTTP or sled.

pub mod collection;
pub mod record;
pub mod user;

pub use collection::{Collection, CollectionDef, FieldErrors};
pub use record::Record;
pub use user::{User, UserChanges};
