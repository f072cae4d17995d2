//! Reading back: owner rules on every read path, time windows and
//! filters, cursor paging, dropping old readings.

use super::*;

#[tokio::test]
async fn each_owner_sees_only_their_own_readings_in_list_latest_and_get() {
    let f = fixture().await;
    let server = &f.server;
    // Both write to `shared`; ann's readings there are newer than bob's,
    // so bob's latest of `shared` is not the newest one.
    let ann_seqs = ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "shared", "temp": 1, "ts": T0 + 5},
                {"device": "ann-only", "temp": 2, "ts": T0 + 1},
                {"device": "shared", "temp": 3, "ts": T0 + 9}]),
    )
    .await;
    let bob_seqs = ingest_ok(
        server,
        &f.bob,
        "readings",
        &json!([{"device": "shared", "temp": 10, "ts": T0 + 3},
                {"device": "shared", "temp": 11, "ts": T0 + 4}]),
    )
    .await;
    for (token, own, other) in [
        (&f.ann, &ann_seqs, &bob_seqs),
        (&f.bob, &bob_seqs, &ann_seqs),
    ] {
        let listed = list_all(server, token, "readings", &[]).await;
        assert_eq!(id_set(&listed), ids_of_seqs(own));
        for seq in own {
            let url = format!("{}/{}", records_url(server, "readings"), reading_id(*seq));
            assert_eq!(send(client().get(&url).bearer_auth(token)).await.0, 200);
        }
        for seq in other {
            let url = format!("{}/{}", records_url(server, "readings"), reading_id(*seq));
            let (status, body) = send(client().get(&url).bearer_auth(token)).await;
            assert_eq!(status, 404, "another owner's reading: {body}");
        }
    }
    let latest = |token: &str| {
        let request = client()
            .get(server.url("/api/collections/readings/latest"))
            .bearer_auth(token);
        async move {
            let (status, body) = send(request).await;
            assert_eq!(status, 200, "{body}");
            let mut pairs: Vec<(String, f64)> = body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|r| {
                    (
                        r["device"].as_str().expect("device").to_owned(),
                        r["temp"].as_f64().expect("temp"),
                    )
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs
        }
    };
    assert_eq!(
        latest(&f.ann).await,
        [("ann-only".to_owned(), 2.0), ("shared".to_owned(), 3.0)]
    );
    assert_eq!(latest(&f.bob).await, [("shared".to_owned(), 11.0)]);
    assert_eq!(latest(&f.admin).await.len(), 2);
    // Anonymous callers match no owner.
    let (status, body) = send(client().get(records_url(server, "readings"))).await;
    assert!(
        status == 403 || (status == 200 && body["items"] == json!([])),
        "{status} {body}"
    );
}

#[tokio::test]
async fn from_is_inclusive_to_is_exclusive_and_filters_apply() {
    let f = fixture().await;
    let server = &f.server;
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"device": if i % 2 == 0 { "even" } else { "odd" }, "temp": i * 10, "ts": T0 + i * 10}))
        .collect();
    let seqs = ingest_ok(server, &f.ann, "readings", &Value::Array(items)).await;
    let window = |from: String, to: String, extra: Vec<(&'static str, &'static str)>| {
        let token = f.ann.clone();
        async move {
            let mut query = vec![("from", from.as_str()), ("to", to.as_str())];
            query.extend(extra);
            ids(&list_all(server, &token, "readings", &query).await)
        }
    };
    let id = |i: usize| reading_id(seqs[i]);
    assert_eq!(
        window((T0 + 10).to_string(), (T0 + 40).to_string(), vec![]).await,
        [id(1), id(2), id(3)]
    );
    // The same edges as RFC 3339.
    assert_eq!(
        window(
            "2023-11-14T22:13:20.010Z".into(),
            "2023-11-14T22:13:20.040Z".into(),
            vec![]
        )
        .await,
        [id(1), id(2), id(3)]
    );
    assert_eq!(
        window(
            (T0 + 10).to_string(),
            (T0 + 40).to_string(),
            vec![("sort", "-time")]
        )
        .await,
        [id(3), id(2), id(1)]
    );
    assert_eq!(
        window(
            T0.to_string(),
            (T0 + 100).to_string(),
            vec![("filter", "device = 'even' && temp > 0")]
        )
        .await,
        [id(2), id(4)]
    );
    assert!(window((T0 + 10).to_string(), (T0 + 10).to_string(), vec![])
        .await
        .is_empty());
}

#[tokio::test]
async fn cursors_page_through_out_of_order_batches_once_each_in_time_order() {
    let f = fixture().await;
    let server = &f.server;
    // Three batches whose times interleave and repeat, so pages cross
    // blocks and ties are broken by seq.
    let mut expected: Vec<(i64, u64)> = Vec::new();
    let mut n = 0i64;
    for (batch, size) in [(0i64, 900i64), (1, 700), (2, 900)] {
        let items: Vec<Value> = (0..size)
            .map(|i| {
                n += 1;
                let time = T0 + (i * 7919 + batch * 13) % 1200;
                json!({"device": format!("d{}", i % 5), "n": n, "ts": time})
            })
            .collect();
        let times: Vec<i64> = items
            .iter()
            .map(|r| r["ts"].as_i64().unwrap_or(0))
            .collect();
        let seqs = ingest_ok(server, &f.ann, "readings", &Value::Array(items)).await;
        expected.extend(times.into_iter().zip(seqs));
    }
    assert_eq!(expected.len(), 2500);
    expected.sort();
    let ascending: Vec<String> = expected.iter().map(|(_, s)| reading_id(*s)).collect();
    let got = list_all(server, &f.ann, "readings", &[("limit", "97")]).await;
    assert_eq!(ids(&got), ascending, "ascending pages");
    let got = list_all(
        server,
        &f.ann,
        "readings",
        &[("limit", "113"), ("sort", "-time")],
    )
    .await;
    let mut descending = ascending.clone();
    descending.reverse();
    assert_eq!(ids(&got), descending, "descending pages");
    // A window with a filter pages the same way.
    let query = [
        ("limit", "50"),
        ("from", "1700000000100"),
        ("to", "1700000000900"),
        ("filter", "device = 'd3'"),
    ];
    let got = list_all(server, &f.ann, "readings", &query).await;
    assert!(got.iter().all(|r| r["device"] == "d3"));
    let mut times: Vec<i64> = Vec::new();
    for r in &got {
        let time = expected
            .iter()
            .find(|(_, s)| reading_id(*s) == r["id"])
            .map(|(t, _)| *t)
            .expect("a known reading");
        times.push(time);
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "time order");
    assert!(times.iter().all(|t| (T0 + 100..T0 + 900).contains(t)));
    let wanted = id_set(&got);
    assert_eq!(wanted.len(), got.len(), "no reading twice");
}

#[tokio::test]
async fn delete_before_drops_older_readings_and_keeps_the_rest_of_a_straddling_block() {
    let f = fixture().await;
    let server = &f.server;
    let old = ingest_ok(
        server,
        &f.ann,
        "readings",
        &json!([{"device": "d", "ts": T0 - 100}, {"device": "d", "ts": T0 - 50}]),
    )
    .await;
    let items: Vec<Value> = (0..10)
        .map(|i| json!({"device": "d", "ts": T0 + i}))
        .collect();
    let straddling = ingest_ok(server, &f.ann, "readings", &Value::Array(items)).await;
    let url = records_url(server, "readings");
    let cut = (T0 + 5).to_string();
    let (status, body) = send(
        client()
            .delete(&url)
            .query(&[("before", &cut)])
            .bearer_auth(&f.ann),
    )
    .await;
    assert_eq!(status, 403, "only admins drop readings: {body}");
    let (status, body) = send(client().delete(&url).bearer_auth(&f.admin)).await;
    assert_eq!(status, 400, "a delete says before when: {body}");
    let (status, body) = send(
        client()
            .delete(&url)
            .query(&[("before", &cut)])
            .bearer_auth(&f.admin),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let kept = list_all(server, &f.ann, "readings", &[]).await;
    assert_eq!(ids(&kept), ids(&list_of(&straddling[5..])));
    for seq in old.iter().chain(&straddling[..5]) {
        let one = format!("{url}/{}", reading_id(*seq));
        assert_eq!(send(client().get(&one).bearer_auth(&f.ann)).await.0, 404);
    }
    let (_, latest) = send(
        client()
            .get(server.url("/api/collections/readings/latest"))
            .bearer_auth(&f.ann),
    )
    .await;
    assert_eq!(latest["items"][0]["id"], json!(reading_id(straddling[9])));
}

fn list_of(seqs: &[u64]) -> Vec<Value> {
    seqs.iter().map(|s| json!({"id": reading_id(*s)})).collect()
}
