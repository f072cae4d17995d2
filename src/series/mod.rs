//! Series collections (`kind: "series"`, in progress): sensor readings
//! stored as packed blocks. A write group's readings of one collection
//! become one immutable, column-encoded block plus a small [`Summary`] kept
//! beside it, so queries and aggregates can skip or answer whole blocks;
//! [`line_protocol`] parses and writes InfluxDB line protocol;
//! [`aggregate`] computes time-bucketed aggregates over readings and
//! blocks, and [`live`] closes buckets for subscriptions as time passes.
//!
//! This layer is pure: bytes in, values out. It knows nothing of sled, the
//! writer or HTTP (not wired in yet; see docs/architecture.md).

pub mod aggregate;
mod block;
mod columns;
mod fields;
pub mod line_protocol;
pub mod live;
mod summary;
mod summary_codec;
mod wire;

#[cfg(test)]
mod measure;
#[cfg(test)]
mod tests;

pub use aggregate::{AggregateError, AggregateQuery, Aggregator, BlockPlan, Bucket, DecodedBlock};
pub use block::{
    decode, encode, BlockReader, DecodeError, EncodeError, FieldColumn, Reading, TypedColumn,
    TypedValues, Value, FORMAT_VERSION, PCO_LEVEL,
};
pub use fields::Fields;
pub use live::{BucketSpec, LiveBuckets};
pub use summary::{
    FieldStats, FieldStatsRef, LastReading, SeriesStats, SeriesSummary, Summary, SummaryError,
    SummaryStats, SUMMARY_VERSION,
};
