//! `total=true` on a records list: how many records the caller would list
//! through the filter, every page together.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, TestServer};
use serde_json::{json, Value};

async fn list(server: &TestServer, token: &str, collection: &str, query: &str) -> (u16, Value) {
    send(
        client()
            .get(server.url(&format!("/api/collections/{collection}/records{query}")))
            .bearer_auth(token),
    )
    .await
}

#[tokio::test]
async fn the_total_counts_what_the_caller_may_list_through_the_filter() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "notes", "indexes": ["n"],
                   "rules": {"list": "owner = @user.id", "view": "owner = @user.id",
                             "create": "@user != null"}}),
        )
        .await;
    let alice = server.plain_user_token(&admin, "alice@example.com").await;
    for n in 0..7 {
        server.create_record(&alice, "notes", json!({"n": n})).await;
    }
    for n in 0..5 {
        server.create_record(&admin, "notes", json!({"n": n})).await;
    }

    // Not asked: no total.
    let (status, page) = list(&server, &admin, "notes", "?limit=2").await;
    assert_eq!(status, 200);
    assert!(page.get("total").is_none(), "{page}");
    // An admin without a filter: every record (the stored count).
    let (_, page) = list(&server, &admin, "notes", "?limit=2&total=true").await;
    assert_eq!(
        (
            page["items"].as_array().unwrap().len(),
            page["total"].clone()
        ),
        (2, json!(12))
    );
    // Through a filter (on an index, then not), on a later page too.
    let (_, page) = list(
        &server,
        &admin,
        "notes",
        "?filter=n%20%3C%203&limit=2&total=true",
    )
    .await;
    assert_eq!(page["total"], 6);
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (_, page) = list(
        &server,
        &admin,
        "notes",
        &format!("?filter=n%20%3C%203&limit=2&total=true&cursor={cursor}"),
    )
    .await;
    assert_eq!(page["total"], 6);
    let (_, page) = list(
        &server,
        &admin,
        "notes",
        "?filter=n%20%3C%203%20%7C%7C%20n%20%3D%206&total=true",
    )
    .await;
    assert_eq!(page["total"], 7);
    // A user counts only what the rules let them list.
    let (_, page) = list(&server, &alice, "notes", "?limit=1&total=true").await;
    assert_eq!(page["total"], 7);
    let (_, page) = list(
        &server,
        &alice,
        "notes",
        "?filter=n%20%3E%3D%205&total=true",
    )
    .await;
    assert_eq!(page["total"], 2);

    let (status, body) = list(&server, &admin, "notes", "?total=maybe").await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
}

#[tokio::test]
async fn a_series_total_is_the_stored_count_or_null() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "meter", "kind": "series", "series": "device",
                   "fields": {"device": {"type": "string"}, "w": {"type": "number"}}}),
        )
        .await;
    let readings: Vec<Value> = (0..9).map(|i| json!({"device": "m1", "w": i})).collect();
    let (status, _) = send(
        client()
            .post(server.url("/api/collections/meter/records"))
            .bearer_auth(&admin)
            .json(&readings),
    )
    .await;
    assert_eq!(status, 201);
    let (_, page) = list(&server, &admin, "meter", "?limit=2&total=true").await;
    assert_eq!(page["total"], 9, "{page}");
    // Counting through a filter would decode every block: not counted.
    let (status, page) = list(&server, &admin, "meter", "?filter=w%20%3E%204&total=true").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    assert_eq!(page["total"], Value::Null);
}
