//! `serve --demo`: a `readings` collection and a few simulated gateways
//! writing into it, so a new user sees live data in the first minute.
//!
//! The definitions ship in `data/demo/` and are compiled in; `readings` is
//! a series collection. The devices write through the same service as
//! `POST /api/collections/readings/records`, as an in-memory API key with
//! the `device` role, so rules, validation, the change log and realtime
//! all see ordinary writes: one batch per tick, one reading per device.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::Rng as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::Principal;
use crate::services::collections::parse_def;
use crate::services::records;
use crate::state::AppState;
use crate::store::api_keys::ApiKey;
use crate::store::writer::Mutation;

const COLLECTION: &str = include_str!("../data/demo/readings.json");
const DEVICES: &str = include_str!("../data/demo/devices.json");
/// One reading per device per tick.
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, Deserialize)]
struct Device {
    device: String,
    site: String,
    temp: f64,
    humidity: f64,
    battery: f64,
}

/// Creates the demo collection unless a collection of that name exists
/// (a user's own `readings` is left alone). Returns the collection name.
pub async fn install(state: &AppState) -> anyhow::Result<String> {
    let definition: Value = serde_json::from_str(COLLECTION).context("data/demo/readings.json")?;
    let name = definition["name"]
        .as_str()
        .context("data/demo/readings.json has no name")?
        .to_owned();
    if state.store.catalog().get(&name).is_none() {
        let def =
            parse_def(definition).map_err(|e| anyhow::anyhow!("demo collection: {}", e.message))?;
        state
            .writer
            .submit(Mutation::CreateCollection(def))
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the demo collection: {e}"))?;
        tracing::info!(collection = %name, "demo collection created");
    }
    Ok(name)
}

/// How many devices the demo simulates.
pub fn device_count() -> usize {
    serde_json::from_str::<Vec<Device>>(DEVICES).map_or(0, |d| d.len())
}

/// Writes a reading per device every second until `stop`.
pub async fn simulate(state: AppState, collection: String, mut stop: watch::Receiver<bool>) {
    let mut devices: Vec<Device> = match serde_json::from_str(DEVICES) {
        Ok(devices) => devices,
        Err(e) => {
            tracing::error!(error = %e, "data/demo/devices.json is broken; no simulated devices");
            return;
        }
    };
    let principal = Principal::ApiKey(Arc::new(ApiKey {
        id: "demo-devices".into(),
        name: "simulated devices (--demo)".into(),
        roles: vec!["device".into()],
        created: crate::clock::now_rfc3339(),
        expires_ms: None,
        secret_digest: Vec::new(),
    }));
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            _ = ticker.tick() => {}
        }
        let readings: Vec<Value> = devices
            .iter_mut()
            .map(|device| {
                step(device);
                json!({
                    "device": device.device, "site": device.site,
                    "temp": round1(device.temp), "humidity": round1(device.humidity),
                    "battery": round1(device.battery),
                })
            })
            .collect();
        match write(&state, &principal, &collection, readings).await {
            Ok(()) => {}
            // The collection was dropped, reshaped or is the user's own:
            // every later reading would be refused too.
            Err(e) if e.status.is_client_error() => {
                tracing::warn!(%collection, error = %e.message, "the demo devices stop: their readings are refused");
                return;
            }
            Err(e) => tracing::warn!(error = %e.message, "simulated readings were not written"),
        }
    }
}

async fn write(
    state: &AppState,
    principal: &Principal,
    collection: &str,
    readings: Vec<Value>,
) -> Result<(), crate::error::ApiError> {
    records::create(state, principal, collection, readings, true)
        .await
        .map(|_| ())
}

/// A slow random walk with the odd spike, so charts have something to show.
fn step(device: &mut Device) {
    let mut rng = rand::thread_rng();
    device.temp = (device.temp + rng.gen_range(-0.3..0.3)).clamp(-40.0, 60.0);
    if rng.gen_bool(0.02) {
        device.temp += rng.gen_range(2.0..6.0);
    }
    device.humidity = (device.humidity + rng.gen_range(-0.8..0.8)).clamp(5.0, 99.0);
    device.battery = (device.battery - rng.gen_range(0.0..0.01)).max(5.0);
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_definitions_parse() {
        let definition: Value = serde_json::from_str(COLLECTION).unwrap();
        assert!(parse_def(definition).is_ok());
        assert!(device_count() >= 3);
    }

    #[test]
    fn readings_stay_inside_the_schema_bounds() {
        let mut devices: Vec<Device> = serde_json::from_str(DEVICES).unwrap();
        for _ in 0..10_000 {
            for d in &mut devices {
                step(d);
                assert!((-60.0..=90.0).contains(&d.temp), "{d:?}");
                assert!((0.0..=100.0).contains(&d.humidity), "{d:?}");
                assert!((0.0..=100.0).contains(&d.battery), "{d:?}");
            }
        }
    }
}
