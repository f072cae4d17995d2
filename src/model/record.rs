//! Records are JSON objects whose system fields (`id`, `created`, `updated`,
//! `owner`, `rev`) sit beside the user's fields. The stored form is that whole
//! object, so reading a record is one JSON parse.

use serde_json::{Map, Value};

use super::collection::SYSTEM_FIELDS;

/// A whole record as stored and served (before protected fields are stripped).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub fields: Map<String, Value>,
}

impl Record {
    pub fn new(
        id: &str,
        created: &str,
        updated: &str,
        owner: Option<&str>,
        rev: u64,
        data: Map<String, Value>,
    ) -> Record {
        let mut fields = data;
        fields.insert("id".into(), Value::String(id.to_owned()));
        fields.insert("created".into(), Value::String(created.to_owned()));
        fields.insert("updated".into(), Value::String(updated.to_owned()));
        fields.insert(
            "owner".into(),
            owner.map_or(Value::Null, |o| Value::String(o.to_owned())),
        );
        fields.insert("rev".into(), Value::from(rev));
        Record { fields }
    }

    pub fn id(&self) -> &str {
        self.str_field("id")
    }

    pub fn created(&self) -> &str {
        self.str_field("created")
    }

    pub fn owner(&self) -> Option<&str> {
        self.fields.get("owner").and_then(Value::as_str)
    }

    pub fn rev(&self) -> u64 {
        self.fields.get("rev").and_then(Value::as_u64).unwrap_or(0)
    }

    fn str_field(&self, name: &str) -> &str {
        self.fields.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// The user's fields alone, as a patch or replace starts from.
    pub fn data(&self) -> Map<String, Value> {
        let mut data = self.fields.clone();
        for name in SYSTEM_FIELDS {
            data.remove(name);
        }
        data
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fields).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Record> {
        serde_json::from_slice(bytes)
            .ok()
            .map(|fields| Record { fields })
    }
}

/// Removes the fields the client may not set; `id` is handled by the caller.
pub fn drop_system_fields(data: &mut Map<String, Value>) {
    for name in SYSTEM_FIELDS {
        data.remove(name);
    }
}

/// RFC 7396 JSON merge patch: objects merge recursively, `null` removes.
pub fn merge_patch(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(&key);
            }
            Value::Object(inner) => match target.get_mut(&key) {
                Some(Value::Object(existing)) => merge_patch(existing, inner),
                _ => {
                    let mut fresh = Map::new();
                    merge_patch(&mut fresh, inner);
                    target.insert(key, Value::Object(fresh));
                }
            },
            other => {
                target.insert(key, other);
            }
        }
    }
}

/// Keeps only the requested fields; `id` always stays so results can be
/// matched back to records.
pub fn project(fields: &mut Map<String, Value>, wanted: &[String]) {
    fields.retain(|name, _| name == "id" || wanted.iter().any(|w| w == name));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4})
            .as_object()
            .unwrap()
            .clone();
        let patch = json!({"a": 9, "b": {"c": null, "x": 1}, "e": null})
            .as_object()
            .unwrap()
            .clone();
        merge_patch(&mut target, patch);
        assert_eq!(
            Value::Object(target),
            json!({"a": 9, "b": {"d": 3, "x": 1}})
        );
    }

    #[test]
    fn round_trip() {
        let data = json!({"secret": "s", "temp": 1})
            .as_object()
            .unwrap()
            .clone();
        let record = Record::new("r1", "c", "u", Some("owner1"), 3, data);
        let back = Record::from_bytes(&record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.rev(), 3);
        assert_eq!(back.owner(), Some("owner1"));
        assert!(!record.data().contains_key("rev"));
    }
}
