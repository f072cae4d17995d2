//! Series collections (SPEC §10): readings in time order; `line_protocol` parses InfluxDB line protocol.

pub mod line_protocol;
