//! Every realtime wire message, as types: what WebSocket clients send
//! ([`client`]), what the server sends over WebSocket and SSE ([`server`]),
//! and the `details` of the realtime errors; and the request log's entries
//! ([`requests`], documented in docs/api.md). docs/realtime.md is the
//! contract; `tests.rs` pins each type to the JSON it documents.
//!
//! This module sits low: it knows the model and the error shape, nothing of
//! the hub, the services or the transports, so all of them can speak it.
//! Server messages borrow what they show and are serialized once: an event
//! is written to bytes once per change and the bytes are shared by every
//! subscriber (see `fanout::render`).

pub mod client;
pub mod requests;
pub mod server;

#[cfg(test)]
mod presence_tests;
#[cfg(test)]
mod tests;

pub use client::{ClientMessage, Rejected, Request};
pub use server::ServerMessage;
