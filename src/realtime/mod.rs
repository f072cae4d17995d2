//! Realtime transports: the client protocol (`session`) over WebSocket
//! (`ws`) and SSE (`sse`). They turn
//! requests into calls of the services and the fan-out engine
//! ([`crate::fanout`]), which delivers events into each connection's
//! outbox.

pub mod runtime;
pub mod session;
pub mod socket;
pub mod sse;
mod sse_event;
pub mod upgrade;
pub mod ws;
