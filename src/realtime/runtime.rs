//! The runtime that runs WebSocket connections and SSE streams, apart
//! from the one that answers HTTP requests, on worker threads of lower priority
//! ([`crate::priority`]): a write request no longer waits in the same run
//! queue as a thousand connection tasks writing events.

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// The connection runtime. Dropping it (on any way out of the server,
/// errors included) stops its threads without waiting: dropping a tokio
/// runtime in async code the usual way would block, which tokio refuses.
pub struct Connections {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Connections {
    /// One worker per core, with I/O and timers.
    pub fn start() -> io::Result<Connections> {
        let workers = crate::fanout::pacing::delivery_threads();
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("pulsebase-live")
            .on_thread_start(crate::priority::lower_current_thread)
            .enable_all()
            .build()?;
        Ok(Connections {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
