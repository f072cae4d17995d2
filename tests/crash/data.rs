//! What each request writes and how a stored record is checked against it.

use super::*;

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The user fields of record `id`: a pure function of the id, so any record
/// read back can be checked without remembering what was sent. Sizes vary
/// from a few hundred bytes to ~16 KB; numbers are exact in binary and
/// decimal so they survive any JSON round trip.
pub(crate) fn expected_data(id: &str) -> Map<String, Value> {
    let hash = fnv1a(id.as_bytes());
    let mut rng = Rng::new(hash);
    let pad_len = if rng.below(50) == 0 {
        rng.between((4_000, 16_000))
    } else {
        rng.below(300)
    };
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789-_";
    let pad: String = (0..pad_len)
        .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
        .collect();
    let tags: Vec<Value> = (0..rng.below(5))
        .map(|i| Value::String(format!("t{}-{i}", rng.below(100))))
        .collect();
    let n = (hash % 1_000_000) as i64;
    let score = rng.below(80_000) as f64 / 8.0 - 5_000.0;
    let check = format!("{:016x}", fnv1a(format!("{id}|{n}|{pad}").as_bytes()));
    let value = json!({
        "title": format!("crash record {id}"),
        "n": n,
        "score": score,
        "flag": hash & 1 == 1,
        "tags": tags,
        "meta": {
            "hash": format!("{hash:016x}"),
            "nested": {"list": [1, "two", {"three": id}, null], "empty": {}},
            "text": "žluťoučký kůň \u{1F40E} \"quoted\" \\ back\nslash",
        },
        "pad": pad,
        "check": check,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("json! of an object"),
    }
}

pub(crate) fn request_body(id: &str) -> Value {
    let mut body = expected_data(id);
    body.insert("id".into(), Value::String(id.to_owned()));
    Value::Object(body)
}

pub(crate) fn collection_definition() -> Value {
    json!({
        "name": COLLECTION,
        "strict": true,
        "fields": {
            "title": {"type": "string", "required": true, "max_length": 200},
            "n": {"type": "integer", "required": true, "min": 0},
            "score": {"type": "number"},
            "flag": {"type": "boolean"},
            "tags": {"type": "array", "max_length": 8},
            "meta": {"type": "json"},
            "pad": {"type": "string"},
            "check": {"type": "string", "required": true},
        },
        "indexes": ["n"],
    })
}

pub(crate) fn short(value: &impl std::fmt::Display) -> String {
    let text = value.to_string();
    if text.len() <= 300 {
        return text;
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Checks a record as stored or served against what was sent for `id`.
pub(crate) fn check_record(id: &str, record: &Value, owner: &str) -> Result<(), String> {
    let Some(fields) = record.as_object() else {
        return Err(format!("{id}: not a JSON object: {}", short(record)));
    };
    let mut problems = Vec::new();
    if fields.get("id").and_then(Value::as_str) != Some(id) {
        problems.push(format!("id is {:?}", fields.get("id")));
    }
    if fields.get("rev").and_then(Value::as_u64) != Some(1) {
        problems.push(format!("rev is {:?}", fields.get("rev")));
    }
    if fields.get("owner").and_then(Value::as_str) != Some(owner) {
        problems.push(format!("owner is {:?}", fields.get("owner")));
    }
    match (fields.get("created"), fields.get("updated")) {
        (Some(Value::String(created)), Some(Value::String(updated))) if created == updated => {}
        (created, updated) => problems.push(format!("created {created:?}, updated {updated:?}")),
    }
    let mut data = fields.clone();
    for name in SYSTEM_FIELDS {
        data.remove(name);
    }
    let expected = expected_data(id);
    if data != expected {
        let mut names: Vec<&String> = data.keys().chain(expected.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if data.get(name) != expected.get(name) {
                problems.push(format!(
                    "field {name}: sent {}, got {}",
                    short(&expected.get(name).cloned().unwrap_or(Value::Null)),
                    short(&data.get(name).cloned().unwrap_or(Value::Null)),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{id}: {}", problems.join("; ")))
    }
}
