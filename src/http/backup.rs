//! `GET /api/backup` (admins): a consistent backup of the whole database,
//! streamed as a file `pulsebase restore` reads.
//!
//! The backup is written first to a temporary file in the data dir, then
//! streamed from it. It is taken a chunk at a time while writes go on (see
//! `store::backup::live`): writes are not held for the copy. The file is
//! unlinked as soon as it is open, so nothing is left behind by a crash or
//! a dropped download.
//!
//! The copy never takes the disk's last [`DISK_RESERVE`] bytes: sled
//! refuses every write after one failed flush until the process restarts,
//! so a backup must not be what fills the disk.

use std::io::{self, Seek as _, SeekFrom, Write};
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ApiResult};
use super::extract::Admin;
use super::AppState;
pub use crate::store::backup::live::DISK_RESERVE;
use crate::store::backup::live::{self, ensure_room};
use crate::store::backup::BackupError;

/// Free space is looked at again after this many bytes of copy.
const CHECK_EVERY: u64 = 4 << 20;

pub async fn download(State(state): State<AppState>, Admin(who): Admin) -> ApiResult<Response> {
    let data = state.settings.data.clone();
    let scratch = data.join(format!(".backup-{}.tmp", crate::ids::generate()));
    ensure_room(&data, DISK_RESERVE).map_err(|e| unavailable(&e.into()))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&scratch)
        .map_err(|e| unavailable(&e.into()))?;
    let _ = std::fs::remove_file(&scratch);
    let mut file = Reserved {
        file,
        dir: data.clone(),
        unchecked: 0,
    };
    let started = std::time::Instant::now();
    let store = state.store.clone();
    let options = live::Options::new(&data);
    let shutdown = state.shutdown.clone();
    let (file, summary, stats) = tokio::task::spawn_blocking(move || {
        // No fsync: the scratch copy only has to outlive this request.
        let go_on = || !*shutdown.borrow();
        let (summary, stats) = live::write(&store, &mut file, &options, go_on)?;
        let mut file = file.file;
        file.seek(SeekFrom::Start(0))?;
        Ok::<_, BackupError>((file, summary, stats))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| unavailable(&e))?;
    let size = file.metadata().map_err(ApiError::internal)?.len();
    tracing::info!(
        admin = %who.id().unwrap_or_default(),
        entries = summary.entries,
        bytes = size,
        took_ms = started.elapsed().as_millis() as u64,
        chunks = stats.chunks,
        longest_hold_ms = stats.longest_hold.as_millis() as u64,
        saved_for_backup = stats.saved,
        "backup taken"
    );
    let name = format!(
        "pulsebase-{}.pbbackup",
        crate::clock::now_rfc3339().replace([':', '-', '.'], "")
    );
    let body = Body::from_stream(ReaderStream::new(tokio::fs::File::from_std(file)));
    Ok((
        [
            (CONTENT_TYPE, "application/octet-stream".to_owned()),
            (CONTENT_LENGTH, size.to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Disk full or unwritable: the contract's 503, and the server goes on.
fn unavailable(error: &BackupError) -> ApiError {
    tracing::error!(%error, "backup failed");
    ApiError::unavailable(format!("the backup could not be written: {error}"))
}

/// The scratch file, stopping before the disk runs low.
struct Reserved {
    file: std::fs::File,
    dir: PathBuf,
    unchecked: u64,
}

impl Write for Reserved {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.unchecked >= CHECK_EVERY {
            ensure_room(&self.dir, DISK_RESERVE)?;
            self.unchecked = 0;
        }
        let n = self.file.write(buf)?;
        self.unchecked += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
