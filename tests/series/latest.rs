//! `latest`: the newest reading of each source the caller may list, in
//! source order, judged like a list (rules, filter, protected fields) and
//! following appends made after an earlier call.

use super::*;

/// `GET latest` as `token` (none: anonymous) with `query`; the items.
async fn latest(server: &TestServer, token: Option<&str>, query: &[(&str, &str)]) -> Vec<Value> {
    let mut request = client()
        .get(server.url("/api/collections/readings/latest"))
        .query(query);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let (status, body) = send(request).await;
    assert_eq!(status, 200, "latest {query:?}: {body}");
    body["items"].as_array().expect("items").clone()
}

/// Each item as (device, temp).
fn temps(items: &[Value]) -> Vec<(String, f64)> {
    items
        .iter()
        .map(|r| {
            let device = r["device"].as_str().expect("device").to_owned();
            (device, r["temp"].as_f64().expect("temp"))
        })
        .collect()
}

fn named(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(d, t)| ((*d).to_owned(), *t)).collect()
}

#[tokio::test]
async fn latest_hides_protected_fields_from_non_admins_when_the_rules_pass_for_all() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut definition = readings_definition("readings");
    definition["fields"]["secret"] = json!({"type": "string"});
    definition["protected"] = json!(["secret"]);
    // Rules about the caller alone: one decision for every reading.
    definition["rules"] = json!({"list": "@user != null", "view": "@user != null",
                                 "create": "@user != null"});
    server.create_collection(&admin, definition).await;
    let ann = server.plain_user_token(&admin, "ann@example.com").await;
    ingest_ok(
        &server,
        &ann,
        "readings",
        &json!([{"device": "b", "temp": 2, "secret": "s-b", "ts": T0 + 1},
                {"device": "a", "temp": 1, "secret": "s-a", "ts": T0}]),
    )
    .await;
    for token in [&admin, &ann] {
        let items = latest(&server, Some(token), &[]).await;
        assert_eq!(temps(&items), named(&[("a", 1.0), ("b", 2.0)]));
        for item in &items {
            let shown = item.get("secret").is_some();
            assert_eq!(
                shown,
                token == &admin,
                "secret shown to the wrong caller: {item}"
            );
        }
    }
    // A filter cannot probe the protected field either.
    let probe = [("filter", "secret = 's-a'")];
    assert_eq!(
        latest(&server, Some(&ann), &probe).await,
        Vec::<Value>::new()
    );
    assert_eq!(latest(&server, Some(&admin), &probe).await.len(), 1);
    // The same rules keep anonymous callers out of every reading.
    assert_eq!(latest(&server, None, &[]).await, Vec::<Value>::new());
}

#[tokio::test]
async fn latest_applies_the_filter_and_falls_back_to_an_older_reading_that_passes() {
    let f = fixture().await;
    let server = &f.server;
    ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "x", "temp": 10, "ts": T0},
                {"device": "x", "temp": 1, "ts": T0 + 5},
                {"device": "y", "temp": 20, "ts": T0 + 1},
                {"device": "z", "temp": 0, "ts": T0 + 2}]),
    )
    .await;
    let warm = [("filter", "temp > 5")];
    for token in [&f.admin, &f.ann] {
        assert_eq!(
            temps(&latest(server, Some(token), &[]).await),
            named(&[("x", 1.0), ("y", 20.0), ("z", 0.0)])
        );
        assert_eq!(
            temps(&latest(server, Some(token), &warm).await),
            named(&[("x", 10.0), ("y", 20.0)])
        );
    }
    assert_eq!(
        latest(server, Some(&f.bob), &warm).await,
        Vec::<Value>::new()
    );
    // Cut down to some fields, each item keeps its id.
    let items = latest(server, Some(&f.admin), &[("fields", "temp")]).await;
    let keys: Vec<Vec<&String>> = items
        .iter()
        .map(|i| i.as_object().expect("object").keys().collect())
        .collect();
    assert_eq!(keys, vec![vec!["id", "temp"]; 3]);
}

#[tokio::test]
async fn an_append_after_a_latest_call_shows_in_the_next_one() {
    let f = fixture().await;
    let server = &f.server;
    ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "x", "temp": 1, "ts": T0 + 10}]),
    )
    .await;
    for token in [&f.admin, &f.ann] {
        assert_eq!(
            temps(&latest(server, Some(token), &[]).await),
            named(&[("x", 1.0)])
        );
    }
    let newer = ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "x", "temp": 2, "ts": T0 + 20},
                {"device": "w", "temp": 3, "ts": T0}]),
    )
    .await;
    // A late reading is not the newest.
    ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "x", "temp": 4, "ts": T0 + 15}]),
    )
    .await;
    for token in [&f.admin, &f.ann] {
        let items = latest(server, Some(token), &[]).await;
        assert_eq!(temps(&items), named(&[("w", 3.0), ("x", 2.0)]));
        assert_eq!(items[1]["id"], json!(reading_id(newer[0])));
    }
}
