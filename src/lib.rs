//! pulsebase: a realtime backend in one binary.
//!
//! The rooms, from the disk up:
//! - [`store`]: the only code that touches sled. Key layouts, the versioned
//!   envelopes, listing with indexes and cursors, and the single [`store::writer`]
//!   that orders every write, logs it in the change log and fsyncs in groups.
//! - [`model`]: collections (schema and validation), records and users, free
//!   of HTTP and storage.
//! - [`rules`]: the expression language of rules and filters.
//! - [`visibility`]: the one decision of what a viewer sees of a record,
//!   made the same way on every path (REST, WebSocket, SSE, replay).
//! - [`access`]: who may write what, on top of `rules`.
//! - [`auth`]: passwords, tokens and the principal a request acts as.
//! - [`http`]: the axum router, one file per resource, and the error shape.
//! - [`realtime`]: the hub that fans changes and messages out to WebSocket
//!   and SSE subscribers, and the protocol they speak.
//! - [`assets`]: the web files compiled into the binary (the JavaScript
//!   client; the admin UI).
//! - [`retention`]: the background task that expires old records.
//! - [`server`]: wiring and shutdown; [`config`]: settings; [`demo`]: the
//!   `--demo` collection and simulated devices.

pub mod access;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod realtime;
pub mod retention;
pub mod rules;
pub mod server;
pub mod store;
pub mod visibility;
