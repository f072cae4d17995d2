//! Records API against the real server.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use common::{client, error_code, ids, send, Options, TestServer};
use serde_json::{json, Value};

async fn readings(server: &TestServer) -> String {
    let token = server.admin_token().await;
    server
        .create_collection(
            &token,
            json!({
                "name": "readings",
                "fields": {
                    "device": {"type": "string", "required": true, "max_length": 16},
                    "temp": {"type": "number"},
                    "level": {"type": "string", "enum": ["info", "warn", "crit"]},
                    "at": {"type": "datetime"}
                },
                "strict": true,
                "indexes": ["device", "temp"]
            }),
        )
        .await;
    token
}

async fn create(server: &TestServer, token: &str, body: Value) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(token)
            .json(&body),
    )
    .await
}

async fn list(server: &TestServer, token: &str, query: &[(&str, &str)]) -> Value {
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .bearer_auth(token)
            .query(query),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn create_get_patch_replace_delete() {
    let server = TestServer::start();
    let token = readings(&server).await;

    let (status, created) = create(
        &server,
        &token,
        json!({"device": "gw-1", "temp": 21.5, "at": "2024-05-01T12:00:00+02:00"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 26, "generated ids are ULIDs");
    assert_eq!(created["rev"], 1);
    assert_eq!(created["at"], "2024-05-01T10:00:00.000Z");
    assert!(created["owner"].is_string());
    assert_eq!(created["created"], created["updated"]);
    let created_at = created["created"].as_str().unwrap();
    assert!(
        created_at.ends_with('Z') && created_at.len() == 24,
        "{created_at}"
    );

    let url = server.url(&format!("/api/collections/readings/records/{id}"));
    let (status, fetched) = send(client().get(&url).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, created);

    let (status, patched) = send(
        client()
            .patch(&url)
            .bearer_auth(&token)
            .json(&json!({"temp": 22, "level": "warn", "rev": 99, "created": "x"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["temp"], 22);
    assert_eq!(patched["device"], "gw-1", "merge keeps other fields");
    assert_eq!(patched["rev"], 2, "rev is server-owned");
    assert_eq!(patched["created"], created["created"]);

    let (status, patched) = send(
        client()
            .patch(&url)
            .bearer_auth(&token)
            .json(&json!({"level": null})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        patched.get("level").is_none(),
        "null removes a field: {patched}"
    );

    let (status, replaced) = send(
        client()
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"device": "gw-2"})),
    )
    .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["rev"], 4);
    assert!(
        replaced.get("temp").is_none(),
        "replace drops omitted fields"
    );

    let (status, body) = send(
        client()
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"temp": 1})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "validation_failed");
    assert_eq!(body["error"]["details"]["device"], "is required");

    let (status, _) = send(client().delete(&url).bearer_auth(&token)).await;
    assert_eq!(status, 204);
    let (status, body) = send(client().get(&url).bearer_auth(&token)).await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&body), "not_found");
    let (status, _) = send(client().delete(&url).bearer_auth(&token)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn client_ids_make_creates_retry_safe() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let (status, body) = create(
        &server,
        &token,
        json!({"id": "gw-1_0001", "device": "gw-1"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "gw-1_0001");
    let (status, body) = create(
        &server,
        &token,
        json!({"id": "gw-1_0001", "device": "gw-1"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "conflict");
    let (status, body) = create(&server, &token, json!({"id": "bad/id", "device": "gw-1"})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "validation_failed");
    assert!(body["error"]["details"]["id"].is_string());
}

#[tokio::test]
async fn validation_names_every_bad_field() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let (status, body) = create(&server, &token, json!({"device": "x".repeat(17), "temp": "hot", "level": "debug", "at": "noon", "extra": 1})).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "validation_failed");
    let details = body["error"]["details"].as_object().unwrap();
    let mut names: Vec<_> = details.keys().cloned().collect();
    names.sort();
    assert_eq!(names, ["at", "device", "extra", "level", "temp"]);
}

#[tokio::test]
async fn if_match_guards_against_lost_updates() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let (_, created) = create(&server, &token, json!({"device": "gw-1"})).await;
    let url = server.url(&format!(
        "/api/collections/readings/records/{}",
        created["id"].as_str().unwrap()
    ));

    let (status, body) = send(
        client()
            .patch(&url)
            .bearer_auth(&token)
            .header("If-Match", "1")
            .json(&json!({"temp": 1})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(
        client()
            .patch(&url)
            .bearer_auth(&token)
            .header("If-Match", "1")
            .json(&json!({"temp": 2})),
    )
    .await;
    assert_eq!(status, 412);
    assert_eq!(error_code(&body), "precondition_failed");
    let (status, _) = send(
        client()
            .put(&url)
            .bearer_auth(&token)
            .header("If-Match", "\"1\"")
            .json(&json!({"device": "x"})),
    )
    .await;
    assert_eq!(status, 412);
    let (status, _) = send(
        client()
            .delete(&url)
            .bearer_auth(&token)
            .header("If-Match", "1"),
    )
    .await;
    assert_eq!(status, 412);
    let (status, body) = send(
        client()
            .delete(&url)
            .bearer_auth(&token)
            .header("If-Match", "soon"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "bad_request");
    let (status, _) = send(
        client()
            .delete(&url)
            .bearer_auth(&token)
            .header("If-Match", "2"),
    )
    .await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn list_filters_sorts_projects_and_limits() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let rows = [
        ("gw-1", 20.0),
        ("gw-2", 35.5),
        ("gw-7", 31.0),
        ("gw-7", 29.0),
        ("gw-7", 40.0),
    ];
    for (device, temp) in rows {
        let (status, _) = create(&server, &token, json!({"device": device, "temp": temp})).await;
        assert_eq!(status, 201);
    }
    let page = list(
        &server,
        &token,
        &[
            ("filter", "device = 'gw-7' && temp > 30"),
            ("sort", "-temp"),
        ],
    )
    .await;
    let temps: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["temp"].as_f64().unwrap())
        .collect();
    assert_eq!(temps, [40.0, 31.0]);
    assert_eq!(page["next_cursor"], Value::Null);

    let page = list(&server, &token, &[("sort", "device,-temp")]).await;
    let pairs: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["device"].as_str().unwrap().to_owned(),
                r["temp"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("gw-1".into(), 20.0),
            ("gw-2".into(), 35.5),
            ("gw-7".into(), 40.0),
            ("gw-7".into(), 31.0),
            ("gw-7".into(), 29.0)
        ]
    );

    let page = list(
        &server,
        &token,
        &[("fields", "temp"), ("limit", "2"), ("sort", "temp")],
    )
    .await;
    let first = page["items"][0].as_object().unwrap();
    let mut keys: Vec<_> = first.keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["id", "temp"]);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());

    let page = list(&server, &token, &[("filter", "device ~ '7' || temp < 21")]).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 4);

    let (status, body) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .bearer_auth(&token)
            .query(&[("filter", "temp > ")]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "bad_request");
    assert_eq!(body["error"]["details"]["position"], 7);

    let (status, body) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .bearer_auth(&token)
            .query(&[("bogus", "1")]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .bearer_auth(&token)
            .query(&[("cursor", "garbage")]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn default_limit_is_50_and_max_is_1000() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let batch: Vec<Value> = (0..1100)
        .map(|i| json!({"device": format!("d{}", i % 10), "temp": i}))
        .collect();
    let (status, body) = create(&server, &token, Value::Array(batch)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 1100);
    let page = list(&server, &token, &[]).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 50);
    let page = list(&server, &token, &[("limit", "5000")]).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1000);
}

/// Walk every page of a listing, inserting records between pages: each
/// record that existed at the start is seen exactly once.
async fn walk_while_inserting(
    server: &TestServer,
    token: &str,
    sort: &str,
    filter: Option<&str>,
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut inserted = 0;
    loop {
        let mut query = vec![("sort", sort.to_owned()), ("limit", "7".to_owned())];
        if let Some(f) = filter {
            query.push(("filter", f.to_owned()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let (status, page) = send(
            client()
                .get(server.url("/api/collections/readings/records"))
                .bearer_auth(token)
                .query(&query),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        seen.extend(ids(&page));
        for _ in 0..3 {
            inserted += 1;
            let (status, _) = create(
                server,
                token,
                json!({"device": "late", "temp": -(inserted as f64)}),
            )
            .await;
            assert_eq!(status, 201);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(seen.len() < 10_000, "pagination does not terminate");
    }
    seen
}

#[tokio::test]
async fn cursors_stay_correct_while_records_are_inserted() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let batch: Vec<Value> = (0..40)
        .map(|i| json!({"device": format!("gw-{}", i % 4), "temp": (i * 7 % 40) as f64}))
        .collect();
    let (status, body) = create(&server, &token, Value::Array(batch)).await;
    assert_eq!(status, 201);
    let original: Vec<String> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    for (sort, filter) in [
        ("created", None),
        ("-created", None),
        ("temp", None),
        ("-temp", None),
        ("device,-temp", None),
        ("id", None),
        ("-temp", Some("device != 'late'")),
    ] {
        let seen = walk_while_inserting(&server, &token, sort, filter).await;
        for id in &original {
            let times = seen.iter().filter(|s| *s == id).count();
            assert_eq!(times, 1, "sort {sort}: record {id} seen {times} times");
        }
        let mut unique = seen.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            seen.len(),
            "sort {sort}: duplicates across pages"
        );
    }
}

#[tokio::test]
async fn batches_are_all_or_nothing() {
    let server = TestServer::start();
    let token = readings(&server).await;
    let (status, body) = create(
        &server,
        &token,
        json!([{"device": "a"}, {"device": "b", "temp": "hot"}, {"temp": 1}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let items = body["error"]["details"]["items"].as_object().unwrap();
    assert_eq!(items.keys().cloned().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(items["1"]["temp"], "must be of type number");

    let (status, _) = create(&server, &token, json!({"id": "taken", "device": "x"})).await;
    assert_eq!(status, 201);
    let (status, body) = create(
        &server,
        &token,
        json!([{"id": "fresh", "device": "a"}, {"id": "taken", "device": "b"}]),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = create(
        &server,
        &token,
        json!([{"id": "twice", "device": "a"}, {"id": "twice", "device": "b"}]),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let page = list(&server, &token, &[]).await;
    assert_eq!(ids(&page), ["taken"], "failed batches wrote nothing");

    let ndjson = "{\"device\":\"n1\"}\n\n{\"device\":\"n2\",\"temp\":3}\n";
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body(ndjson),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&token)
            .header("content-type", "application/x-ndjson")
            .body("{\"device\":\"ok\"}\n{oops\n"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 2"),
        "{body}"
    );
}

#[tokio::test]
async fn limits_and_malformed_requests_get_the_error_shape() {
    let server = TestServer::start_with(Options {
        args: vec![
            "--max-batch".into(),
            "3".into(),
            "--max-body-bytes".into(),
            "2000".into(),
        ],
        ..Options::default()
    });
    let token = readings(&server).await;
    let records = server.url("/api/collections/readings/records");

    let (status, body) = create(
        &server,
        &token,
        json!([{"device": "a"}, {"device": "b"}, {"device": "c"}, {"device": "d"}]),
    )
    .await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    let big = json!({"device": "a", "note": "x".repeat(5000)});
    let (status, body) = create(&server, &token, big).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    let (status, body) = send(
        client()
            .post(&records)
            .bearer_auth(&token)
            .header("content-type", "text/plain")
            .body("device=a"),
    )
    .await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_media_type"));
    let (status, body) = send(
        client()
            .post(&records)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{\"device\": "),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = send(client().post(&records).bearer_auth(&token).json(&json!([]))).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = send(
        client()
            .post(&records)
            .bearer_auth(&token)
            .json(&json!("just a string")),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = send(
        client()
            .patch(format!("{records}/x"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("["),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/nope/records"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = send(client().get(server.url("/api/no/such/route"))).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));
    let (status, body) = send(client().delete(server.url("/api/health"))).await;
    assert_eq!(status, 405);
    error_code(&body);
}
