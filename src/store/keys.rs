//! Key layouts of the `data` tree. Everything a write touches lives in this
//! one tree so that a write and its change-log entries commit in one
//! `apply_batch`, which sled makes atomic within a tree (multi-tree
//! transactions are much slower and are not needed).
//!
//! | prefix | rest of the key                                     | value                      |
//! |--------|-----------------------------------------------------|----------------------------|
//! | `c`    | seq u64 BE                                          | change envelope            |
//! | `x`    | collection id u32 BE, seq u64 BE                    | empty: the log by collection |
//! | `r`    | collection id u32 BE, record id                     | record envelope            |
//! | `i`    | collection id u32 BE, field len u8, field, value*, record id | empty             |
//! | `n`    | collection id u32 BE                                | record count u64 BE        |
//! | `C`    | collection name                                     | collection envelope        |
//! | `p`    | collection id u32 BE                                | empty: purge still pending |
//! | `m`    | collection id u32 BE, field len u8, field           | empty: that field's `i` entries are not the collection's (a reindex under way or undone, or an index removed): remove them |
//! | `u`    | user id                                             | user envelope              |
//! | `e`    | normalized email                                    | user id                    |
//! | `k`    | `next_collection`                                   | u32 BE                     |
//! | `k`    | `seq_reserved`                                      | u64 BE: no seq above went out (`seqs`) |
//! | `k`    | `changelog_trimmed`                                 | u64 BE: newest seq trimmed |
//! | `k`    | `changelog_indexed`                                 | empty: every `c` has its `x` |
//! | `t`    | topic name                                          | custom topic envelope      |
//! | `h`    | topic name, 0x00, seq u64 BE                        | message envelope (history) |
//! | `H`    | topic name                                          | u64 BE: newest seq dropped |
//! | `R`    | topic name                                          | message envelope: the topic's retained message (MQTT) |
//! | `b`    | collection id u32 BE, first seq u64 BE              | a block of readings (`series`) |
//! | `s`    | collection id u32 BE, first seq u64 BE              | block length u32 BE, then the block's summary |
//! | `I`    | collection id u32 BE, caller len u8, caller, key    | an ingest's `Idempotency-Key`: its answer |
//!
//! Integers are big-endian so byte order is numeric order. `value*` is the
//! order-preserving encoding below, so an index range scan returns records in
//! value order. Collection ids are never reused.

use serde_json::Value;

pub const CHANGE: u8 = b'c';
pub const CHANGE_BY_COLLECTION: u8 = b'x';
pub const RECORD: u8 = b'r';
pub const INDEX: u8 = b'i';
pub const COUNT: u8 = b'n';
pub const COLLECTION: u8 = b'C';
pub const PURGE: u8 = b'p';
pub const STALE_INDEX: u8 = b'm';
pub const USER: u8 = b'u';
pub const EMAIL: u8 = b'e';
pub const TOPIC: u8 = b't';
pub const HISTORY: u8 = b'h';
pub const HISTORY_TRIMMED: u8 = b'H';
pub const RETAINED: u8 = b'R';
pub const BLOCK: u8 = b'b';
pub const SUMMARY: u8 = b's';
pub const IDEMPOTENCY: u8 = b'I';
pub const NEXT_COLLECTION_ID: &[u8] = b"knext_collection";
pub const SEQ_RESERVED: &[u8] = b"kseq_reserved";
pub const CHANGELOG_TRIMMED: &[u8] = b"kchangelog_trimmed";
pub const CHANGELOG_INDEXED: &[u8] = b"kchangelog_indexed";

pub fn topic(name: &str) -> Vec<u8> {
    tagged(TOPIC, name)
}

pub fn history_prefix(topic: &str) -> Vec<u8> {
    let mut key = tagged(HISTORY, topic);
    key.push(0);
    key
}

pub fn history(topic: &str, seq: u64) -> Vec<u8> {
    let mut key = history_prefix(topic);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub fn history_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn history_trimmed(topic: &str) -> Vec<u8> {
    tagged(HISTORY_TRIMMED, topic)
}

pub fn retained(topic: &str) -> Vec<u8> {
    tagged(RETAINED, topic)
}

pub fn change(seq: u64) -> [u8; 9] {
    let mut key = [CHANGE; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A change's entry in its collection's index of the log, so a resume reads
/// only its own collection's changes.
pub fn change_by_collection(collection: u32, seq: u64) -> [u8; 13] {
    let mut key = [CHANGE_BY_COLLECTION; 13];
    key[1..5].copy_from_slice(&collection.to_be_bytes());
    key[5..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub fn change_by_collection_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(5..13)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn change_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn collection_prefix(tag: u8, collection: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(48);
    key.push(tag);
    key.extend_from_slice(&collection.to_be_bytes());
    key
}

/// A block of a series collection's readings, keyed by its first seq:
/// blocks of one collection never overlap in seqs, so the block holding a
/// seq is the last one whose key is at or below it.
pub fn block(collection: u32, first_seq: u64) -> Vec<u8> {
    let mut key = collection_prefix(BLOCK, collection);
    key.extend_from_slice(&first_seq.to_be_bytes());
    key
}

/// The summary kept beside the [`block`] of the same first seq.
pub fn summary(collection: u32, first_seq: u64) -> Vec<u8> {
    let mut key = block(collection, first_seq);
    key[0] = SUMMARY;
    key
}

/// The first seq in a [`block`] or [`summary`] key.
pub fn block_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(5..13)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// An ingest request's `Idempotency-Key`, per collection and caller, so
/// one caller's key can never answer for another's request.
pub fn idempotency(collection: u32, caller: &str, key: &str) -> Vec<u8> {
    let mut out = collection_prefix(IDEMPOTENCY, collection);
    let caller = &caller.as_bytes()[..caller.len().min(255)];
    out.push(caller.len() as u8);
    out.extend_from_slice(caller);
    out.extend_from_slice(key.as_bytes());
    out
}

pub fn record(collection: u32, id: &str) -> Vec<u8> {
    let mut key = collection_prefix(RECORD, collection);
    key.extend_from_slice(id.as_bytes());
    key
}

pub fn count(collection: u32) -> Vec<u8> {
    collection_prefix(COUNT, collection)
}

pub fn purge(collection: u32) -> Vec<u8> {
    collection_prefix(PURGE, collection)
}

pub fn collection(name: &str) -> Vec<u8> {
    tagged(COLLECTION, name)
}

pub fn user(id: &str) -> Vec<u8> {
    tagged(USER, id)
}

pub fn email(email: &str) -> Vec<u8> {
    tagged(EMAIL, email)
}

fn tagged(tag: u8, text: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + text.len());
    key.push(tag);
    key.extend_from_slice(text.as_bytes());
    key
}

/// `i`, collection, field: every index entry of one field shares it.
pub fn index_field_prefix(collection: u32, field: &str) -> Vec<u8> {
    let mut key = collection_prefix(INDEX, collection);
    let name = &field.as_bytes()[..field.len().min(255)];
    key.push(name.len() as u8);
    key.extend_from_slice(name);
    key
}

/// Marks the index entries of `field` as not the collection's: a schema
/// change adding the index is under way (a crash undoes it), or the index
/// was removed or its change undone. The entries are removed a chunk at a
/// time (`chores`), then the marker.
pub fn stale_index(collection: u32, field: &str) -> Vec<u8> {
    let mut key = index_field_prefix(collection, field);
    key[0] = STALE_INDEX;
    key
}

/// The collection and field a [`stale_index`] key names.
pub fn stale_index_field(key: &[u8]) -> Option<(u32, String)> {
    let collection = u32::from_be_bytes(key.get(1..5)?.try_into().ok()?);
    let len = usize::from(*key.get(5)?);
    let field = std::str::from_utf8(key.get(6..6 + len)?).ok()?;
    Some((collection, field.to_owned()))
}

/// The index entry for one record's value of one field.
pub fn index_entry(collection: u32, field: &str, value: &Value, id: &str) -> Vec<u8> {
    let mut key = index_field_prefix(collection, field);
    encode_value(value, &mut key);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The record id at the end of an index entry, given the field prefix length.
pub fn index_entry_id(key: &[u8], prefix_len: usize) -> Option<&str> {
    let rest = key.get(prefix_len..)?;
    let value_len = encoded_value_len(rest)?;
    std::str::from_utf8(rest.get(value_len..)?).ok()
}

// Type tags order values across types: null < false < true < number < string < other.
const TAG_NULL: u8 = 0x01;
const TAG_FALSE: u8 = 0x02;
const TAG_TRUE: u8 = 0x03;
pub const TAG_NUMBER: u8 = 0x04;
pub const TAG_STRING: u8 = 0x05;
const TAG_OTHER: u8 = 0x06;

/// Order-preserving encoding: numbers as sign-flipped IEEE bits (so `1` and
/// `1.0` encode the same, matching `=`), strings and composite values with
/// 0x00 escaped as 0x00 0xFF and terminated by 0x00 0x01, so no encoding is a
/// prefix of a larger one.
pub fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::Number(n) => {
            out.push(TAG_NUMBER);
            out.extend_from_slice(&order_preserving_f64(n.as_f64().unwrap_or(0.0)));
        }
        Value::String(s) => {
            out.push(TAG_STRING);
            escape_into(s.as_bytes(), out);
        }
        other => {
            out.push(TAG_OTHER);
            escape_into(other.to_string().as_bytes(), out);
        }
    }
}

fn order_preserving_f64(f: f64) -> [u8; 8] {
    // -0.0 and 0.0 are equal under `=`, so they must encode the same.
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    let flipped = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    flipped.to_be_bytes()
}

fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn encoded_value_len(bytes: &[u8]) -> Option<usize> {
    match *bytes.first()? {
        TAG_NULL | TAG_FALSE | TAG_TRUE => Some(1),
        TAG_NUMBER => (bytes.len() >= 9).then_some(9),
        TAG_STRING | TAG_OTHER => {
            let mut i = 1;
            while i + 1 < bytes.len() {
                if bytes[i] == 0 {
                    if bytes[i + 1] == 0x01 {
                        return Some(i + 2);
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            None
        }
        _ => None,
    }
}

/// The smallest key greater than every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&v, &mut out);
        out
    }

    #[test]
    fn encoding_preserves_order_within_and_across_types() {
        let ordered = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1e300),
            json!(-2.5),
            json!(-1),
            json!(0),
            json!(0.5),
            json!(3),
            json!(1e300),
            json!(""),
            json!("a"),
            json!("a\u{0}b"),
            json!("ab"),
            json!("b"),
            json!([1]),
        ];
        for pair in ordered.windows(2) {
            assert!(
                enc(pair[0].clone()) < enc(pair[1].clone()),
                "{} !< {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(enc(json!(1)), enc(json!(1.0)));
        assert_eq!(enc(json!(0.0)), enc(json!(-0.0)));
    }

    #[test]
    fn record_id_is_recovered_from_index_entries() {
        for value in [json!("gw\u{0}7"), json!(21.5), json!(null), json!({"a": 1})] {
            let key = index_entry(7, "device", &value, "01ABC");
            let prefix = index_field_prefix(7, "device");
            assert_eq!(index_entry_id(&key, prefix.len()), Some("01ABC"));
        }
    }

    #[test]
    fn stale_index_markers_name_their_field() {
        let key = stale_index(7, "device");
        assert_eq!(stale_index_field(&key), Some((7, "device".to_owned())));
        assert!(key.starts_with(&collection_prefix(STALE_INDEX, 7)));
    }

    #[test]
    fn change_keys_sort_by_seq() {
        assert!(change(255) < change(256));
        assert_eq!(change_seq(&change(42)), Some(42));
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
        assert!(b"ab\xff\xff".to_vec() < prefix_end(b"ab"));
    }
}
