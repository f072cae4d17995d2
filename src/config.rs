//! Settings: flags, then `PULSEBASE_*` environment variables, then an optional
//! `pulsebase.toml` in the data dir, then the defaults of SPEC §9.
//!
//! clap resolves flag-over-env; the TOML file and the defaults fill whatever
//! is still unset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::clock::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "pulsebase",
    version,
    about = "A realtime backend in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default when no command is given).
    Serve(ServeArgs),
    /// Administer the data dir directly (the server must not be running).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin user.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long, env = "PULSEBASE_DATA")]
        data: Option<PathBuf>,
    },
}

/// Every setting that can come from a flag or the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7070]
    #[arg(long, env = "PULSEBASE_HTTP")]
    pub http: Option<String>,
    /// Data directory [default: ./pulsebase_data]
    #[arg(long, env = "PULSEBASE_DATA")]
    pub data: Option<PathBuf>,
    /// `sync` (2xx after fsync) or `relaxed` (2xx first, fsync within flush_ms) [default: sync]
    #[arg(long, env = "PULSEBASE_DURABILITY")]
    pub durability: Option<String>,
    /// Relaxed-mode flush interval in milliseconds [default: 100]
    #[arg(long, env = "PULSEBASE_FLUSH_MS")]
    pub flush_ms: Option<u64>,
    /// Access token lifetime, e.g. 1h [default: 1h]
    #[arg(long, env = "PULSEBASE_TOKEN_TTL")]
    pub token_ttl: Option<String>,
    /// Refresh token lifetime, e.g. 30d [default: 30d]
    #[arg(long, env = "PULSEBASE_REFRESH_TTL")]
    pub refresh_ttl: Option<String>,
    /// Allow self sign-up [default: false]
    #[arg(long, env = "PULSEBASE_ALLOW_SIGNUP")]
    pub allow_signup: Option<bool>,
    /// Largest request body in bytes [default: 16777216]
    #[arg(long, env = "PULSEBASE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most records in one batch create [default: 10000]
    #[arg(long, env = "PULSEBASE_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Change-log entries always kept [default: 1000000]
    #[arg(long, env = "PULSEBASE_CHANGELOG_RETAIN")]
    pub changelog_retain: Option<u64>,
}

/// The optional `pulsebase.toml`; every key mirrors a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http: Option<String>,
    durability: Option<String>,
    flush_ms: Option<u64>,
    token_ttl: Option<String>,
    refresh_ttl: Option<String>,
    allow_signup: Option<bool>,
    max_body_bytes: Option<usize>,
    max_batch: Option<usize>,
    changelog_retain: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Sync,
    Relaxed,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: SocketAddr,
    pub data: PathBuf,
    pub durability: Durability,
    pub flush_ms: u64,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub allow_signup: bool,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub changelog_retain: u64,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid value for {setting}: {value:?} ({expected})")]
    Invalid {
        setting: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Settings, SettingsError> {
        let data = args
            .data
            .clone()
            .unwrap_or_else(|| PathBuf::from("pulsebase_data"));
        let file = read_file_settings(&data)?;

        let http_text = args
            .http
            .clone()
            .or(file.http)
            .unwrap_or_else(|| "127.0.0.1:7070".to_owned());
        let http = http_text.parse().map_err(|_| SettingsError::Invalid {
            setting: "http",
            value: http_text.clone(),
            expected: "an address like 127.0.0.1:7070",
        })?;
        let durability_text = args
            .durability
            .clone()
            .or(file.durability)
            .unwrap_or_else(|| "sync".to_owned());
        let durability = match durability_text.as_str() {
            "sync" => Durability::Sync,
            "relaxed" => Durability::Relaxed,
            _ => {
                return Err(SettingsError::Invalid {
                    setting: "durability",
                    value: durability_text,
                    expected: "sync or relaxed",
                })
            }
        };
        let duration = |setting: &'static str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_owned());
            parse_duration(&text)
                .filter(|d| !d.is_zero())
                .ok_or(SettingsError::Invalid {
                    setting,
                    value: text,
                    expected: "a duration like 90s, 15m, 1h or 30d",
                })
        };
        let positive = |setting: &'static str, value: u64| {
            if value == 0 {
                Err(SettingsError::Invalid {
                    setting,
                    value: value.to_string(),
                    expected: "a positive number",
                })
            } else {
                Ok(value)
            }
        };
        Ok(Settings {
            http,
            durability,
            flush_ms: positive("flush_ms", args.flush_ms.or(file.flush_ms).unwrap_or(100))?,
            token_ttl: duration("token_ttl", args.token_ttl.clone().or(file.token_ttl), "1h")?,
            refresh_ttl: duration(
                "refresh_ttl",
                args.refresh_ttl.clone().or(file.refresh_ttl),
                "30d",
            )?,
            allow_signup: args.allow_signup.or(file.allow_signup).unwrap_or(false),
            max_body_bytes: positive(
                "max_body_bytes",
                args.max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(16 << 20) as u64,
            )? as usize,
            max_batch: positive(
                "max_batch",
                args.max_batch.or(file.max_batch).unwrap_or(10_000) as u64,
            )? as usize,
            changelog_retain: positive(
                "changelog_retain",
                args.changelog_retain
                    .or(file.changelog_retain)
                    .unwrap_or(1_000_000),
            )?,
            admin_email: non_empty_env("PULSEBASE_ADMIN_EMAIL"),
            admin_password: non_empty_env("PULSEBASE_ADMIN_PASSWORD"),
            data,
        })
    }

    /// Settings for tests and tools: defaults with the given data dir.
    pub fn for_data_dir(data: &Path) -> Settings {
        let args = ServeArgs {
            data: Some(data.to_owned()),
            http: Some("127.0.0.1:0".to_owned()),
            ..ServeArgs::default()
        };
        let mut settings = match Settings::resolve(&args) {
            Ok(settings) => settings,
            Err(_) => unreachable_defaults(data),
        };
        settings.admin_email = None;
        settings.admin_password = None;
        settings
    }
}

fn unreachable_defaults(data: &Path) -> Settings {
    // Only reached when a pulsebase.toml in `data` is broken; tests then still
    // get working defaults.
    Settings {
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        data: data.to_owned(),
        durability: Durability::Sync,
        flush_ms: 100,
        token_ttl: Duration::from_secs(3600),
        refresh_ttl: Duration::from_secs(30 * 86_400),
        allow_signup: false,
        max_body_bytes: 16 << 20,
        max_batch: 10_000,
        changelog_retain: 1_000_000,
        admin_email: None,
        admin_password: None,
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read_file_settings(data: &Path) -> Result<FileSettings, SettingsError> {
    let path = data.join("pulsebase.toml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileSettings::default()),
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    toml::from_str(&text).map_err(|e| SettingsError::File {
        path,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("pulsebase.toml"),
            "durability = \"relaxed\"\nflush_ms = 250\nmax_batch = 5\n",
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
        assert_eq!(settings.max_batch, 7);
        assert_eq!(settings.token_ttl, Duration::from_secs(3600));
        assert_eq!(settings.http.to_string(), "127.0.0.1:7070");
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
        assert!(Settings::resolve(&args).is_err());
    }
}
