//! `aggregate` over REST: buckets of only what the caller may list, with
//! filters, fills and bad queries named.

use super::*;

/// Ann's and Bob's readings of one device, a minute apart, two minutes each.
async fn two_owners(fx: &Fixture) {
    let ann: Vec<Value> = (0..4)
        .map(|i| json!({"device": "gw", "temp": 10 + i, "ts": T0 + i * 30_000}))
        .collect();
    let bob: Vec<Value> = (0..2)
        .map(|i| json!({"device": "gw", "temp": 100 + i, "ts": T0 + i * 30_000}))
        .collect();
    ingest_ok(&fx.server, &fx.ann, "readings", &json!(ann)).await;
    ingest_ok(&fx.server, &fx.bob, "readings", &json!(bob)).await;
}

async fn aggregate(fx: &Fixture, token: &str, query: &str) -> (u16, Value) {
    let url = fx
        .server
        .url(&format!("/api/collections/readings/aggregate?{query}"));
    send(client().get(url).bearer_auth(token)).await
}

fn values(answer: &Value, label: &str) -> Vec<Value> {
    answer["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["values"][label].clone())
        .collect()
}

#[tokio::test]
async fn buckets_cover_only_the_readings_the_caller_may_list() {
    let fx = fixture().await;
    two_owners(&fx).await;
    let query = format!(
        "from={T0}&to={}&bucket=1m&agg=count(),max(temp),first(temp)&group=device",
        T0 + 120_000
    );
    let (status, ann) = aggregate(&fx, &fx.ann, &query).await;
    assert_eq!(status, 200, "{ann}");
    assert_eq!(values(&ann, "count()"), [json!(2), json!(2)]);
    assert_eq!(values(&ann, "max(temp)"), [json!(11.0), json!(13.0)]);
    assert_eq!(values(&ann, "first(temp)"), [json!(10.0), json!(12.0)]);
    assert_eq!(ann["buckets"][0]["group"], json!({"device": "gw"}));
    assert_eq!(ann["buckets"][0]["t"], "2023-11-14T22:13:00.000Z");
    let (_, bob) = aggregate(&fx, &fx.bob, &query).await;
    assert_eq!(values(&bob, "count()"), [json!(2)]);
    let (_, admin) = aggregate(&fx, &fx.admin, &query).await;
    assert_eq!(values(&admin, "count()"), [json!(4), json!(2)]);
    // A filter narrows further; an empty bucket is filled when asked.
    let filtered = format!("{query}&filter=temp%20%3E%2011&fill=null");
    let (status, ann) = aggregate(&fx, &fx.ann, &filtered).await;
    assert_eq!(status, 200, "{ann}");
    // from..to spans three minute buckets: 22:13, 22:14 and 22:15.
    assert_eq!(values(&ann, "count()"), [json!(0), json!(2), json!(0)]);
    assert_eq!(
        values(&ann, "max(temp)"),
        [Value::Null, json!(13.0), Value::Null]
    );
}

#[tokio::test]
async fn a_bad_query_names_each_bad_parameter() {
    let fx = fixture().await;
    let (status, answer) = aggregate(&fx, &fx.ann, "bucket=2y&agg=median(temp)&fill=maybe").await;
    assert_eq!(
        (status, error_code(&answer)),
        (400, "validation_failed"),
        "{answer}"
    );
    for key in ["bucket", "agg", "fill"] {
        assert!(
            answer["error"]["details"].get(key).is_some(),
            "{key}: {answer}"
        );
    }
    // Like a list: someone no reading's rule lets in gets no buckets.
    two_owners(&fx).await;
    let url = "/api/collections/readings/aggregate?bucket=1m&agg=count()";
    let (status, answer) = send(client().get(fx.server.url(url))).await;
    assert_eq!((status, &answer["buckets"]), (200, &json!([])), "{answer}");
}

/// A protected field is not aggregated for anyone but an admin, over REST
/// or in a bucket subscription: `max(secret)` would show what every read
/// hides.
#[tokio::test]
async fn only_admins_aggregate_a_protected_field() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut definition = readings_definition("readings");
    definition["fields"]["salary"] = json!({"type": "number"});
    definition["protected"] = json!(["salary"]);
    definition["rules"] = json!({"list": "@user != null", "view": "@user != null",
                                 "create": "@user != null"});
    server.create_collection(&admin, definition).await;
    let ann = server.plain_user_token(&admin, "ann@example.com").await;
    ingest_ok(
        &server,
        &ann,
        "readings",
        &json!([{"device": "a", "temp": 1, "salary": 90_000, "ts": T0}]),
    )
    .await;
    let url = |query: &str| server.url(&format!("/api/collections/readings/aggregate?{query}"));
    for query in [
        "bucket=1m&agg=max(salary)",
        "bucket=1m&agg=first(salary)",
        "bucket=1m&agg=count()&group=salary",
    ] {
        let (status, answer) = send(client().get(url(query)).bearer_auth(&ann)).await;
        assert_eq!(status, 403, "{query}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("salary"),
            "{answer}"
        );
        let (status, answer) = send(client().get(url(query)).bearer_auth(&admin)).await;
        assert_eq!(status, 200, "{query}: {answer}");
    }
    let (status, answer) = send(
        client()
            .get(url("bucket=1m&agg=max(temp)"))
            .bearer_auth(&ann),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let mut ws = common::live::Ws::connect(&server, Some(&ann)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings",
                        "aggregate": {"bucket": "1m", "agg": ["max(salary)"]}}))
        .await;
    assert_eq!(reply["code"], "forbidden", "{reply}");
}
