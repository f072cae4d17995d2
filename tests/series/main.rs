//! Series collections over REST against the real server: definitions,
//! ingest (object, array, NDJSON; all or nothing; `Idempotency-Key`),
//! one reading, listing by time with cursors, `latest`, owner rules on
//! every read path, dropping old readings, what an update may not change,
//! and line protocol on `/api/v2/write` with an API key.

#[path = "../common/mod.rs"]
mod common;

mod aggregate;
mod ingest;
mod latest;
mod reads;

use std::collections::BTreeSet;

pub(crate) use common::{client, error_code, send, TestServer};
pub(crate) use serde_json::{json, Value};

/// Some fixed moment (2023-11-14T22:13:20Z) that all readings are near.
const T0: i64 = 1_700_000_000_000;

/// Readings of devices; each user lists and views only their own.
fn readings_definition(name: &str) -> Value {
    json!({
        "name": name,
        "kind": "series",
        "series": "device",
        "time": "ts",
        "fields": {
            "device": {"type": "string", "required": true},
            "temp": {"type": "number"},
            "n": {"type": "integer"},
            "ts": {"type": "datetime"}
        },
        "rules": {
            "list": "owner = @user.id",
            "view": "owner = @user.id",
            "create": "@user != null"
        },
        // The readings are from 2023: a shorter max_age would have
        // retention drop them in the middle of a test.
        "retention": {"max_age": "36500d", "max_bytes": "2GiB"}
    })
}

struct Fixture {
    server: TestServer,
    admin: String,
    ann: String,
    bob: String,
}

async fn fixture() -> Fixture {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, readings_definition("readings"))
        .await;
    let ann = server.plain_user_token(&admin, "ann@example.com").await;
    let bob = server.plain_user_token(&admin, "bob@example.com").await;
    Fixture {
        server,
        admin,
        ann,
        bob,
    }
}

fn records_url(server: &TestServer, collection: &str) -> String {
    server.url(&format!("/api/collections/{collection}/records"))
}

/// POSTs `body` as JSON, with an `Idempotency-Key` when given.
async fn ingest(
    server: &TestServer,
    token: &str,
    collection: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Value) {
    let mut request = client()
        .post(records_url(server, collection))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    send(request).await
}

/// Ingests and returns the seqs of the readings, in the batch's order.
async fn ingest_ok(server: &TestServer, token: &str, collection: &str, body: &Value) -> Vec<u64> {
    let (status, answer) = ingest(server, token, collection, body, None).await;
    assert_eq!(status, 201, "ingest: {answer}");
    seqs_of(&answer)
}

fn seqs_of(answer: &Value) -> Vec<u64> {
    let first = answer["first_seq"].as_u64().expect("first_seq");
    let last = answer["last_seq"].as_u64().expect("last_seq");
    assert_eq!(answer["count"].as_u64(), Some(last + 1 - first), "{answer}");
    (first..=last).collect()
}

/// The id of the reading at `seq`: 13 base32 digits of the seq.
fn reading_id(seq: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..13)
        .rev()
        .map(|i| char::from(DIGITS[((seq >> (i * 5)) & 31) as usize]))
        .collect()
}

/// Every reading the query lists, following cursors; checks that each
/// page but the last is full.
async fn list_all(
    server: &TestServer,
    token: &str,
    collection: &str,
    query: &[(&str, &str)],
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client()
            .get(records_url(server, collection))
            .bearer_auth(token)
            .query(query);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let (status, page) = send(request).await;
        assert_eq!(status, 200, "list {query:?}: {page}");
        let got = page["items"].as_array().expect("items").clone();
        items.extend(got);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
        assert!(items.len() < 100_000, "the cursors never end");
    }
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}

fn id_set(items: &[Value]) -> BTreeSet<String> {
    ids(items).into_iter().collect()
}

fn ids_of_seqs(seqs: &[u64]) -> BTreeSet<String> {
    seqs.iter().map(|s| reading_id(*s)).collect()
}
