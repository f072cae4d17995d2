//! A create never overwrites a record, whoever chose the id. Server ids are
//! monotonic ULIDs, so within one millisecond the next one is the last one
//! plus one: a client that stores that id first must not have its record
//! replaced when the server hands the same id out later.
//!
//! Over HTTP the collision cannot be staged on demand (it needs the server
//! to generate an id inside the millisecond the client aimed at), so these
//! tests drive the real writer thread on a real store, giving a create the
//! id the generator would produce, exactly as the records handler does;
//! the last test checks the HTTP side of the same rules.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{client, send, TestServer};
use pulsebase::config::Durability;
use pulsebase::model::{Collection, Record};
use pulsebase::store::writer::{Mutation, NewRecord, RecordOp, WriteError, Writer};
use pulsebase::store::Store;
use serde_json::{json, Map, Value};

/// The ULID right after `id` (what a monotonic generator hands out next
/// in the same millisecond).
fn next_ulid(id: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut chars: Vec<u8> = id.bytes().collect();
    for c in chars.iter_mut().rev() {
        let at = ALPHABET.iter().position(|a| a == c).unwrap();
        if at + 1 < ALPHABET.len() {
            *c = ALPHABET[at + 1];
            return String::from_utf8(chars).unwrap();
        }
        *c = ALPHABET[0];
    }
    panic!("no ULID after {id}");
}

async fn open(dir: &std::path::Path) -> (Store, Writer) {
    let store = Store::open(&dir.join("db")).unwrap();
    let writer = Writer::start(store.clone(), Durability::Relaxed, 10, None).unwrap();
    (store, writer)
}

async fn collection(store: &Store, writer: &Writer) -> Arc<Collection> {
    if let Some(c) = store.catalog().get("c") {
        return c;
    }
    let def = serde_json::from_value(json!({"name": "c"})).unwrap();
    writer
        .submit(Mutation::CreateCollection(def))
        .await
        .unwrap()
        .collection
        .unwrap()
}

async fn create(
    writer: &Writer,
    collection: &Arc<Collection>,
    id: &str,
    who: &str,
    client_chose_id: bool,
) -> Result<(), WriteError> {
    let mut data = Map::new();
    data.insert("by".into(), Value::String(who.into()));
    let record = Record::new(id, "t", "t", None, 1, data);
    let op = RecordOp::Create(NewRecord::prepare(
        collection,
        &record,
        None,
        client_chose_id,
        pulsebase::access::system(),
    ));
    writer
        .submit(Mutation::Records {
            collection: collection.clone(),
            ops: vec![op],
            actor: None,
        })
        .await
        .map(|_| ())
}

fn by(store: &Store, collection: &Collection, id: &str) -> Value {
    let record = store.get_record(collection.id, id).unwrap().unwrap();
    record.data()["by"].clone()
}

#[tokio::test]
async fn a_server_id_a_client_took_first_is_a_conflict_not_an_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = open(dir.path()).await;
    let c = collection(&store, &writer).await;
    // The server's last id, and the one its generator gives next.
    let last = pulsebase::ids::generate();
    create(&writer, &c, &last, "server", false).await.unwrap();
    let next = next_ulid(&last);
    create(&writer, &c, &next, "client", true).await.unwrap();

    let taken = create(&writer, &c, &next, "server", false).await;
    assert!(
        matches!(&taken, Err(WriteError::Conflict(id)) if *id == next),
        "{taken:?}"
    );
    assert_eq!(
        by(&store, &c, &next),
        "client",
        "the client's record was replaced"
    );
    assert_eq!(store.record_count(c.id).unwrap(), 2);

    // The other way round was already refused: a client id that the
    // server used.
    let taken = create(&writer, &c, &last, "client", true).await;
    assert!(matches!(taken, Err(WriteError::Conflict(_))), "{taken:?}");
    assert_eq!(by(&store, &c, &last), "server");

    // Still true after a restart, for an id stamped in the future.
    let future = format!("7{}", &next[1..]);
    create(&writer, &c, &future, "client", true).await.unwrap();
    writer.shutdown().await;
    drop(store);
    let (store, writer) = open(dir.path()).await;
    let c = collection(&store, &writer).await;
    let taken = create(&writer, &c, &future, "server", false).await;
    assert!(matches!(taken, Err(WriteError::Conflict(_))), "{taken:?}");
    assert_eq!(by(&store, &c, &future), "client");
    // Ids the generator makes now are all after it in the check, and go in.
    for _ in 0..100 {
        create(&writer, &c, &pulsebase::ids::generate(), "server", false)
            .await
            .unwrap();
    }
    assert_eq!(store.record_count(c.id).unwrap(), 103);
    writer.shutdown().await;
}

/// Over HTTP: a client may use ULIDs of its own (a device that retries a
/// create with the same id), and server ids keep working around them.
#[tokio::test]
async fn client_ulids_and_server_ids_live_side_by_side_over_http() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "notes"}))
        .await;
    let url = server.url("/api/collections/notes/records");
    let post = |body: Value| client().post(&url).bearer_auth(&admin).json(&body);
    let (status, first) = send(post(json!({"text": "server"}))).await;
    assert_eq!(status, 201, "{first}");
    let next = next_ulid(first["id"].as_str().unwrap());
    let (status, mine) = send(post(json!({"id": next, "text": "client"}))).await;
    assert_eq!((status, mine["id"].as_str()), (201, Some(next.as_str())));
    let (status, batch) = send(post(json!((0..200)
        .map(|i| json!({ "text": format!("server {i}") }))
        .collect::<Vec<_>>())))
    .await;
    assert_eq!(status, 201, "{batch}");
    let (status, again) = send(post(json!({"id": next, "text": "retry"}))).await;
    assert_eq!(status, 409, "{again}");
    let (_, stored) = send(
        client()
            .get(server.url(&format!("/api/collections/notes/records/{next}")))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(stored["text"], "client");
}
