//! What a series collection adds to a collection: the field naming each
//! reading's source, the field giving its time, the size cap of its
//! retention; and readings to and from the JSON the API speaks.
//!
//! A reading is validated by the same schema code as a record
//! ([`Collection::validate`]), then split into the codec's [`Reading`]: the
//! source and time go to their own columns, the other fields keep their
//! type (numbers, integers, strings, booleans; a datetime that is not the
//! time field is kept as its canonical text). JSON and array fields have
//! no column type and are refused when the collection is defined.

use serde_json::{Map, Number, Value};

use super::collection::{CollectionDef, EventOp, FieldErrors, FieldType};
use super::Collection;
use crate::clock;
use crate::series::{Fields, Reading, Value as Cell};

/// A series collection's compiled options.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesShape {
    pub series_field: String,
    pub time_field: Option<String>,
    pub max_bytes: Option<u64>,
}

/// Refuses series-only options on a `records` collection.
pub(super) fn refuse_series_options(def: &CollectionDef, errors: &mut FieldErrors) {
    for (name, set) in [
        ("series", def.series.is_some()),
        ("time", def.time.is_some()),
    ] {
        if set {
            errors.insert(
                name.into(),
                "only series collections (kind: series) take it".into(),
            );
        }
    }
    if def
        .retention
        .as_ref()
        .is_some_and(|r| r.max_bytes.is_some())
    {
        errors.insert(
            "retention.max_bytes".into(),
            "only series collections (kind: series) take it".into(),
        );
    }
}

/// Checks a series definition. `events` is narrowed to `create`: readings
/// are never updated or deleted one by one.
pub(super) fn compile(def: &CollectionDef, errors: &mut FieldErrors) -> Option<SeriesShape> {
    let series_field = match &def.series {
        None => {
            errors.insert(
                "series".into(),
                "a series collection names the string field identifying each source".into(),
            );
            None
        }
        Some(name) => match def.fields.get(name) {
            Some(field) if field.kind == FieldType::String => Some(name.clone()),
            _ => {
                errors.insert(
                    "series".into(),
                    format!("must name a string field of the collection ({name} is not one)"),
                );
                None
            }
        },
    };
    if let Some(name) = &def.time {
        if !def
            .fields
            .get(name)
            .is_some_and(|f| f.kind == FieldType::Datetime)
        {
            errors.insert(
                "time".into(),
                format!("must name a datetime field of the collection ({name} is not one)"),
            );
        }
    }
    for (name, field) in &def.fields {
        if matches!(field.kind, FieldType::Json | FieldType::Array) {
            errors.insert(
                format!("fields.{name}"),
                "series readings hold numbers, integers, strings, booleans and datetimes".into(),
            );
        }
    }
    if !def.indexes.is_empty() {
        errors.insert(
            "indexes".into(),
            "series collections are ordered by time and source; they take no indexes".into(),
        );
    }
    let mut max_bytes = None;
    if let Some(retention) = &def.retention {
        if retention.max_records.is_some() {
            errors.insert(
                "retention.max_records".into(),
                "series collections are capped by max_age and max_bytes".into(),
            );
        }
        if let Some(value) = &retention.max_bytes {
            match parse_bytes(value) {
                Some(bytes) if bytes > 0 => max_bytes = Some(bytes),
                _ => {
                    errors.insert(
                        "retention.max_bytes".into(),
                        "must be a size like 512MiB, 2GiB or a number of bytes".into(),
                    );
                }
            }
        }
    }
    if def
        .events
        .iter()
        .any(|op| matches!(op, EventOp::Update | EventOp::Delete))
        && def.events.len() < 3
    {
        errors.insert(
            "events".into(),
            "readings are only ever created: a series collection emits create events".into(),
        );
    }
    Some(SeriesShape {
        series_field: series_field?,
        time_field: def.time.clone(),
        max_bytes,
    })
}

/// `2GiB`, `512MiB`, `100KB`, `1000`: a size in bytes.
pub fn parse_bytes(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let text = value.as_str()?.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" | "t" => 1 << 40,
        _ => return None,
    };
    amount.checked_mul(scale)
}

impl Collection {
    pub fn is_series(&self) -> bool {
        self.series.is_some()
    }

    /// Checks one reading's fields (no system fields) and turns them into a
    /// codec reading, its `seq` still 0. `received_ms` is its time when the
    /// reading has none.
    pub fn reading_from(
        &self,
        data: Map<String, Value>,
        owner: Option<String>,
        received_ms: i64,
    ) -> Result<Reading, FieldErrors> {
        let Some(shape) = &self.series else {
            return Err([("kind".to_owned(), "not a series collection".to_owned())].into());
        };
        let mut data = data;
        // The time is read here, once: milliseconds as they are, RFC 3339
        // parsed once (not normalized to text and parsed back).
        let mut errors = FieldErrors::new();
        let time_field = shape.time_field.as_deref();
        let time = match time_field.map(|f| (f, data.remove(f))) {
            None | Some((_, None | Some(Value::Null))) => {
                if let Some(field) = time_field.filter(|f| self.is_required(f)) {
                    errors.insert(field.to_owned(), "is required".into());
                }
                received_ms
            }
            Some((field, Some(value))) => match reading_time(&value) {
                Some(ms) => ms,
                None => {
                    errors.insert(
                        field.to_owned(),
                        "must be an RFC 3339 timestamp or milliseconds since the epoch".into(),
                    );
                    received_ms
                }
            },
        };
        let mut data = self.validate_except(data, true, time_field, errors)?;
        let series = match data.remove(&shape.series_field) {
            Some(Value::String(source)) => source,
            // `validate` checked the type; a missing source is refused here
            // even when the definition forgot `required`.
            _ => return Err([(shape.series_field.clone(), "is required".to_owned())].into()),
        };
        let mut fields = Fields::with_capacity(data.len());
        for (name, value) in data {
            let cell = match value {
                Value::Null => continue,
                Value::Bool(b) => Cell::Bool(b),
                Value::String(s) => Cell::Text(s),
                Value::Number(n) => number_cell(&n, self.field_type(&name)),
                Value::Array(_) | Value::Object(_) => {
                    return Err([(
                        name,
                        "series readings hold numbers, strings and booleans".to_owned(),
                    )]
                    .into())
                }
            };
            fields.insert(name, cell);
        }
        Ok(Reading {
            seq: 0,
            time,
            created: received_ms,
            owner,
            series,
            fields,
        })
    }

    fn is_required(&self, name: &str) -> bool {
        self.def.fields.get(name).is_some_and(|f| f.required)
    }

    fn field_type(&self, name: &str) -> Option<FieldType> {
        self.def.fields.get(name).map(|f| f.kind)
    }

    /// A reading as the API shows it (before protected fields are
    /// stripped): `id`, `created`, `owner`, the source, the time, the rest.
    pub fn reading_json(&self, reading: &Reading) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(
            "id".into(),
            Value::String(crate::ids::reading_id(reading.seq)),
        );
        out.insert(
            "created".into(),
            Value::String(clock::format_ms(reading.created)),
        );
        out.insert(
            "owner".into(),
            reading.owner.clone().map_or(Value::Null, Value::String),
        );
        if let Some(shape) = &self.series {
            out.insert(
                shape.series_field.clone(),
                Value::String(reading.series.clone()),
            );
            if let Some(time) = &shape.time_field {
                out.insert(time.clone(), Value::String(clock::format_ms(reading.time)));
            }
        }
        for (name, cell) in &reading.fields {
            out.insert(name.to_owned(), cell_json(cell));
        }
        out
    }
}

/// A reading's time: whole milliseconds since the epoch, or RFC 3339.
fn reading_time(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64)),
        Value::String(text) => clock::parse_ms(text),
        _ => None,
    }
}

fn number_cell(n: &Number, kind: Option<FieldType>) -> Cell {
    match (kind, n.as_i64()) {
        (Some(FieldType::Integer), Some(i)) => Cell::Int(i),
        // An integer field's value may arrive as 3.0.
        (Some(FieldType::Integer), None) => Cell::Int(n.as_f64().unwrap_or(0.0) as i64),
        // Without a declared type, whole numbers stay integers.
        (None, Some(i)) => Cell::Int(i),
        _ => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
    }
}

pub fn cell_json(cell: &Cell) -> Value {
    match cell {
        Cell::Number(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Cell::Int(i) => Value::from(*i),
        Cell::Text(s) => Value::String(s.clone()),
        Cell::Bool(b) => Value::Bool(*b),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn compile(def: Value) -> Result<Collection, FieldErrors> {
        let def: CollectionDef = serde_json::from_value(def).unwrap();
        Collection::compile(1, 1, String::new(), String::new(), def)
    }

    fn readings() -> Collection {
        compile(json!({
            "name": "readings", "kind": "series", "series": "device", "time": "ts",
            "fields": {"device": {"type": "string", "required": true},
                       "temp": {"type": "number"}, "n": {"type": "integer"},
                       "ts": {"type": "datetime"}},
            "retention": {"max_age": "30d", "max_bytes": "2GiB"}
        }))
        .unwrap()
    }

    #[test]
    fn a_series_definition_compiles_with_its_shape() {
        let c = readings();
        let shape = c.series.as_ref().unwrap();
        assert_eq!(shape.series_field, "device");
        assert_eq!(shape.time_field.as_deref(), Some("ts"));
        assert_eq!(shape.max_bytes, Some(2 << 30));
    }

    #[test]
    fn bad_series_definitions_name_each_part() {
        let errors = compile(json!({
            "name": "r", "kind": "series", "series": "missing", "time": "temp",
            "fields": {"temp": {"type": "number"}, "blob": {"type": "json"}},
            "indexes": ["temp"], "retention": {"max_bytes": "lots"}
        }))
        .unwrap_err();
        for key in [
            "series",
            "time",
            "fields.blob",
            "indexes",
            "retention.max_bytes",
        ] {
            assert!(errors.contains_key(key), "missing {key} in {errors:?}");
        }
        let errors = compile(json!({"name": "r", "series": "d"})).unwrap_err();
        assert!(errors.contains_key("series"), "{errors:?}");
    }

    #[test]
    fn a_reading_round_trips_through_json() {
        let c = readings();
        let data = json!({"device": "gw-1", "temp": 21.5, "n": 3.0, "extra": "x",
                          "ts": "2026-12-03T08:00:00+01:00"});
        let mut reading = c
            .reading_from(data.as_object().unwrap().clone(), Some("u1".into()), 5)
            .unwrap();
        assert_eq!(
            reading.time,
            clock::parse_ms("2026-12-03T07:00:00Z").unwrap()
        );
        assert_eq!(reading.fields["n"], Cell::Int(3));
        reading.seq = 42;
        let json = Value::Object(c.reading_json(&reading));
        assert_eq!(
            json,
            json!({"id": crate::ids::reading_id(42), "created": clock::format_ms(5),
                   "owner": "u1", "device": "gw-1", "temp": 21.5, "n": 3, "extra": "x",
                   "ts": "2026-12-03T07:00:00.000Z"})
        );
    }

    #[test]
    fn a_reading_without_its_source_or_with_a_bad_time_is_refused() {
        let c = readings();
        let errors = c
            .reading_from(json!({"temp": 1}).as_object().unwrap().clone(), None, 0)
            .unwrap_err();
        assert_eq!(errors["device"], "is required");
        let errors = c
            .reading_from(
                json!({"device": "a", "ts": "yesterday"})
                    .as_object()
                    .unwrap()
                    .clone(),
                None,
                0,
            )
            .unwrap_err();
        assert!(errors.contains_key("ts"), "{errors:?}");
    }

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_bytes(&json!("2GiB")), Some(2 << 30));
        assert_eq!(parse_bytes(&json!("512 MiB")), Some(512 << 20));
        assert_eq!(parse_bytes(&json!("1kb")), Some(1000));
        assert_eq!(parse_bytes(&json!(1000)), Some(1000));
        assert_eq!(parse_bytes(&json!("much")), None);
    }
}
