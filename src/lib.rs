//! pulsebase: a realtime backend in one binary.
//!
//! The rooms, in layers from the disk up; each imports only from layers
//! below it (`.ci/import_cycles.py` keeps it so):
//! 1. [`rules`] (the expression language), [`model`] (collections, records,
//!    users, API keys, the principal a request acts as), [`visibility`]
//!    (the one decision of what a viewer sees of a record), [`access`]
//!    (who may write what; the permits writes and admin services require),
//!    [`series`] (series collections: the block codec, summaries,
//!    aggregation and the InfluxDB line protocol parser, free of storage
//!    and transports).
//! 2. [`store`]: the only code that touches sled. Key layouts, versioned
//!    envelopes, listing, the change log, and the single [`store::writer`]
//!    that orders every write and makes it durable in groups.
//! 3. [`auth`]: passwords, tokens, sessions, API keys over the store;
//!    [`error`]: the one error shape every caller gets; [`limits`]: caps
//!    and rates that hold under abuse; [`ingest_budget`]: how much of
//!    series batches is in memory at once; [`protocol`]: every realtime wire
//!    message as a type (client actions, server messages, SSE payloads);
//!    [`mail`]: account mail over SMTP.
//! 4. [`fanout`]: the hub that delivers changes and messages to exactly
//!    the subscribers allowed to see them, replay, and presence (who is
//!    subscribed to the topics that track it).
//! 5. [`state`]: the shared handle (settings, store, writer, auth, fan-out).
//! 6. [`services`]: what the transports do, free of any of them: records,
//!    topics, collections, users, API keys, settings, stats, signing in
//!    and out, credentials. They take the state, a principal or permit and plain
//!    input, and answer domain values or an [`error::ApiError`].
//! 7. Transports: [`http`] (the axum router, one file per resource: extract,
//!    call a service, render), [`realtime`] (the WebSocket and SSE
//!    protocol) and [`mqtt`] (MQTT 3.1.1 and 5.0 over TCP).
//! 8. [`server`] (wiring and shutdown), [`retention`], [`demo`], [`cli`];
//!    [`config`], [`clock`], [`ids`], [`metrics`], [`peer`] (how long a
//!    write to a client may take), [`request_log`] (the
//!    recent requests, in memory, for the admin UI) and [`assets`] (the
//!    embedded web files) serve every layer.

pub mod access;
pub mod assets;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod http;
pub mod ids;
pub mod ingest_budget;
pub mod limits;
pub mod mail;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod parse_pool;
pub mod peer;
pub mod priority;
pub mod protocol;
pub mod realtime;
pub mod request_log;
pub mod retention;
pub mod rules;
pub mod series;
pub mod server;
pub mod services;
pub mod state;
pub mod store;
pub mod visibility;
