//! Settings: flags, then `PULSEBASE_*` environment variables, then an optional
//! `pulsebase.toml` in the data dir, then the defaults (docs/configuration.md).
//!
//! clap resolves flag-over-env; the TOML file and the defaults fill whatever
//! is still unset. The settings in [`tunables`] can also change at runtime.

pub mod mail;
pub mod tunables;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};

pub use tunables::{Live, Source, Tunables};

/// Settings read once at start; changing them needs a restart.
pub const STARTUP_ONLY: &[&str] = &[
    "http",
    "data",
    "durability",
    "flush_ms",
    "max_body_bytes",
    "trust_proxy",
    "metrics_token",
    "cache_mb",
    "mqtt",
    "mqtt_anonymous",
    "cors_origins",
    "public",
    "public_spa",
    "smtp_url",
    "smtp_from",
    "app_url",
];

/// The startup settings `pulsebase.toml` may hold ([`FileSettings`]'
/// keys): all but the data dir, which is where the file is.
fn file_startup_keys() -> impl Iterator<Item = &'static str> {
    STARTUP_ONLY.iter().copied().filter(|key| *key != "data")
}

/// A `metrics_token` shorter than this is refused: it guards the metrics
/// from anyone who can reach the port.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

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
    Serve(Box<ServeArgs>),
    /// Administer the data dir directly (the server must not be running).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Write a consistent snapshot to FILE: from a running server with
    /// --url (an admin token or admin API key in PULSEBASE_TOKEN), or from
    /// a stopped server's data dir.
    Backup {
        file: PathBuf,
        /// A running server, e.g. http://127.0.0.1:7070
        #[arg(long)]
        url: Option<String>,
        /// The data dir of a stopped server (when --url is not given) [default: ./pulsebase_data]
        #[arg(long, env = "PULSEBASE_DATA")]
        data: Option<PathBuf>,
    },
    /// Restore a backup FILE into a new or empty data dir.
    Restore {
        file: PathBuf,
        /// [default: ./pulsebase_data]
        #[arg(long, env = "PULSEBASE_DATA")]
        data: Option<PathBuf>,
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
    /// Take client addresses from the last X-Forwarded-For entry (behind a reverse proxy) [default: false]
    #[arg(long, env = "PULSEBASE_TRUST_PROXY")]
    pub trust_proxy: Option<bool>,
    /// Bearer token that may scrape GET /metrics besides admins (16+ characters) [default: unset]
    #[arg(long, env = "PULSEBASE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Largest request body in bytes [default: 16777216]
    #[arg(long, env = "PULSEBASE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Storage cache in MiB, which also bounds series batches in flight; a 64 MB gateway may set 8 [default: 64]
    #[arg(long, env = "PULSEBASE_CACHE_MB")]
    pub cache_mb: Option<u64>,
    /// Most records in one batch create [default: 10000]
    #[arg(long, env = "PULSEBASE_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Change-log entries always kept [default: 1000000]
    #[arg(long, env = "PULSEBASE_CHANGELOG_RETAIN")]
    pub changelog_retain: Option<u64>,
    /// Who may create custom topics, a rule expression [default: @user != null]
    #[arg(long, env = "PULSEBASE_TOPIC_CREATE_RULE")]
    pub topic_create_rule: Option<String>,
    /// Realtime heartbeat interval, e.g. 30s [default: 30s]
    #[arg(long, env = "PULSEBASE_HEARTBEAT")]
    pub heartbeat: Option<String>,
    /// Subscriptions per realtime connection [default: 100]
    #[arg(long, env = "PULSEBASE_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<u64>,
    /// Largest realtime client message in bytes [default: 65536]
    #[arg(long, env = "PULSEBASE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u64>,
    /// Bytes queued per realtime connection before it is closed as slow [default: 4194304]
    #[arg(long, env = "PULSEBASE_OUTBOX_BYTES")]
    pub outbox_bytes: Option<u64>,
    /// MiB queued in all realtime connections together before the ones holding the most are closed as slow; a 64 MB gateway may set 8 [default: 256]
    #[arg(long, env = "PULSEBASE_OUTBOX_BUDGET_MB")]
    pub outbox_budget_mb: Option<u64>,
    /// Messages queued per realtime connection before it is closed as slow, beside --outbox-bytes [default: no cap]
    #[arg(long, env = "PULSEBASE_OUTBOX")]
    pub outbox: Option<u64>,
    /// Client messages per second per realtime connection, and HTTP publishes per second per caller [default: 100]
    #[arg(long, env = "PULSEBASE_MESSAGE_RATE")]
    pub message_rate: Option<u64>,
    /// Open realtime connections (WebSocket and SSE) in all [default: 10000]
    #[arg(long, env = "PULSEBASE_MAX_CONNECTIONS")]
    pub max_connections: Option<u64>,
    /// Open realtime connections from one client address [default: 1000]
    #[arg(long, env = "PULSEBASE_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<u64>,
    /// Members of a presence topic up to which joins and leaves are sent one by one; past it, only the count [default: 1000]
    #[arg(long, env = "PULSEBASE_PRESENCE_MAX")]
    pub presence_max: Option<u64>,
    /// MQTT listen address, e.g. 127.0.0.1:1883 [default: off]
    #[arg(long, env = "PULSEBASE_MQTT")]
    pub mqtt: Option<String>,
    /// Let MQTT clients connect without a password, as anonymous callers [default: false]
    #[arg(long, env = "PULSEBASE_MQTT_ANONYMOUS")]
    pub mqtt_anonymous: Option<bool>,
    /// Origins browsers may call the API from, comma-separated, e.g.
    /// https://app.example.com (empty: none) [default: *]
    #[arg(long, env = "PULSEBASE_CORS_ORIGINS")]
    pub cors_origins: Option<String>,
    /// A directory of your app's files, served at / [default: none]
    #[arg(long, env = "PULSEBASE_PUBLIC")]
    pub public: Option<PathBuf>,
    /// Serve public/index.html for unknown paths (apps that route in the browser) [default: false]
    #[arg(long, env = "PULSEBASE_PUBLIC_SPA")]
    pub public_spa: Option<bool>,
    /// SMTP server for password-reset and verification mail, e.g.
    /// smtps://user:password@smtp.example.com [default: none, no mail]
    #[arg(long, env = "PULSEBASE_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of that mail [default: pulsebase <no-reply@localhost>]
    #[arg(long, env = "PULSEBASE_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Where links in mail lead, e.g. https://app.example.com [default: http://<http>]
    #[arg(long, env = "PULSEBASE_APP_URL")]
    pub app_url: Option<String>,
    /// Demo mode: a `readings` collection and simulated devices writing to it
    #[arg(long, env = "PULSEBASE_DEMO")]
    pub demo: bool,
}

impl ServeArgs {
    /// The runtime settings given by flag or environment, as JSON values.
    fn tunable_values(&self) -> Vec<(&'static str, Value)> {
        let values = [
            ("allow_signup", self.allow_signup.map(Value::Bool)),
            ("token_ttl", self.token_ttl.clone().map(Value::String)),
            ("refresh_ttl", self.refresh_ttl.clone().map(Value::String)),
            ("max_batch", self.max_batch.map(|n| json!(n))),
            ("changelog_retain", self.changelog_retain.map(|n| json!(n))),
            (
                "topic_create_rule",
                self.topic_create_rule.clone().map(Value::String),
            ),
            ("heartbeat", self.heartbeat.clone().map(Value::String)),
            (
                "max_subscriptions",
                self.max_subscriptions.map(|n| json!(n)),
            ),
            (
                "max_message_bytes",
                self.max_message_bytes.map(|n| json!(n)),
            ),
            ("outbox_bytes", self.outbox_bytes.map(|n| json!(n))),
            ("outbox_budget_mb", self.outbox_budget_mb.map(|n| json!(n))),
            ("outbox", self.outbox.map(|n| json!(n))),
            ("message_rate", self.message_rate.map(|n| json!(n))),
            ("max_connections", self.max_connections.map(|n| json!(n))),
            (
                "max_connections_per_ip",
                self.max_connections_per_ip.map(|n| json!(n)),
            ),
            ("presence_max", self.presence_max.map(|n| json!(n))),
        ];
        values
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect()
    }
}

/// The startup-only keys of the optional `pulsebase.toml`; every key mirrors
/// a flag. The runtime settings are read from the same file separately.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    http: Option<String>,
    durability: Option<String>,
    flush_ms: Option<u64>,
    max_body_bytes: Option<usize>,
    trust_proxy: Option<bool>,
    metrics_token: Option<String>,
    cache_mb: Option<u64>,
    mqtt: Option<String>,
    mqtt_anonymous: Option<bool>,
    cors_origins: Option<web::OriginsValue>,
    public: Option<PathBuf>,
    public_spa: Option<bool>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    app_url: Option<String>,
    #[serde(skip)]
    tunables: Vec<(&'static str, Value)>,
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
    pub max_body_bytes: usize,
    pub trust_proxy: bool,
    /// Who besides admins may scrape `/metrics` (a bearer token).
    pub metrics_token: Option<String>,
    /// sled's page cache, in MiB; a 24th of it bounds the series batches
    /// in flight (`ingest_budget`).
    pub cache_mb: u64,
    /// The runtime settings as the start gave them; [`Live`] adds runtime
    /// changes on top.
    pub tunables: Tunables,
    /// Which runtime settings the start set, and from where.
    pub sources: BTreeMap<&'static str, Source>,
    pub admin_email: Option<String>,
    pub admin_password: Option<String>,
    /// `--demo`: the demo collection and simulated devices (start only).
    pub demo: bool,
    /// Where MQTT clients connect (`None`: no MQTT listener).
    pub mqtt: Option<SocketAddr>,
    /// Whether MQTT clients without a password are let in, as anonymous
    /// callers.
    pub mqtt_anonymous: bool,
    /// CORS and the app's own files.
    pub web: web::Web,
    /// Mail for password resets and email verification.
    pub mail: mail::Mail,
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
    #[error("invalid value for {setting}: {message}")]
    Tunable { setting: String, message: String },
    #[error("invalid value for {setting}: {value:?} ({expected})")]
    Invalid {
        setting: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl Settings {
    /// `cache_mb` in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mb.saturating_mul(1 << 20)
    }

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
        let mqtt = match args.mqtt.clone().or(file.mqtt) {
            // An empty value (an unset variable in a unit file) means off.
            Some(text) if text.is_empty() => None,
            Some(text) => Some(text.parse().map_err(|_| SettingsError::Invalid {
                setting: "mqtt",
                value: text.clone(),
                expected: "an address like 127.0.0.1:1883",
            })?),
            None => None,
        };
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
        let layers = [
            (Source::File, file.tunables),
            (Source::Startup, args.tunable_values()),
        ];
        let (tunables, sources) = tunables::resolve_startup(&layers)
            .map_err(|(setting, message)| SettingsError::Tunable { setting, message })?;
        Ok(Settings {
            http,
            durability,
            flush_ms: positive("flush_ms", args.flush_ms.or(file.flush_ms).unwrap_or(100))?,
            max_body_bytes: positive(
                "max_body_bytes",
                args.max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(16 << 20) as u64,
            )? as usize,
            trust_proxy: args.trust_proxy.or(file.trust_proxy).unwrap_or(false),
            metrics_token: metrics_token(args.metrics_token.clone().or(file.metrics_token))?,
            cache_mb: positive("cache_mb", args.cache_mb.or(file.cache_mb).unwrap_or(64))?,
            tunables,
            sources,
            admin_email: non_empty_env("PULSEBASE_ADMIN_EMAIL"),
            admin_password: non_empty_env("PULSEBASE_ADMIN_PASSWORD"),
            demo: args.demo,
            mqtt,
            mqtt_anonymous: args.mqtt_anonymous.or(file.mqtt_anonymous).unwrap_or(false),
            web: web::Web::resolve(web::Given {
                cors_origins: args
                    .cors_origins
                    .clone()
                    .map(web::OriginsValue::One)
                    .or(file.cors_origins),
                public: args.public.clone().or(file.public),
                public_spa: args.public_spa.or(file.public_spa),
            })?,
            mail: mail::Mail::resolve(mail::Given {
                smtp_url: args.smtp_url.clone().or(file.smtp_url),
                smtp_from: args.smtp_from.clone().or(file.smtp_from),
                app_url: args.app_url.clone().or(file.app_url),
            })?,
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
        max_body_bytes: 16 << 20,
        trust_proxy: false,
        metrics_token: None,
        cache_mb: 64,
        tunables: Tunables::default(),
        sources: BTreeMap::new(),
        admin_email: None,
        admin_password: None,
        demo: false,
        mqtt: None,
        mqtt_anonymous: false,
        web: web::Web::default(),
        mail: mail::Mail::default(),
    }
}

/// An empty token means none (an unset environment variable in a unit file
/// often ends up empty); a short one is refused rather than silently weak.
fn metrics_token(token: Option<String>) -> Result<Option<String>, SettingsError> {
    match token {
        Some(token) if token.is_empty() => Ok(None),
        Some(token) if token.chars().count() < MIN_METRICS_TOKEN_LEN => {
            Err(SettingsError::Invalid {
                setting: "metrics_token",
                value: "(hidden)".to_owned(),
                expected: "at least 16 characters",
            })
        }
        other => Ok(other),
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
    let file_error = |message: String| SettingsError::File {
        path: path.clone(),
        message,
    };
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let mut tunables = Vec::new();
    for tunable in tunables::TUNABLES {
        if let Some(value) = table.remove(tunable.name) {
            let value = serde_json::to_value(value).map_err(|e| file_error(e.to_string()))?;
            tunables.push((tunable.name, value));
        }
    }
    // serde's own message would list only the startup keys, as if the
    // runtime ones (taken out above) were not allowed.
    if let Some(unknown) = table
        .keys()
        .find(|key| !file_startup_keys().any(|k| k == key.as_str()))
    {
        let mut known: Vec<&str> = file_startup_keys().collect();
        known.extend(tunables::TUNABLES.iter().map(|t| t.name));
        known.sort_unstable();
        return Err(file_error(format!(
            "unknown setting `{unknown}`; the settings are: {}",
            known.join(", ")
        )));
    }
    let mut file: FileSettings = table
        .try_into()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    file.tunables = tunables;
    Ok(file)
}

#[cfg(test)]
mod tests;
