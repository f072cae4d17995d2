//! The reindex suite: write latency while `PATCH /api/collections/big`
//! adds an index on `device` to a large collection. It is the drop suite
//! (`drop.rs`) with another request in the DELETE's place, so the schedule,
//! the windows and the report are the same; only the request and the
//! report's words differ. The job's end is the later of the PATCH's answer
//! (both the one-step update of 6bf810f and the chunked migration answer
//! once every record is checked and indexed) and the writer thread going
//! quiet.

use hyper::Method;
use serde_json::{json, Value};

/// What is done to `big` while the writes go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Job {
    /// `DELETE /api/collections/big`.
    Drop,
    /// `PATCH /api/collections/big` adding an index on `device`.
    Reindex,
}

impl Job {
    pub fn name(self) -> &'static str {
        match self {
            Job::Drop => "drop",
            Job::Reindex => "reindex",
        }
    }

    /// The request that starts the job.
    pub fn request(self) -> (Method, Option<Value>) {
        match self {
            Job::Drop => (Method::DELETE, None),
            Job::Reindex => (Method::PATCH, Some(json!({"indexes": ["device"]}))),
        }
    }

    /// The drop report, told of this job.
    pub fn reword(self, md: String) -> String {
        match self {
            Job::Drop => md,
            Job::Reindex => md
                .replace(
                    "`DELETE /api/collections/big` (admin)",
                    "`PATCH /api/collections/big` with `{\"indexes\": [\"device\"]}` (admin; \
                     `device` takes 500 values, so the new index has one entry per record)",
                )
                .replace("DELETE", "PATCH")
                .replace("purge", "reindex")
                .replace("baseline / drop", "baseline / reindex"),
        }
    }
}
