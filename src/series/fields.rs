//! A reading's user fields: a few names and values, sorted by name.
//!
//! A reading has a handful of fields and a batch holds thousands of
//! readings, so the map's own size is what a batch in flight costs. A
//! `BTreeMap` allocates a whole node (eleven keys and values, about 640
//! bytes) for two or three fields; a sorted `Vec` holds exactly what is
//! there (48 bytes a field), and looking a name up by bisection is as
//! fast for so few entries. Serialized as a map, like the `BTreeMap` it
//! replaced, so stored summaries read the same.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Value;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields(Vec<(Box<str>, Value)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    pub fn with_capacity(capacity: usize) -> Fields {
        Fields(Vec::with_capacity(capacity))
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| (**key).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.position(name).ok().map(|at| &self.0[at].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`, giving back the value it replaces.
    pub fn insert(&mut self, name: impl Into<Box<str>>, value: Value) -> Option<Value> {
        let name = name.into();
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Value> {
        self.position(name).ok().map(|at| self.0.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The fields in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(name, value)| (&**name, value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| &**name)
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;

    fn index(&self, name: &str) -> &Value {
        match self.get(name) {
            Some(value) => value,
            None => panic!("no field {name}"),
        }
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Box<str>, Value)>,
        fn(&'a (Box<str>, Value)) -> (&'a str, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(name, value)| (&**name, value))
    }
}

impl IntoIterator for Fields {
    type Item = (Box<str>, Value);
    type IntoIter = std::vec::IntoIter<(Box<str>, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<N: Into<Box<str>>> FromIterator<(N, Value)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, Value)>>(pairs: I) -> Fields {
        let mut fields = Fields::new();
        for (name, value) in pairs {
            fields.insert(name, value);
        }
        fields
    }
}

impl<N: Into<Box<str>>, const K: usize> From<[(N, Value); K]> for Fields {
    fn from(pairs: [(N, Value); K]) -> Fields {
        pairs.into_iter().collect()
    }
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(&**name, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of field names to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Fields, A::Error> {
                let mut fields = Fields::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((name, value)) = access.next_entry::<String, Value>()? {
                    fields.insert(name, value);
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn keeps_names_sorted_and_replaces_on_insert() {
        let mut fields = Fields::new();
        assert_eq!(fields.insert("temp", Value::Number(1.0)), None);
        fields.insert("hum", Value::Int(40));
        fields.insert("alarm", Value::Bool(false));
        assert_eq!(
            fields.insert("temp", Value::Number(2.0)),
            Some(Value::Number(1.0))
        );
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["alarm", "hum", "temp"]);
        assert_eq!(fields.get("temp"), Some(&Value::Number(2.0)));
        assert_eq!(fields.get("nope"), None);
        assert_eq!(fields.remove("hum"), Some(Value::Int(40)));
        assert_eq!(fields.len(), 2);
    }

    #[test]
    fn serializes_exactly_like_the_btree_map_it_replaced() {
        let map: BTreeMap<String, Value> = [
            ("b".to_owned(), Value::Text("x".into())),
            ("a".to_owned(), Value::Number(2.5)),
        ]
        .into();
        let fields: Fields = map.clone().into_iter().collect();
        let old = bincode::serialize(&map).expect("bincode");
        assert_eq!(bincode::serialize(&fields).expect("bincode"), old);
        let back: Fields = bincode::deserialize(&old).expect("bincode");
        assert_eq!(back, fields);
        assert_eq!(
            serde_json::to_string(&fields).expect("json"),
            serde_json::to_string(&map).expect("json")
        );
    }
}
