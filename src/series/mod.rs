//! Series blocks: the storage codec for `kind: "series"` collections
//! (SPEC §10, issue 13). A write group's readings of one collection become
//! one immutable, column-encoded block plus a small [`Summary`] kept beside
//! it, so queries and aggregates can skip or answer whole blocks.
//!
//! This layer is pure: bytes in, bytes out. It knows nothing of sled, the
//! writer or HTTP (not wired in yet; see docs/architecture.md).

mod block;
mod columns;
mod summary;
mod wire;

#[cfg(test)]
mod measure;
#[cfg(test)]
mod tests;

pub use block::{
    decode, encode, BlockReader, DecodeError, EncodeError, FieldColumn, Reading, Value,
    FORMAT_VERSION, PCO_LEVEL,
};
pub use summary::{FieldStats, LastReading, SeriesSummary, Summary, SummaryError, SUMMARY_VERSION};
