//! Packaging (issue 6): the example `pulsebase.toml`, the environment file,
//! the systemd unit, the container's health check and the .deb metadata are
//! checked against the real binary, systemd's own tools and
//! docs/configuration.md, so they cannot drift apart unnoticed.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod container;
mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{client, send, Options, TestServer};

const EXAMPLE: &str = "data/pulsebase.example.toml";
const UNIT: &str = "packaging/pulsebase.service";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A `#key = value` line of the example (prose comments start with `# `):
/// the key and the value as TOML text.
fn setting_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.strip_prefix('#')?.split_once('=')?;
    let key = key.trim_end();
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    is_key.then(|| (key, value.trim()))
}

/// The example's settings, in file order.
fn example_settings() -> Vec<(String, String)> {
    read(EXAMPLE)
        .lines()
        .filter_map(setting_line)
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The example with every setting line uncommented.
fn example_uncommented() -> String {
    read(EXAMPLE)
        .lines()
        .map(|line| match setting_line(line) {
            Some(_) => &line[1..],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// docs/configuration.md's settings table: toml key → default column, for
/// the rows that have a toml key.
fn documented_settings() -> BTreeMap<String, String> {
    let text = read("docs/configuration.md");
    let mut rows = text
        .lines()
        .skip_while(|line| !line.starts_with("| setting |"))
        .take_while(|line| line.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let header = cells(
        rows.next()
            .expect("docs/configuration.md has no settings table"),
    );
    let column = |name: &str| {
        header
            .iter()
            .position(|cell| cell == name)
            .unwrap_or_else(|| panic!("the settings table has no `{name}` column: {header:?}"))
    };
    let (key_at, default_at) = (column("toml key"), column("default"));
    rows.skip(1) // the |---| line
        .map(cells)
        .filter(|row| row[key_at] != "(n/a)")
        .map(|row| {
            (
                row[key_at].trim_matches('`').to_owned(),
                row[default_at].clone(),
            )
        })
        .collect()
}

/// A default written as one code span (`100`, `@user != null`), unquoted;
/// `None` for prose such as "unset".
fn literal_default(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// A TOML value as the docs table writes it.
fn as_documented(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The example, every line uncommented, is a pulsebase.toml the real server
/// starts with; each setting takes effect from the file, at its default.
#[tokio::test]
async fn example_config_with_every_setting_uncommented_starts_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let uncommented = example_uncommented();
    std::fs::write(data.join("pulsebase.toml"), &uncommented).unwrap();
    let table: toml::Table = toml::from_str(&uncommented).expect("the uncommented example is TOML");
    let keys: Vec<String> = example_settings().into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        table.len(),
        keys.len(),
        "every setting line became a key: {keys:?}"
    );

    // `start_in` passes `--http 127.0.0.1:0`: a flag wins over the file's
    // `http`. If the server refuses a key it exits, and the error it printed
    // on stderr names the key (e.g. `metrics_token` before the binary knew it).
    let mut server = TestServer::start_in(&data, Options::default());
    let (status, health) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");

    let admin = server.admin_token().await;
    let (status, settings) = send(
        client()
            .get(server.url("/api/settings"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    let documented = documented_settings();
    for key in &keys {
        // Settings without a literal default (a secret such as the metrics
        // token) carry a placeholder in the example: acceptance is the check.
        if key == "http"
            || documented
                .get(key)
                .and_then(|d| literal_default(d))
                .is_none()
        {
            continue;
        }
        let shown = &settings[key.as_str()];
        let written = serde_json::to_value(&table[key.as_str()]).unwrap();
        assert_eq!(shown["value"], written, "{key}: the server shows {shown}");
        if shown["runtime"] == true {
            assert_eq!(
                shown["source"], "file",
                "{key} was not read from the file: {shown}"
            );
            assert_eq!(
                shown["default"], written,
                "{key}: the example's value is not the server's default"
            );
        }
    }
    assert!(
        server.terminate(),
        "the server did not exit cleanly on SIGTERM"
    );
}

/// The example holds exactly the toml keys of docs/configuration.md's table,
/// with the defaults the table gives.
#[test]
fn example_config_and_configuration_doc_have_the_same_keys_and_defaults() {
    let example: BTreeMap<String, String> = example_settings().into_iter().collect();
    let documented = documented_settings();
    assert!(
        documented.len() >= 10,
        "the settings table was not parsed: {documented:?}"
    );
    let missing: Vec<_> = documented
        .keys()
        .filter(|k| !example.contains_key(*k))
        .collect();
    let extra: Vec<_> = example
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not in {EXAMPLE}: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "in {EXAMPLE} but not in docs/configuration.md: {extra:?}"
    );
    assert_eq!(
        example_settings().len(),
        example.len(),
        "a key appears twice in {EXAMPLE}"
    );
    for (key, cell) in &documented {
        let Some(default) = literal_default(cell) else {
            continue;
        };
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", example[key]))
            .unwrap_or_else(|e| panic!("{key} in {EXAMPLE}: {e}"))
            .remove("v")
            .unwrap();
        assert_eq!(
            as_documented(&value),
            default,
            "{key}: {EXAMPLE} and docs/configuration.md give different defaults"
        );
    }
}

/// Every variable in the environment file is one the binary reads: a flag's
/// variable (from `pulsebase serve --help`) or one documented for start-up
/// and logging.
#[test]
fn environment_file_names_only_real_variables() {
    let env_file = read("packaging/pulsebase.env");
    let variables: BTreeSet<&str> = env_file
        .lines()
        .map(|line| line.trim_start_matches('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            name.starts_with("PULSEBASE_")
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    assert!(variables.contains("PULSEBASE_HTTP"), "{variables:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args(["serve", "--help"])
        .output()
        .expect("run pulsebase serve --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let docs = read("docs/configuration.md");
    for name in variables {
        // `[env: NAME=]` in clap's help; the others are read directly and
        // documented in prose.
        let by_flag = help.contains(&format!("[env: {name}="));
        let documented = docs.contains(&format!("`{name}`"));
        assert!(
            by_flag || documented,
            "packaging/pulsebase.env names {name}, which neither `pulsebase serve --help` nor docs/configuration.md knows"
        );
    }
}
