//! A collection: its schema, rules, events, protected fields, indexes and
//! retention, as the admin writes it (`CollectionDef`) and compiled for use
//! (`Collection`).
//!
//! Definitions are stored as JSON (they hold default values), so unlike the
//! bincode envelopes they may skip absent options when serialized.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::clock;
use crate::rules::Expr;

pub use super::series::SeriesShape;

/// Fields every record carries and only the server writes.
pub const SYSTEM_FIELDS: [&str; 5] = ["id", "created", "updated", "owner", "rev"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionDef {
    pub name: String,
    #[serde(default)]
    pub fields: BTreeMap<String, FieldDef>,
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub rules: Rules,
    #[serde(default = "all_ops")]
    pub events: Vec<EventOp>,
    #[serde(default)]
    pub protected: Vec<String>,
    #[serde(default)]
    pub indexes: Vec<String>,
    #[serde(default)]
    pub retention: Option<Retention>,
    /// `series`: sensor readings, stored as packed blocks.
    #[serde(default, skip_serializing_if = "Kind::is_records")]
    pub kind: Kind,
    /// Series collections: the string field naming each reading's source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    /// Series collections: the datetime field giving each reading's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Records,
    Series,
}

impl Kind {
    fn is_records(&self) -> bool {
        *self == Kind::Records
    }
}

fn all_ops() -> Vec<EventOp> {
    vec![EventOp::Create, EventOp::Update, EventOp::Delete]
}

impl CollectionDef {
    pub fn is_series(&self) -> bool {
        self.kind == Kind::Series
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventOp {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub list: Option<String>,
    pub view: Option<String>,
    pub create: Option<String>,
    pub update: Option<String>,
    pub delete: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u64>,
    /// Series collections: blocks are dropped, oldest first, past this size
    /// (`512MiB`, `2GiB`, or a number of bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    #[serde(rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(rename = "enum", default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    String,
    Number,
    Integer,
    Boolean,
    Json,
    Array,
    Datetime,
}

/// Field name → what is wrong with it, for `validation_failed` details.
pub type FieldErrors = BTreeMap<String, String>;

/// The compiled rules: `None` means admins only.
#[derive(Debug, Clone, Default)]
pub struct CompiledRules {
    pub list: Option<Expr>,
    pub view: Option<Expr>,
    pub create: Option<Expr>,
    pub update: Option<Expr>,
    pub delete: Option<Expr>,
}

/// A collection ready for use. `id` is the storage prefix and is never reused,
/// so a dropped collection's leftovers can never leak into a new one of the
/// same name. `version` changes on every schema update; the writer refuses
/// records validated against an older version.
#[derive(Debug, Clone)]
pub struct Collection {
    pub id: u32,
    pub version: u64,
    pub created: String,
    pub updated: String,
    pub def: CollectionDef,
    pub rules: CompiledRules,
    pub protected: HashSet<String>,
    pub max_age: Option<Duration>,
    /// What a series collection adds; `None` for records.
    pub series: Option<SeriesShape>,
}

impl Collection {
    /// Checks a definition and compiles its rules. Errors name each bad part.
    pub fn compile(
        id: u32,
        version: u64,
        created: String,
        updated: String,
        mut def: CollectionDef,
    ) -> Result<Collection, FieldErrors> {
        let mut errors = FieldErrors::new();
        if !crate::ids::is_valid_name(&def.name) {
            errors.insert(
                "name".into(),
                "must match ^[a-z][a-z0-9_-]{0,63}$ (names starting with _ are reserved)".into(),
            );
        }
        for (name, field) in &def.fields {
            if !is_field_name(name) {
                errors.insert(
                    format!("fields.{name}"),
                    "field names must match ^[A-Za-z_][A-Za-z0-9_]*$".into(),
                );
            } else if SYSTEM_FIELDS.contains(&name.as_str()) {
                errors.insert(
                    format!("fields.{name}"),
                    "is a system field and cannot be redefined".into(),
                );
            } else if let Some(default) = &field.default {
                if let Err(reason) = check_value(field, default) {
                    errors.insert(format!("fields.{name}.default"), reason);
                }
            }
            if let (Some(min), Some(max)) = (field.min, field.max) {
                if min > max {
                    errors.insert(format!("fields.{name}"), "min is greater than max".into());
                }
            }
        }
        let known = |field: &String| {
            def.fields.contains_key(field)
                || (!def.strict && is_field_name(field))
                || SYSTEM_FIELDS.contains(&field.as_str())
        };
        for field in &def.protected {
            if SYSTEM_FIELDS.contains(&field.as_str()) || !known(field) {
                errors.insert(
                    format!("protected.{field}"),
                    "must name a non-system field of the collection".into(),
                );
            }
        }
        for field in &def.indexes {
            if !known(field) {
                errors.insert(
                    format!("indexes.{field}"),
                    "must name a field of the collection".into(),
                );
            }
        }
        let mut max_age = None;
        if let Some(retention) = &def.retention {
            if let Some(text) = &retention.max_age {
                match clock::parse_duration(text).filter(|d| !d.is_zero()) {
                    Some(age) => max_age = Some(age),
                    None => {
                        errors.insert(
                            "retention.max_age".into(),
                            "must be a duration like 30s, 15m, 12h or 7d".into(),
                        );
                    }
                }
            }
            if retention.max_records == Some(0) {
                errors.insert("retention.max_records".into(), "must be at least 1".into());
            }
        }
        let series = match def.kind {
            Kind::Records => {
                super::series::refuse_series_options(&def, &mut errors);
                None
            }
            Kind::Series => {
                let shape = super::series::compile(&def, &mut errors);
                def.events.retain(|op| *op == EventOp::Create);
                shape
            }
        };
        let mut compile = |which: &str, source: &Option<String>| -> Option<Expr> {
            let source = source.as_ref()?;
            match Expr::parse(source) {
                Ok(expr) => Some(expr),
                Err(e) => {
                    errors.insert(format!("rules.{which}"), e.to_string());
                    None
                }
            }
        };
        let rules = CompiledRules {
            list: compile("list", &def.rules.list),
            view: compile("view", &def.rules.view),
            create: compile("create", &def.rules.create),
            update: compile("update", &def.rules.update),
            delete: compile("delete", &def.rules.delete),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Collection {
            id,
            version,
            created,
            updated,
            protected: def.protected.iter().cloned().collect(),
            def,
            rules,
            max_age,
            series,
        })
    }

    /// The collection as the API shows it.
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(&self.def).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("created".into(), Value::String(self.created.clone()));
            map.insert("updated".into(), Value::String(self.updated.clone()));
        }
        value
    }

    /// Checks user-supplied fields (no system fields) against the schema and
    /// returns them normalized (defaults applied when `apply_defaults`,
    /// datetimes in canonical form).
    pub fn validate(
        &self,
        data: Map<String, Value>,
        apply_defaults: bool,
    ) -> Result<Map<String, Value>, FieldErrors> {
        self.validate_except(data, apply_defaults, None, FieldErrors::new())
    }

    /// [`Collection::validate`] leaving out one field the caller checked
    /// itself (a series collection's time field), adding to `errors`.
    pub(super) fn validate_except(
        &self,
        mut data: Map<String, Value>,
        apply_defaults: bool,
        checked: Option<&str>,
        mut errors: FieldErrors,
    ) -> Result<Map<String, Value>, FieldErrors> {
        for (name, field) in &self.def.fields {
            if Some(name.as_str()) == checked {
                continue;
            }
            let present = data.get(name).is_some_and(|v| !v.is_null());
            if !present {
                if apply_defaults {
                    if let Some(default) = &field.default {
                        data.insert(name.clone(), default.clone());
                        continue;
                    }
                }
                if field.required {
                    errors.insert(name.clone(), "is required".into());
                }
                continue;
            }
            if let Some(value) = data.get_mut(name) {
                match check_value(field, value) {
                    Ok(Some(normalized)) => *value = normalized,
                    Ok(None) => {}
                    Err(reason) => {
                        errors.insert(name.clone(), reason);
                    }
                }
            }
        }
        for name in data.keys() {
            if self.def.fields.contains_key(name) {
                continue;
            }
            if self.def.strict {
                errors.insert(name.clone(), "is not a field of this collection".into());
            } else if !is_field_name(name) {
                errors.insert(
                    name.clone(),
                    "field names must match ^[A-Za-z_][A-Za-z0-9_]*$".into(),
                );
            }
        }
        if errors.is_empty() {
            Ok(data)
        } else {
            Err(errors)
        }
    }

    pub fn emits(&self, op: EventOp) -> bool {
        self.def.events.contains(&op)
    }
}

pub fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Returns a normalized replacement when the stored form differs from the
/// input (datetimes), `None` when the value is fine as it is.
pub(super) fn check_value(field: &FieldDef, value: &Value) -> Result<Option<Value>, String> {
    let mut normalized = None;
    match (field.kind, value) {
        (FieldType::String, Value::String(text)) => {
            if let Some(max) = field.max_length {
                if text.chars().count() as u64 > max {
                    return Err(format!("must be at most {max} characters"));
                }
            }
        }
        (FieldType::Number, Value::Number(n)) => check_range(field, n.as_f64().unwrap_or(0.0))?,
        (FieldType::Integer, Value::Number(n)) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.5);
                if f.fract() != 0.0 {
                    return Err("must be an integer".into());
                }
            }
            check_range(field, n.as_f64().unwrap_or(0.0))?;
        }
        (FieldType::Boolean, Value::Bool(_)) | (FieldType::Json, _) => {}
        (FieldType::Array, Value::Array(items)) => {
            if let Some(max) = field.max_length {
                if items.len() as u64 > max {
                    return Err(format!("must have at most {max} items"));
                }
            }
        }
        (FieldType::Datetime, Value::String(text)) => match clock::normalize_rfc3339(text) {
            Some(canonical) => {
                if &canonical != text {
                    normalized = Some(Value::String(canonical));
                }
            }
            None => return Err("must be an RFC 3339 timestamp".into()),
        },
        (kind, _) => return Err(format!("must be of type {}", type_name(kind))),
    }
    if let Some(allowed) = &field.allowed {
        let candidate = normalized.as_ref().unwrap_or(value);
        if !allowed.contains(candidate) {
            return Err(format!(
                "must be one of {}",
                serde_json::to_string(allowed).unwrap_or_default()
            ));
        }
    }
    Ok(normalized)
}

fn check_range(field: &FieldDef, n: f64) -> Result<(), String> {
    if let Some(min) = field.min {
        if n < min {
            return Err(format!("must be at least {min}"));
        }
    }
    if let Some(max) = field.max {
        if n > max {
            return Err(format!("must be at most {max}"));
        }
    }
    Ok(())
}

fn type_name(kind: FieldType) -> &'static str {
    match kind {
        FieldType::String => "string",
        FieldType::Number => "number",
        FieldType::Integer => "integer",
        FieldType::Boolean => "boolean",
        FieldType::Json => "json",
        FieldType::Array => "array",
        FieldType::Datetime => "datetime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn readings() -> Collection {
        let def: CollectionDef = serde_json::from_value(json!({
            "name": "readings",
            "fields": {
                "device": {"type": "string", "required": true, "max_length": 8},
                "temp": {"type": "number", "min": -50, "max": 150},
                "count": {"type": "integer"},
                "ok": {"type": "boolean", "default": true},
                "at": {"type": "datetime"},
                "level": {"type": "string", "enum": ["info", "warn"]},
                "tags": {"type": "array", "max_length": 2}
            },
            "strict": true,
            "indexes": ["device"]
        }))
        .unwrap();
        Collection::compile(1, 1, String::new(), String::new(), def).unwrap()
    }

    fn obj(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn accepts_a_good_record_and_applies_defaults() {
        let out = readings()
            .validate(
                obj(json!({"device": "gw-1", "temp": 21.5, "count": 3})),
                true,
            )
            .unwrap();
        assert_eq!(out["ok"], json!(true));
    }

    #[test]
    fn names_every_bad_field() {
        let errors = readings()
            .validate(
                obj(json!({
                    "device": "much-too-long", "temp": "hot", "count": 1.5,
                    "level": "debug", "tags": [1, 2, 3], "extra": 1
                })),
                true,
            )
            .unwrap_err();
        let names: Vec<_> = errors.keys().cloned().collect();
        assert_eq!(
            names,
            ["count", "device", "extra", "level", "tags", "temp"].map(String::from)
        );
    }

    #[test]
    fn required_and_range() {
        let errors = readings()
            .validate(obj(json!({"temp": 200})), true)
            .unwrap_err();
        assert_eq!(errors["device"], "is required");
        assert_eq!(errors["temp"], "must be at most 150");
    }

    #[test]
    fn datetimes_are_normalized() {
        let out = readings()
            .validate(
                obj(json!({"device": "a", "at": "2024-05-01T12:00:00+02:00"})),
                true,
            )
            .unwrap();
        assert_eq!(out["at"], json!("2024-05-01T10:00:00.000Z"));
    }

    #[test]
    fn bad_definitions_are_refused_with_reasons() {
        let def: CollectionDef = serde_json::from_value(json!({
            "name": "Bad Name",
            "fields": {"id": {"type": "string"}, "n": {"type": "number", "default": "x"}},
            "strict": true,
            "rules": {"list": "a = "},
            "indexes": ["missing"],
            "retention": {"max_age": "soon"}
        }))
        .unwrap();
        let errors = Collection::compile(1, 1, String::new(), String::new(), def).unwrap_err();
        for key in [
            "name",
            "fields.id",
            "fields.n.default",
            "rules.list",
            "indexes.missing",
            "retention.max_age",
        ] {
            assert!(errors.contains_key(key), "missing {key} in {errors:?}");
        }
    }
}
