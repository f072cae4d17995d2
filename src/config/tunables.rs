//! The settings that change while the server runs (docs/configuration.md), and the live
//! handle every part of the server reads them through.
//!
//! Each one may come from a flag or `PULSEBASE_*` variable, `pulsebase.toml`,
//! a runtime change (`PATCH /api/settings`, persisted in the store), or the
//! default. A value the operator set at start (flag, env or file) is pinned:
//! it cannot be changed at runtime, because the next start would silently
//! undo the change. Everything else can, and the change survives restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::clock::{format_duration, parse_duration};
use crate::rules::Expr;

/// One consistent set of runtime settings. Readers take an `Arc` and keep it
/// for as long as one operation needs a stable view.
#[derive(Debug, Clone, PartialEq)]
pub struct Tunables {
    pub allow_signup: bool,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub max_batch: usize,
    pub changelog_retain: u64,
    /// Who may create custom topics; an expression over `@user`.
    pub topic_create_rule: String,
    pub heartbeat: Duration,
    pub max_subscriptions: usize,
    pub max_message_bytes: usize,
    /// Bytes a connection's outbox holds before it is closed as slow.
    pub outbox_bytes: usize,
    /// Bytes all outboxes hold together, in MiB, before the connections
    /// holding the most are closed as slow.
    pub outbox_budget_mb: usize,
    /// Messages a connection's outbox holds before it is closed as slow:
    /// an optional cap beside `outbox_bytes`, off by default.
    pub outbox: Option<usize>,
    /// Client messages per second one realtime connection may send (and
    /// HTTP publishes per second per caller).
    pub message_rate: u32,
    /// Open realtime connections (WebSocket and SSE together), in all and
    /// from one client address.
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Members of a presence topic up to which joins and leaves are told
    /// one by one; past it, only the count.
    pub presence_max: usize,
}

impl Default for Tunables {
    fn default() -> Tunables {
        Tunables {
            allow_signup: false,
            token_ttl: Duration::from_secs(3600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            max_batch: 10_000,
            changelog_retain: 1_000_000,
            topic_create_rule: "@user != null".to_owned(),
            heartbeat: Duration::from_secs(30),
            max_subscriptions: 100,
            max_message_bytes: 65_536,
            outbox_bytes: 4 << 20,
            outbox_budget_mb: 256,
            outbox: None,
            message_rate: 100,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            presence_max: 1_000,
        }
    }
}

/// Where a setting's current value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Default,
    File,
    /// A flag or a `PULSEBASE_*` variable.
    Startup,
    Runtime,
}

impl Source {
    pub fn pinned(self) -> bool {
        matches!(self, Source::File | Source::Startup)
    }
}

/// Which settings came from where; absent means the default.
pub type Sources = BTreeMap<&'static str, Source>;

/// A runtime setting: its name (also its TOML key and JSON field) and how to
/// read and show it.
pub struct Tunable {
    pub name: &'static str,
    set: fn(&mut Tunables, &Value) -> Result<(), String>,
    get: fn(&Tunables) -> Value,
}

macro_rules! tunable {
    ($field:ident, $read:ident, $show:ident) => {
        Tunable {
            name: stringify!($field),
            set: |tunables, value| {
                tunables.$field = $read(value)?;
                Ok(())
            },
            get: |tunables| $show(&tunables.$field),
        }
    };
}

pub static TUNABLES: &[Tunable] = &[
    tunable!(allow_signup, read_flag, show_flag),
    tunable!(token_ttl, read_span, show_span),
    tunable!(refresh_ttl, read_span, show_span),
    tunable!(max_batch, read_count, show_count),
    tunable!(changelog_retain, read_count, show_count),
    tunable!(topic_create_rule, read_rule, show_rule),
    tunable!(heartbeat, read_span, show_span),
    tunable!(max_subscriptions, read_count, show_count),
    tunable!(max_message_bytes, read_count, show_count),
    tunable!(outbox_bytes, read_count, show_count),
    tunable!(outbox_budget_mb, read_count, show_count),
    tunable!(outbox, read_some_count, show_some_count),
    tunable!(message_rate, read_count, show_count),
    tunable!(max_connections, read_count, show_count),
    tunable!(max_connections_per_ip, read_count, show_count),
    tunable!(presence_max, read_count, show_count),
];

pub fn find(name: &str) -> Option<&'static Tunable> {
    TUNABLES.iter().find(|t| t.name == name)
}

impl Tunable {
    pub fn apply(&self, tunables: &mut Tunables, value: &Value) -> Result<(), String> {
        (self.set)(tunables, value)
    }

    pub fn show(&self, tunables: &Tunables) -> Value {
        (self.get)(tunables)
    }

    pub fn env_var(&self) -> String {
        format!("PULSEBASE_{}", self.name.to_ascii_uppercase())
    }

    pub fn flag(&self) -> String {
        format!("--{}", self.name.replace('_', "-"))
    }
}

fn read_flag(value: &Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| "must be true or false".to_owned())
}

fn show_flag(value: &bool) -> Value {
    Value::Bool(*value)
}

/// Durations are text like `90s`, `15m`, `1h`, `30d`, or whole seconds.
fn read_span(value: &Value) -> Result<Duration, String> {
    let duration = match value {
        Value::String(text) => parse_duration(text),
        Value::Number(n) => n.as_u64().map(Duration::from_secs),
        _ => None,
    };
    duration
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be a duration like 90s, 15m, 1h or 30d".to_owned())
}

fn show_span(value: &Duration) -> Value {
    Value::String(format_duration(*value))
}

fn read_count<T: TryFrom<u64>>(value: &Value) -> Result<T, String> {
    value
        .as_u64()
        .filter(|n| *n > 0)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| "must be a positive whole number".to_owned())
}

fn show_count<T: Copy>(value: &T) -> Value
where
    u64: TryFrom<T>,
{
    u64::try_from(*value).map_or(Value::Null, Value::from)
}

/// A cap that is off unless set: a positive number, or null for off (as
/// it shows when off).
fn read_some_count(value: &Value) -> Result<Option<usize>, String> {
    match value {
        Value::Null => Ok(None),
        value => read_count(value).map(Some),
    }
}

fn show_some_count(value: &Option<usize>) -> Value {
    value.map_or(Value::Null, |n| show_count(&n))
}

fn read_rule(value: &Value) -> Result<String, String> {
    let text = value
        .as_str()
        .ok_or_else(|| "must be a rule expression".to_owned())?;
    Expr::parse(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

fn show_rule(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// Settles the tunables from the startup sources (applied in order, later
/// wins) on top of the defaults. Errors name the setting.
pub fn resolve_startup(
    layers: &[(Source, Vec<(&'static str, Value)>)],
) -> Result<(Tunables, Sources), (String, String)> {
    let mut tunables = Tunables::default();
    let mut sources = BTreeMap::new();
    for (source, values) in layers {
        for (name, value) in values {
            let tunable = find(name).ok_or_else(|| (name.to_string(), "unknown".to_owned()))?;
            tunable
                .apply(&mut tunables, value)
                .map_err(|message| (name.to_string(), message))?;
            sources.insert(tunable.name, *source);
        }
    }
    Ok((tunables, sources))
}

/// The server's current tunables. Cheap to clone; every clone sees changes.
#[derive(Clone)]
pub struct Live {
    current: Arc<watch::Sender<Arc<Tunables>>>,
    state: Arc<Mutex<LiveState>>,
}

struct LiveState {
    sources: BTreeMap<&'static str, Source>,
    /// What was changed at runtime, as it is persisted.
    overrides: Map<String, Value>,
}

/// A runtime change that was refused; each entry names a setting and why.
#[derive(Debug)]
pub struct Refused(pub BTreeMap<String, String>);

impl Live {
    /// Starts from the startup values, then applies the persisted runtime
    /// changes to every setting that is not pinned. A persisted value that no
    /// longer reads (an older build's setting, say) is skipped with a warning.
    pub fn new(
        startup: Tunables,
        mut sources: BTreeMap<&'static str, Source>,
        persisted: Map<String, Value>,
    ) -> Live {
        let mut tunables = startup;
        let mut overrides = Map::new();
        for (name, value) in persisted {
            let Some(tunable) = find(&name) else {
                tracing::warn!(setting = %name, "ignoring a stored setting this build does not know");
                continue;
            };
            if sources.get(tunable.name).is_some_and(|s| s.pinned()) {
                continue;
            }
            match tunable.apply(&mut tunables, &value) {
                Ok(()) => {
                    sources.insert(tunable.name, Source::Runtime);
                    overrides.insert(name, value);
                }
                Err(message) => {
                    tracing::warn!(setting = %name, %message, "ignoring an unreadable stored setting")
                }
            }
        }
        let (current, _) = watch::channel(Arc::new(tunables));
        Live {
            current: Arc::new(current),
            state: Arc::new(Mutex::new(LiveState { sources, overrides })),
        }
    }

    /// Defaults only; for tests and tools.
    pub fn fixed(tunables: Tunables) -> Live {
        Live::new(tunables, BTreeMap::new(), Map::new())
    }

    pub fn get(&self) -> Arc<Tunables> {
        self.current.borrow().clone()
    }

    /// Hears every change, for tasks that keep a setting in effect.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Tunables>> {
        self.current.subscribe()
    }

    pub fn source(&self, name: &str) -> Source {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sources.get(name).copied().unwrap_or(Source::Default)
    }

    /// Applies a JSON merge patch of settings: a value sets, `null` returns
    /// the setting to its startup value. All or nothing. `persist` gets the
    /// full set of runtime overrides and must store them durably before the
    /// change takes effect.
    pub fn change<E>(
        &self,
        patch: &Map<String, Value>,
        startup: &Tunables,
        persist: impl FnOnce(&Map<String, Value>) -> Result<(), E>,
    ) -> Result<Result<Arc<Tunables>, Refused>, E> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut refused = BTreeMap::new();
        let mut overrides = state.overrides.clone();
        for (name, value) in patch {
            match find(name) {
                None if super::STARTUP_ONLY.contains(&name.as_str()) => {
                    refused.insert(
                        name.clone(),
                        "takes effect only at start; set it by flag, environment or pulsebase.toml"
                            .to_owned(),
                    );
                }
                None => {
                    refused.insert(name.clone(), "unknown setting".to_owned());
                }
                Some(tunable) if state.sources.get(tunable.name).is_some_and(|s| s.pinned()) => {
                    refused.insert(
                        name.clone(),
                        format!(
                            "set at start by {}, {} or pulsebase.toml; remove it there to change it here",
                            tunable.flag(),
                            tunable.env_var()
                        ),
                    );
                }
                Some(_) if value.is_null() => {
                    overrides.remove(name);
                }
                Some(tunable) => {
                    if let Err(message) = tunable.apply(&mut startup.clone(), value) {
                        refused.insert(name.clone(), message);
                    } else {
                        overrides.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        if !refused.is_empty() {
            return Ok(Err(Refused(refused)));
        }
        let mut tunables = startup.clone();
        let mut sources = state.sources.clone();
        for tunable in TUNABLES {
            if sources.get(tunable.name) == Some(&Source::Runtime) {
                sources.remove(tunable.name);
            }
        }
        for (name, value) in &overrides {
            if let Some(tunable) = find(name) {
                // Each value was read successfully above or at start.
                if tunable.apply(&mut tunables, value).is_ok() {
                    sources.insert(tunable.name, Source::Runtime);
                }
            }
        }
        persist(&overrides)?;
        state.overrides = overrides;
        state.sources = sources;
        let tunables = Arc::new(tunables);
        self.current.send_replace(tunables.clone());
        Ok(Ok(tunables))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn runtime_changes_apply_persist_and_reset() {
        let startup = Tunables::default();
        let live = Live::fixed(startup.clone());
        let mut stored = Map::new();
        let changed = live
            .change::<()>(
                &patch(json!({"allow_signup": true, "token_ttl": "2h"})),
                &startup,
                |o| {
                    stored = o.clone();
                    Ok(())
                },
            )
            .unwrap()
            .unwrap();
        assert!(changed.allow_signup);
        assert_eq!(changed.token_ttl, Duration::from_secs(7200));
        assert_eq!(live.get().token_ttl, Duration::from_secs(7200));
        assert_eq!(live.source("token_ttl"), Source::Runtime);
        assert_eq!(stored.len(), 2);

        // A restart reads the stored overrides back.
        let restarted = Live::new(startup.clone(), BTreeMap::new(), stored.clone());
        assert_eq!(*restarted.get(), *changed);

        live.change::<()>(&patch(json!({"token_ttl": null})), &startup, |o| {
            stored = o.clone();
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(live.get().token_ttl, Duration::from_secs(3600));
        assert_eq!(live.source("token_ttl"), Source::Default);
        assert!(live.get().allow_signup);
        assert_eq!(stored.len(), 1);
    }

    #[test]
    fn refusals_change_nothing() {
        let startup = Tunables::default();
        let sources = BTreeMap::from([("max_batch", Source::Startup)]);
        let live = Live::new(startup.clone(), sources, Map::new());
        let refused = live
            .change::<()>(
                &patch(json!({
                    "allow_signup": true,
                    "max_batch": 5,
                    "http": "0.0.0.0:1",
                    "nope": 1,
                    "heartbeat": "soon",
                    "topic_create_rule": "@user.id ==",
                    "outbox": 0
                })),
                &startup,
                |_| panic!("nothing may be persisted"),
            )
            .unwrap()
            .unwrap_err();
        let names: Vec<_> = refused.0.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "heartbeat",
                "http",
                "max_batch",
                "nope",
                "outbox",
                "topic_create_rule"
            ]
        );
        assert!(refused.0["max_batch"].contains("PULSEBASE_MAX_BATCH"));
        assert!(!live.get().allow_signup);
    }

    #[test]
    fn a_failed_persist_changes_nothing() {
        let startup = Tunables::default();
        let live = Live::fixed(startup.clone());
        let result = live.change(&patch(json!({"allow_signup": true})), &startup, |_| {
            Err("disk full")
        });
        assert!(result.is_err());
        assert!(!live.get().allow_signup);
        assert_eq!(live.source("allow_signup"), Source::Default);
    }

    #[test]
    fn pinned_settings_ignore_stored_overrides() {
        let startup = Tunables {
            max_batch: 7,
            ..Tunables::default()
        };
        let sources = BTreeMap::from([("max_batch", Source::File)]);
        let stored = patch(json!({"max_batch": 99, "outbox": 10, "gone": 1, "heartbeat": []}));
        let live = Live::new(startup, sources, stored);
        assert_eq!(live.get().max_batch, 7);
        assert_eq!(live.get().outbox, Some(10));
        assert_eq!(live.get().heartbeat, Duration::from_secs(30));
    }

    #[test]
    fn every_tunable_shows_what_it_reads() {
        let tunables = Tunables::default();
        for tunable in TUNABLES {
            let mut copy = Tunables {
                allow_signup: true,
                ..Tunables::default()
            };
            tunable.apply(&mut copy, &tunable.show(&tunables)).unwrap();
            assert_eq!(
                tunable.show(&copy),
                tunable.show(&tunables),
                "{}",
                tunable.name
            );
        }
    }
}
