//! What REST and the realtime transports both do, free of either: the
//! error every caller gets, records, topics, and reading credentials.
//! A transport parses its own framing and calls these.

pub mod collections;
pub mod credentials;
pub mod records;
pub mod topics;
