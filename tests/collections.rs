//! Collections API: admin only, validated definitions, safe
//! schema changes, and drop.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, send, Options, TestServer};
use serde_json::json;

#[tokio::test]
async fn only_admins_manage_collections() {
    let server = TestServer::start_with(Options {
        args: vec!["--allow-signup".into(), "true".into()],
        ..Options::default()
    });
    let (status, body) = send(client().get(server.url("/api/collections"))).await;
    assert_eq!((status, error_code(&body)), (401, "unauthorized"));
    let (_, signup) = send(
        client()
            .post(server.url("/api/auth/signup"))
            .json(&json!({"email": "u@example.com", "password": "password-123"})),
    )
    .await;
    let user = signup["token"].as_str().unwrap();
    let (status, body) = send(
        client()
            .post(server.url("/api/collections"))
            .bearer_auth(user)
            .json(&json!({"name": "x"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
}

#[tokio::test]
async fn definitions_are_validated_with_reasons() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let url = server.url("/api/collections");
    let (status, body) = send(client().post(&url).bearer_auth(&admin).json(&json!({
        "name": "_system",
        "fields": {"n": {"type": "number", "default": "x"}},
        "rules": {"view": "owner = "},
        "retention": {"max_age": "forever"}
    })))
    .await;
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let details = body["error"]["details"].as_object().unwrap();
    for key in [
        "name",
        "fields.n.default",
        "rules.view",
        "retention.max_age",
    ] {
        assert!(details.contains_key(key), "{key} missing in {details:?}");
    }
    assert!(details["rules.view"].as_str().unwrap().contains("position"));
    let (status, body) = send(
        client()
            .post(&url)
            .bearer_auth(&admin)
            .json(&json!({"name": "ok", "fields": {"a": {"type": "decimal"}}})),
    )
    .await;
    // A definition of the wrong shape names the place too, in the same
    // shape as every other problem (the first such problem only: the
    // definition cannot be read past it).
    assert_eq!((status, error_code(&body)), (400, "validation_failed"));
    let detail = body["error"]["details"]["fields.a.type"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("decimal") && detail.contains("datetime"),
        "{body}"
    );
    let (status, body) = send(
        client()
            .post(&url)
            .bearer_auth(&admin)
            .json(&json!({"name": "ok", "events": ["create", "upsert"]})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"]["details"]["events.1"].is_string(), "{body}");
    let (_, body) = send(
        client()
            .post(&url)
            .bearer_auth(&admin)
            .json(&json!({"fields": {}})),
    )
    .await;
    assert!(body["error"]["details"]["name"].is_string(), "{body}");

    let created = server
        .create_collection(&admin, json!({"name": "sensors"}))
        .await;
    assert_eq!(created["name"], "sensors");
    assert_eq!(created["events"], json!(["create", "update", "delete"]));
    let (status, body) = send(
        client()
            .post(&url)
            .bearer_auth(&admin)
            .json(&json!({"name": "sensors"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, body) = send(client().get(&url).bearer_auth(&admin)).await;
    assert_eq!(status, 200);
    assert_eq!(body["items"][0]["name"], "sensors");
}

#[tokio::test]
async fn schema_changes_that_existing_records_violate_are_refused() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "things", "fields": {"size": {"type": "number"}}}),
        )
        .await;
    let records = server.url("/api/collections/things/records");
    let (_, record) = send(
        client()
            .post(&records)
            .bearer_auth(&admin)
            .json(&json!({"size": 50, "color": "red"})),
    )
    .await;
    let id = record["id"].as_str().unwrap().to_owned();
    let collection = server.url("/api/collections/things");

    let (status, body) = send(
        client()
            .patch(&collection)
            .bearer_auth(&admin)
            .json(&json!({"fields": {"size": {"type": "number", "max": 10}}})),
    )
    .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "validation_failed"),
        "{body}"
    );
    assert_eq!(
        body["error"]["details"][format!("records.{id}.size")],
        "must be at most 10"
    );
    let (status, body) = send(
        client()
            .patch(&collection)
            .bearer_auth(&admin)
            .json(&json!({"strict": true})),
    )
    .await;
    assert_eq!(status, 400, "color is not declared: {body}");
    let (status, body) = send(
        client()
            .patch(&collection)
            .bearer_auth(&admin)
            .json(&json!({"fields": {"owner_name": {"type": "string", "required": true}}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let (status, body) =
        send(client().patch(&collection).bearer_auth(&admin).json(
            &json!({"fields": {"size": {"type": "number", "max": 100}}, "indexes": ["size"]}),
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fields"]["size"]["max"], 100.0);
    // The new index answers filters on existing records.
    let (_, page) = send(
        client()
            .get(&records)
            .bearer_auth(&admin)
            .query(&[("filter", "size = 50")]),
    )
    .await;
    assert_eq!(page["items"][0]["id"], id.as_str());
    let (status, _) = send(
        client()
            .post(&records)
            .bearer_auth(&admin)
            .json(&json!({"size": 500})),
    )
    .await;
    assert_eq!(status, 400, "the new schema applies to new records");
    let (status, body) = send(
        client()
            .patch(&collection)
            .bearer_auth(&admin)
            .json(&json!({"name": "renamed"})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
}

#[tokio::test]
async fn dropping_a_collection_removes_its_records() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "temp", "indexes": ["k"]}))
        .await;
    let records = server.url("/api/collections/temp/records");
    let batch: Vec<_> = (0..20).map(|k| json!({"k": k})).collect();
    let (status, _) = send(client().post(&records).bearer_auth(&admin).json(&batch)).await;
    assert_eq!(status, 201);
    let (status, _) = send(
        client()
            .delete(server.url("/api/collections/temp"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(client().get(&records).bearer_auth(&admin)).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        client()
            .delete(server.url("/api/collections/temp"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 404);
    server
        .create_collection(&admin, json!({"name": "temp", "indexes": ["k"]}))
        .await;
    let (_, page) = send(
        client()
            .get(&records)
            .bearer_auth(&admin)
            .query(&[("filter", "k = 3")]),
    )
    .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "a new collection of the same name starts empty"
    );
}

#[tokio::test]
async fn retention_removes_the_oldest_records() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "capped", "retention": {"max_records": 5}}),
        )
        .await;
    server
        .create_collection(
            &admin,
            json!({"name": "aging", "retention": {"max_age": "2s"}}),
        )
        .await;
    let capped = server.url("/api/collections/capped/records");
    for n in 0..12 {
        let (status, _) = send(
            client()
                .post(&capped)
                .bearer_auth(&admin)
                .json(&json!({"n": n})),
        )
        .await;
        assert_eq!(status, 201);
    }
    let aging = server.url("/api/collections/aging/records");
    let (status, _) = send(
        client()
            .post(&aging)
            .bearer_auth(&admin)
            .json(&json!({"n": 0})),
    )
    .await;
    assert_eq!(status, 201);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, page) = send(client().get(&capped).bearer_auth(&admin)).await;
        let kept: Vec<_> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["n"].as_i64().unwrap())
            .collect();
        let (_, aged) = send(client().get(&aging).bearer_auth(&admin)).await;
        if kept == [7, 8, 9, 10, 11] && aged["items"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not converge: kept {kept:?}, aging {aged}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
