//! The server's shared state: settings, storage, the writer, auth, the
//! fan-out engine and the request log, in one handle that is cheap to
//! clone. Below both transports (`http`, `realtime`) and the services they
//! call.

use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::{Live, Settings};
use crate::fanout::Realtime;
use crate::request_log::RequestLog;
use crate::store::writer::Writer;
use crate::store::Store;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub settings: Settings,
    /// The runtime settings, including changes made while running.
    pub live: Live,
    pub store: Store,
    pub writer: Writer,
    pub auth: Auth,
    pub realtime: Realtime,
    /// Turns true when the server starts shutting down; long-lived
    /// connections watch it and close themselves.
    pub shutdown: watch::Receiver<bool>,
    /// The one-time first-admin code, while no admin exists.
    pub setup_code: Mutex<Option<String>>,
    /// Account mail (`None`: no `smtp_url`, so none is sent).
    pub mailer: Option<Arc<crate::mail::Mailer>>,
    /// The recent HTTP requests, for the admin UI's log page.
    pub requests: RequestLog,
    /// MQTT sessions, over TCP and WebSocket: shutdown waits for them to
    /// save and finish their writes before the writer stops.
    pub mqtt_sessions: tokio_util::task::TaskTracker,
    /// Runs the WebSocket connections (`realtime::runtime`).
    pub realtime_runtime: tokio::runtime::Handle,
    /// Parses and checks large request bodies, a few at a time.
    pub parsers: crate::parse_pool::ParsePool,
    /// Series batches being parsed and written, held to a share of
    /// `cache_mb`.
    pub ingest_budget: crate::ingest_budget::IngestBudget,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}
