//! Definitions, ingest in every form, idempotent retries, what cannot
//! change, and line protocol.

use super::*;

#[tokio::test]
async fn a_bad_series_definition_names_each_bad_part() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (status, body) = send(
        client()
            .post(server.url("/api/collections"))
            .bearer_auth(&admin)
            .json(&json!({
                "name": "bad", "kind": "series", "series": "temp", "time": "device",
                "fields": {"device": {"type": "string"}, "temp": {"type": "number"},
                           "blob": {"type": "json"}},
                "retention": {"max_bytes": "lots", "max_records": 10}
            })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let details = &body["error"]["details"];
    for part in [
        "series",
        "time",
        "fields.blob",
        "retention.max_bytes",
        "retention.max_records",
    ] {
        assert!(details[part].is_string(), "{part} not named in {body}");
    }
    // A records collection takes none of the series options.
    let (status, body) = send(
        client()
            .post(server.url("/api/collections"))
            .bearer_auth(&admin)
            .json(&json!({"name": "plain", "series": "device", "time": "ts",
                          "fields": {"device": {"type": "string"}, "ts": {"type": "datetime"}}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["details"]["series"].is_string(), "{body}");
    assert!(body["error"]["details"]["time"].is_string(), "{body}");
}

#[tokio::test]
async fn ingest_takes_an_object_an_array_or_ndjson_all_or_nothing() {
    let f = fixture().await;
    let server = &f.server;
    let one = ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!({"device": "d1", "temp": 20.5, "ts": T0}),
    )
    .await;
    assert_eq!(one.len(), 1);
    let batch = json!([
        {"device": "d1", "temp": 21.0, "ts": T0 + 1},
        {"device": "d2", "temp": 22.0, "ts": T0 + 2},
        {"device": "d1", "temp": 23.0, "ts": T0 + 3}
    ]);
    let three = ingest_ok(server, &f.ann, "readings", &batch).await;
    assert_eq!(three.len(), 3);
    assert!(three[0] > one[0]);

    let ndjson = "{\"device\":\"d3\",\"temp\":1,\"ts\":1700000000010}\n\
                  {\"device\":\"d3\",\"temp\":2,\"ts\":1700000000011}\n";
    let (status, answer) = send(
        client()
            .post(records_url(server, "readings"))
            .bearer_auth(&f.ann)
            .header("Content-Type", "application/x-ndjson")
            .body(ndjson),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let two = seqs_of(&answer);
    assert_eq!(two.len(), 2);

    // ?return=items: the stored readings with their system fields.
    let (status, answer) = send(
        client()
            .post(records_url(server, "readings"))
            .query(&[("return", "items")])
            .bearer_auth(&f.ann)
            .json(&json!([{"device": "d4", "temp": 5}, {"device": "d4", "temp": 6}])),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let seqs = seqs_of(&answer);
    let items = answer["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{answer}");
    for (item, seq) in items.iter().zip(&seqs) {
        assert_eq!(item["id"], json!(reading_id(*seq)), "{item}");
        assert!(item["created"].is_string(), "{item}");
        assert!(item["owner"].is_string(), "{item}");
        assert!(
            item.get("rev").is_none() && item.get("updated").is_none(),
            "{item}"
        );
        assert_eq!(item["device"], "d4");
    }

    // Bad items: 400 naming each by index, and nothing written.
    let before = list_all(server, &f.ann, "readings", &[("limit", "1000")]).await;
    let (status, body) = ingest(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "d5", "temp": 1}, {"temp": 2}, {"device": "d5"},
                {"device": "d5", "temp": "hot"}]),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "validation_failed");
    let bad = body["error"]["details"]["items"]
        .as_object()
        .expect("details.items");
    let bad: Vec<&str> = bad.keys().map(String::as_str).collect();
    assert_eq!(bad, ["1", "3"], "{body}");
    // A client-chosen id is refused: retries go through Idempotency-Key.
    let (status, body) = ingest(
        server,
        &f.ann,
        "readings",
        &json!({"id": reading_id(999), "device": "d5", "temp": 1}),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let after = list_all(server, &f.ann, "readings", &[("limit", "1000")]).await;
    assert_eq!(ids(&after), ids(&before), "a refused batch wrote something");
    assert_eq!(after.len(), 8);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_answers_as_the_first_and_writes_nothing() {
    let f = fixture().await;
    let server = &f.server;
    let batch =
        json!([{"device": "d1", "temp": 1, "ts": T0}, {"device": "d1", "temp": 2, "ts": T0 + 1}]);
    let (status, first) = ingest(server, &f.ann, "readings", &batch, Some("batch-7")).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = ingest(server, &f.ann, "readings", &batch, Some("batch-7")).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(seqs_of(&again), seqs_of(&first));
    let listed = list_all(server, &f.ann, "readings", &[]).await;
    assert_eq!(id_set(&listed), ids_of_seqs(&seqs_of(&first)));
    // Another key is another batch.
    let (status, other) = ingest(server, &f.ann, "readings", &batch, Some("batch-8")).await;
    assert_eq!(status, 201, "{other}");
    assert!(seqs_of(&other)[0] > seqs_of(&first)[1]);
    assert_eq!(list_all(server, &f.ann, "readings", &[]).await.len(), 4);
}

#[tokio::test]
async fn one_reading_cannot_be_changed_or_deleted() {
    let f = fixture().await;
    let server = &f.server;
    let seqs = ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!({"device": "d1", "temp": 1}),
    )
    .await;
    let url = format!(
        "{}/{}",
        records_url(server, "readings"),
        reading_id(seqs[0])
    );
    let (status, body) = send(client().get(&url).bearer_auth(&f.ann)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["temp"], json!(1.0));
    for request in [
        client().patch(&url).json(&json!({"temp": 2})),
        client().put(&url).json(&json!({"device": "d1", "temp": 2})),
        client().delete(&url),
    ] {
        for token in [&f.ann, &f.admin] {
            let (status, body) = send(request.try_clone().expect("clone").bearer_auth(token)).await;
            assert_eq!(status, 405, "{body}");
            assert_eq!(error_code(&body), "method_not_allowed");
        }
    }
    let (_, body) = send(client().get(&url).bearer_auth(&f.ann)).await;
    assert_eq!(body["temp"], json!(1.0), "unchanged");
}

#[tokio::test]
async fn an_update_cannot_change_kind_series_or_time() {
    let f = fixture().await;
    let url = f.server.url("/api/collections/readings");
    for (patch, part) in [
        // Without the series options, so only the kind itself is wrong.
        (
            json!({"kind": "records", "series": null, "time": null,
                   "retention": {"max_bytes": null}}),
            "kind",
        ),
        (
            json!({"series": "other", "fields": {"other": {"type": "string"}}}),
            "series",
        ),
        (
            json!({"time": "at", "fields": {"at": {"type": "datetime"}}}),
            "time",
        ),
    ] {
        let (status, body) = send(client().patch(&url).bearer_auth(&f.admin).json(&patch)).await;
        assert_eq!(status, 400, "{patch}: {body}");
        assert_eq!(error_code(&body), "validation_failed");
        assert!(body["error"]["details"][part].is_string(), "{part}: {body}");
    }
    // Other parts still change.
    let patch = json!({"rules": {"list": "true", "view": "true", "create": "@user != null"}});
    let (status, body) = send(client().patch(&url).bearer_auth(&f.admin).json(&patch)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kind"], "series");
    assert_eq!(body["series"], "device");
    assert_eq!(body["time"], "ts");
}

#[tokio::test]
async fn line_protocol_with_an_api_key_appends_all_lines_or_none() {
    let f = fixture().await;
    let server = &f.server;
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(&f.admin)
            .json(&json!({"name": "gateway"})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().expect("secret").to_owned();
    let write = |body: &'static str| {
        client()
            .post(server.url("/api/v2/write"))
            .query(&[("bucket", "readings"), ("precision", "ms")])
            .header("Authorization", format!("Token {secret}"))
            .body(body)
    };
    let (status, body) = send(write(
        "temps,device=d1 temp=21.5 1700000000000\ntemps,device=d2 temp=22i 1700000000001\n",
    ))
    .await;
    assert_eq!(status, 204, "{body}");
    let listed = list_all(server, &f.admin, "readings", &[]).await;
    let got: Vec<(&str, f64, &str)> = listed
        .iter()
        .map(|r| {
            (
                r["device"].as_str().unwrap_or_default(),
                r["temp"].as_f64().unwrap_or_default(),
                r["ts"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("d1", 21.5, "2023-11-14T22:13:20.000Z"),
            ("d2", 22.0, "2023-11-14T22:13:20.001Z")
        ]
    );
    // A malformed second line: 400 naming it, and the first is not kept.
    let (status, body) = send(write(
        "temps,device=d3 temp=1 1700000000002\ntemps,device=d3 temp=\n",
    ))
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["line"], json!(2), "{body}");
    assert_eq!(list_all(server, &f.admin, "readings", &[]).await.len(), 2);
}
