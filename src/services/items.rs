//! The items of a write body, handed over one at a time as they are
//! parsed: one JSON object, a JSON array of them, or NDJSON. A batch of
//! readings is checked item by item while it is read, so its JSON trees
//! are never all alive at once beside the readings made of them (a
//! thousand-item batch held both, several times the body's size).

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// How a body frames its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON value: an object is one item, an array holds the items.
    Json,
    /// One JSON value per line; blank lines are skipped.
    NdJson,
}

/// Calls `each` with every item of `body`, in order, and says whether the
/// body was a batch (an array or NDJSON) rather than one object. Stops at
/// the first error, from the parser or from `each`.
pub fn for_each(
    body: &[u8],
    framing: Framing,
    each: &mut dyn FnMut(Value) -> ApiResult<()>,
) -> ApiResult<bool> {
    match framing {
        Framing::NdJson => {
            for (number, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value = serde_json::from_slice(line).map_err(|e| {
                    ApiError::bad_request(format!("invalid JSON on line {}: {e}", number + 1))
                })?;
                each(value)?;
            }
            Ok(true)
        }
        Framing::Json if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => {
            let mut parser = serde_json::Deserializer::from_slice(body);
            let mut stopped = None;
            let read = de::Deserializer::deserialize_seq(
                &mut parser,
                EachElement {
                    each,
                    stopped: &mut stopped,
                },
            )
            .and_then(|()| parser.end());
            match (stopped, read) {
                (Some(refusal), _) => Err(refusal),
                (None, Err(e)) => Err(invalid_json(&e)),
                (None, Ok(())) => Ok(true),
            }
        }
        Framing::Json => {
            let value = serde_json::from_slice(body).map_err(|e| invalid_json(&e))?;
            each(value)?;
            Ok(false)
        }
    }
}

fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("invalid JSON: {e}"))
}

/// Visits an array, handing each element to `each` as soon as it is whole.
/// A refusal from `each` stops the parse (through a serde error, the only
/// way out of a visitor) and is kept in `stopped` to be returned as it is.
struct EachElement<'a> {
    each: &'a mut dyn FnMut(Value) -> ApiResult<()>,
    stopped: &'a mut Option<ApiError>,
}

impl<'de> Visitor<'de> for EachElement<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element_seed(Element)? {
            if let Err(refusal) = (self.each)(item) {
                *self.stopped = Some(refusal);
                return Err(de::Error::custom("stopped by a refused item"));
            }
        }
        Ok(())
    }
}

/// One array element, as a JSON value.
struct Element;

impl<'de> DeserializeSeed<'de> for Element {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn items(body: &str, framing: Framing) -> ApiResult<(Vec<Value>, bool)> {
        let mut seen = Vec::new();
        let batch = for_each(body.as_bytes(), framing, &mut |item| {
            seen.push(item);
            Ok(())
        })?;
        Ok((seen, batch))
    }

    #[test]
    fn objects_arrays_and_lines_give_their_items_in_order() {
        assert_eq!(
            items(r#" {"a": 1} "#, Framing::Json).unwrap(),
            (vec![json!({"a": 1})], false)
        );
        assert_eq!(
            items(r#"[{"a": 1}, {"a": [2]}, 3]"#, Framing::Json).unwrap(),
            (vec![json!({"a": 1}), json!({"a": [2]}), json!(3)], true)
        );
        assert_eq!(items("[]", Framing::Json).unwrap(), (vec![], true));
        assert_eq!(
            items("{\"a\": 1}\n\n  \n{\"a\": 2}\n", Framing::NdJson).unwrap(),
            (vec![json!({"a": 1}), json!({"a": 2})], true)
        );
    }

    #[test]
    fn broken_json_is_refused_wherever_it_breaks() {
        for body in [
            r#"[{"a": 1}, {"a": "#,
            r#"[{"a": 1}] trailing"#,
            r#"[{"a": 1},]"#,
            "[",
            "",
            "{",
        ] {
            let error = items(body, Framing::Json).unwrap_err();
            assert!(
                error.message.starts_with("invalid JSON"),
                "{body}: {error:?}"
            );
        }
        let error = items("{}\n{oops\n", Framing::NdJson).unwrap_err();
        assert!(error.message.contains("line 2"), "{error:?}");
    }

    #[test]
    fn a_refused_item_stops_the_parse_with_its_own_error() {
        let mut seen = 0;
        let error = for_each(b"[1, 2, 3, 4]", Framing::Json, &mut |item| {
            seen += 1;
            if item == json!(2) {
                return Err(ApiError::forbidden("not two"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!((seen, error.message.as_str()), (2, "not two"));
    }
}
