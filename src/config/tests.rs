//! Settings from flags, environment and `pulsebase.toml`.

use super::*;
use std::time::Duration;

#[test]
fn flags_win_over_file_and_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pulsebase.toml"),
        "durability = \"relaxed\"\nflush_ms = 250\nmax_batch = 5\nheartbeat = \"10s\"\n",
    )
    .unwrap();
    let args = ServeArgs {
        data: Some(dir.path().to_owned()),
        max_batch: Some(7),
        ..ServeArgs::default()
    };
    let settings = Settings::resolve(&args).unwrap();
    assert_eq!(settings.durability, Durability::Relaxed);
    assert_eq!(settings.flush_ms, 250);
    assert_eq!(settings.tunables.max_batch, 7);
    assert_eq!(settings.sources["max_batch"], Source::Startup);
    assert_eq!(settings.tunables.token_ttl, Duration::from_secs(3600));
    assert_eq!(settings.http.to_string(), "127.0.0.1:7070");
    assert_eq!(settings.tunables.heartbeat, Duration::from_secs(10));
    assert_eq!(settings.sources["heartbeat"], Source::File);
    assert!(!settings.sources.contains_key("outbox"));
}

#[test]
fn mqtt_is_off_until_given_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let args = ServeArgs {
        data: Some(dir.path().to_owned()),
        ..ServeArgs::default()
    };
    let settings = Settings::resolve(&args).unwrap();
    assert_eq!(settings.mqtt, None);
    assert!(!settings.mqtt_anonymous);
    std::fs::write(
        dir.path().join("pulsebase.toml"),
        "mqtt = \"0.0.0.0:1883\"\nmqtt_anonymous = true\n",
    )
    .unwrap();
    let settings = Settings::resolve(&args).unwrap();
    assert_eq!(
        settings.mqtt.map(|a| a.to_string()).as_deref(),
        Some("0.0.0.0:1883")
    );
    assert!(settings.mqtt_anonymous);
    let args = ServeArgs {
        mqtt: Some("1883".into()),
        ..args
    };
    let err = Settings::resolve(&args).unwrap_err().to_string();
    assert!(err.contains("mqtt"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let args = ServeArgs {
        durability: Some("fast".into()),
        data: Some(PathBuf::from("/nonexistent-pulsebase")),
        ..ServeArgs::default()
    };
    let err = Settings::resolve(&args).unwrap_err().to_string();
    assert!(err.contains("durability"), "{err}");
}

#[test]
fn unknown_file_keys_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pulsebase.toml"), "durabilty = \"sync\"\n").unwrap();
    let args = ServeArgs {
        data: Some(dir.path().to_owned()),
        ..ServeArgs::default()
    };
    let err = Settings::resolve(&args).unwrap_err().to_string();
    assert!(err.contains("unknown setting `durabilty`"), "{err}");
    // Every key is offered, the runtime ones included.
    for key in ["durability", "max_batch", "heartbeat", "metrics_token"] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn bad_runtime_settings_in_the_file_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pulsebase.toml"), "outbox = 0\n").unwrap();
    let args = ServeArgs {
        data: Some(dir.path().to_owned()),
        ..ServeArgs::default()
    };
    let err = Settings::resolve(&args).unwrap_err().to_string();
    assert!(err.contains("outbox"), "{err}");
}
