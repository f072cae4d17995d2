//! What REST and the realtime transports do, free of either: records,
//! topics and their presence, collections, users, API keys, settings,
//! stats, the request log, signing in and out, and reading credentials. A
//! transport parses its own framing, calls these, and renders what they
//! answer (or the
//! [`ApiError`](crate::error::ApiError) they refuse with).
//!
//! The admin-only services take an [`AdminPermit`](crate::access::AdminPermit),
//! which only the access check makes: a transport cannot reach them without
//! having checked.

pub mod account_mail;
pub mod accounts;
pub mod collections;
pub mod credentials;
pub mod items;
pub mod keys;
pub mod logs;
pub mod presence;
pub mod records;
pub mod series;
pub mod settings;
pub mod stats;
pub mod topics;
pub mod users;

#[cfg(test)]
mod testing;
