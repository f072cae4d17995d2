//! An `AppState` for unit tests of the services, without a server.

use std::sync::Mutex;

use serde_json::{json, Map};
use tokio::sync::watch;

use crate::auth::{Auth, Principal};
use crate::config::{Live, Settings};
use crate::error::{ApiError, ApiResult};
use crate::fanout::Wiring;
use crate::model::User;
use crate::state::{AppState, Shared};
use crate::store::tests::{plain_user, store_with};

/// An `AppState` over a store holding collection `c` with `records`
/// records (changes 1..=records). The writer has no taps into the hub:
/// only what the store records matters here.
pub async fn state_with_records(records: usize) -> (tempfile::TempDir, AppState) {
    let (dir, store, writer) =
        store_with(json!({"name": "c"}), (0..records).map(|_| json!({}))).await;
    let settings = Settings::for_data_dir(dir.path());
    let live = Live::new(
        settings.tunables.clone(),
        settings.sources.clone(),
        Map::new(),
    );
    let first_seq = *writer.committed_seq().borrow() + 1;
    let realtime = Wiring::new(&store)
        .start(store.clone(), first_seq, live.clone())
        .unwrap();
    let auth = Auth::new(store.clone(), live.clone(), writer.clone()).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let state = AppState::new(Shared {
        settings,
        live,
        store,
        writer,
        auth,
        realtime,
        shutdown,
        setup_code: Mutex::new(None),
        mailer: None,
        requests: Default::default(),
        mqtt_sessions: Default::default(),
        parsers: crate::parse_pool::ParsePool::with_threads(2).unwrap(),
        ingest_budget: crate::ingest_budget::IngestBudget::for_cache(
            crate::store::DEFAULT_CACHE_BYTES,
        ),
        realtime_runtime: tokio::runtime::Handle::current(),
    });
    (dir, state)
}

/// An `AppState` holding an empty series collection `readings` (source
/// `device`, field `temp`).
pub async fn state_with_series() -> (tempfile::TempDir, AppState) {
    let (dir, state) = state_with_records(0).await;
    let permit = crate::access::admin(admin()).expect("an admin");
    let def = json!({"name": "readings", "kind": "series", "series": "device",
        "fields": {"device": {"type": "string"}, "temp": {"type": "number"}}});
    crate::services::collections::create(&state, &permit, def)
        .await
        .expect("a series collection");
    (dir, state)
}

/// [`state_with_series`] with one block per reading: `readings` ingests of
/// one reading each, from source `a`, `temp` 0, 1, ... Under eight, the
/// writer merges none of them by itself.
pub async fn state_with_blocks(readings: u32) -> (tempfile::TempDir, AppState) {
    let (dir, state) = state_with_series().await;
    for temp in 0..readings {
        let reading = vec![json!({"device": "a", "temp": temp})];
        let options = crate::services::series::IngestOptions::default();
        crate::services::series::ingest(&state, &admin(), "readings", reading, 64, options)
            .await
            .expect("ingested");
    }
    (dir, state)
}

/// An admin user, as services see whoever is signed in.
pub fn admin() -> Principal {
    let admin = User {
        id: "admin".into(),
        email: "admin@example.com".into(),
        roles: vec!["admin".into()],
        ..plain_user()
    };
    Principal::User(std::sync::Arc::new(admin))
}

/// The error of a result expected to be a refusal.
pub fn refused<T>(result: ApiResult<T>) -> ApiError {
    match result {
        Ok(_) => panic!("expected a refusal"),
        Err(error) => error,
    }
}

pub async fn stop(state: AppState) {
    state.realtime.stop().await;
    state.writer.shutdown().await;
}
