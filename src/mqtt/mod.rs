//! MQTT 3.1.1 and 5.0 (docs/mqtt.md). A transport beside [`crate::http`]
//! and [`crate::realtime`].
//!
//! - [`codec`]: framing over the codec crate, one view of both versions.

pub mod codec;
