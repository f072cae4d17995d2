//! Series collections live: a block of readings reaches subscribers as
//! one `create` per reading, each judged by the subscriber's rules; resume
//! from inside a block; the `expired` notice of a delete-before.

use super::*;

/// Readings of devices; each user sees only their own.
async fn readings_server() -> (TestServer, String, (String, String), (String, String)) {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "readings", "kind": "series", "series": "device", "time": "ts",
                "fields": {"device": {"type": "string", "required": true},
                           "temp": {"type": "number"}, "ts": {"type": "datetime"}},
                "rules": {"list": "owner = @user.id", "view": "owner = @user.id",
                          "create": "@user != null"}
            }),
        )
        .await;
    let mut users = Vec::new();
    for email in ["ann@example.com", "bob@example.com"] {
        let token = server.plain_user_token(&admin, email).await;
        let id = user_id(&server, &token).await;
        users.push((token, id.as_str().unwrap().to_owned()));
    }
    let bob = users.pop().unwrap();
    let ann = users.pop().unwrap();
    (server, admin, ann, bob)
}

/// Ingests `items` and returns their seqs in the batch's order.
async fn ingest(server: &TestServer, token: &str, items: Value) -> Vec<u64> {
    let (status, answer) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(token)
            .json(&items),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let first = answer["first_seq"].as_u64().unwrap();
    let last = answer["last_seq"].as_u64().unwrap();
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

/// Checks one reading event and returns its seq.
fn reading_seq(event: &Value) -> u64 {
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(event["op"], "create", "{event}");
    assert_eq!(event["topic"], "readings", "{event}");
    let seq = event["seq"].as_u64().unwrap();
    assert_eq!(event["record"]["id"], json!(reading_id(seq)), "{event}");
    seq
}

/// WebSocket events up to and including the reading at `last`.
async fn ws_seqs_until(ws: &mut Ws, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        seqs.push(reading_seq(&ws.next().await));
        assert!(seqs.len() < 10_000, "never reached {last}: {seqs:?}");
    }
    seqs
}

/// SSE events up to and including the reading at `last`; each event's id
/// is its seq.
async fn sse_seqs_until(sse: &mut Sse, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let event = sse.next().await.expect("the stream ended");
        assert_eq!(event.event, "event", "{event:?}");
        let seq = reading_seq(&event.data);
        assert_eq!(event.id, Some(seq.to_string()));
        seqs.push(seq);
        assert!(seqs.len() < 10_000, "never reached {last}: {seqs:?}");
    }
    seqs
}

async fn subscribe(ws: &mut Ws, since: Option<u64>) {
    let mut request = json!({"action": "subscribe", "topic": "readings"});
    if let Some(since) = since {
        request["since"] = json!(since);
    }
    let reply = ws.request(request).await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

#[tokio::test]
async fn each_subscriber_gets_one_create_per_reading_it_may_see_in_seq_order() {
    let (server, admin, (ann, ann_id), (bob, bob_id)) = readings_server().await;
    let mut ann_ws = Ws::connect(&server, Some(&ann)).await;
    let mut bob_ws = Ws::connect(&server, Some(&bob)).await;
    subscribe(&mut ann_ws, None).await;
    subscribe(&mut bob_ws, None).await;
    let (status, mut ann_sse) =
        Sse::open(&server, &format!("topic=readings&token={ann}"), &[]).await;
    assert_eq!(status, 200);
    let (status, mut bob_sse) =
        Sse::open(&server, &format!("topic=readings&token={bob}"), &[]).await;
    assert_eq!(status, 200);

    let mut mine: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    // One block holding both owners' readings, as an admin may write it.
    let mixed: Vec<Value> = (0..12)
        .map(|i| {
            let owner = if i % 3 == 0 { &bob_id } else { &ann_id };
            json!({"device": format!("d{}", i % 4), "temp": i, "owner": owner})
        })
        .collect();
    for (i, seq) in ingest(&server, &admin, Value::Array(mixed))
        .await
        .into_iter()
        .enumerate()
    {
        mine[usize::from(i % 3 == 0)].push(seq);
    }
    let batch = |n: i64| {
        Value::Array(
            (0..n)
                .map(|i| json!({"device": "own", "temp": i}))
                .collect(),
        )
    };
    mine[0].extend(ingest(&server, &ann, batch(7)).await);
    mine[1].extend(ingest(&server, &bob, batch(5)).await);
    mine[0].extend(ingest(&server, &ann, json!({"device": "one", "temp": 1})).await);
    // Bob's last reading comes before ann's: reading up to her own last,
    // ann's streams would show any of bob's that leaked.
    mine[1].extend(ingest(&server, &bob, batch(3)).await);
    mine[0].extend(ingest(&server, &ann, batch(2)).await);

    let ann_last = *mine[0].last().unwrap();
    let bob_last = *mine[1].last().unwrap();
    assert!(bob_last < ann_last);
    assert_eq!(
        ws_seqs_until(&mut ann_ws, ann_last).await,
        mine[0],
        "ann over WebSocket"
    );
    assert_eq!(
        sse_seqs_until(&mut ann_sse, ann_last).await,
        mine[0],
        "ann over SSE"
    );
    assert_eq!(
        ws_seqs_until(&mut bob_ws, bob_last).await,
        mine[1],
        "bob over WebSocket"
    );
    assert_eq!(
        sse_seqs_until(&mut bob_sse, bob_last).await,
        mine[1],
        "bob over SSE"
    );
    bob_ws.expect_quiet(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_resume_from_inside_a_block_replays_each_later_reading_once() {
    let (server, admin, (ann, ann_id), (_bob, bob_id)) = readings_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    subscribe(&mut ws, None).await;
    // One block of ten, every third bob's: ann sees seven.
    let items: Vec<Value> = (0..10)
        .map(|i| {
            let owner = if i % 3 == 2 { &bob_id } else { &ann_id };
            json!({"device": "d", "temp": i, "owner": owner})
        })
        .collect();
    let block = ingest(&server, &admin, Value::Array(items)).await;
    let ann_block: Vec<u64> = block
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(_, s)| *s)
        .collect();
    // Read into the block and stop in its middle.
    let seen = ann_block[3];
    assert_eq!(ws_seqs_until(&mut ws, seen).await, ann_block[..4]);
    drop(ws);
    let missed = ingest(
        &server,
        &ann,
        json!([{"device": "e", "temp": 1}, {"device": "e", "temp": 2}]),
    )
    .await;
    let mut expected: Vec<u64> = ann_block[4..].to_vec();
    expected.extend(&missed);

    let mut ws = Ws::connect(&server, Some(&ann)).await;
    subscribe(&mut ws, Some(seen)).await;
    let live = ingest(&server, &ann, json!({"device": "f", "temp": 3})).await;
    let mut with_live = expected.clone();
    with_live.extend(&live);
    assert_eq!(
        ws_seqs_until(&mut ws, live[0]).await,
        with_live,
        "WebSocket resume"
    );
    ws.expect_quiet(Duration::from_millis(300)).await;

    // The same from a position that is not ann's own reading (bob's, in
    // the block), and over SSE with Last-Event-ID.
    let bobs = block[5];
    let (status, mut sse) = Sse::open(
        &server,
        &format!("topic=readings&token={ann}"),
        &[("Last-Event-ID", &bobs.to_string())],
    )
    .await;
    assert_eq!(status, 200);
    let from_bobs: Vec<u64> = with_live.iter().copied().filter(|s| *s > bobs).collect();
    assert_eq!(
        sse_seqs_until(&mut sse, live[0]).await,
        from_bobs,
        "SSE resume"
    );
    let (status, mut sse) = Sse::open(
        &server,
        &format!("topic=readings&token={ann}"),
        &[("Last-Event-ID", &seen.to_string())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        sse_seqs_until(&mut sse, live[0]).await,
        with_live,
        "SSE resume"
    );
}

#[tokio::test]
async fn delete_before_sends_one_expired_notice() {
    let (server, admin, (ann, _), _) = readings_server().await;
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    subscribe(&mut ws, None).await;
    let (status, mut sse) = Sse::open(&server, &format!("topic=readings&token={ann}"), &[]).await;
    assert_eq!(status, 200);
    let t0: i64 = 1_700_000_000_000;
    let items: Vec<Value> = (0..6)
        .map(|i| json!({"device": "d", "ts": t0 + i}))
        .collect();
    let seqs = ingest(&server, &ann, Value::Array(items)).await;
    assert_eq!(ws_seqs_until(&mut ws, seqs[5]).await, seqs);
    assert_eq!(sse_seqs_until(&mut sse, seqs[5]).await, seqs);
    let (status, body) = send(
        client()
            .delete(server.url("/api/collections/readings/records"))
            .query(&[("before", (t0 + 3).to_string())])
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let notice = ws.next().await;
    assert_eq!(notice["type"], "expired", "{notice}");
    assert_eq!(notice["topic"], "readings");
    assert!(notice["before"].is_string(), "{notice}");
    let cut = notice["seq"].as_u64().unwrap();
    assert!(cut > seqs[5], "{notice}");
    ws.expect_quiet(Duration::from_millis(300)).await;
    let event = sse.next().await.unwrap();
    assert_eq!(event.event, "expired", "{event:?}");
    assert_eq!(event.data["seq"], json!(cut));
    assert_eq!(event.data["before"], notice["before"]);

    // A resume from before the cut replays the notice after the readings
    // that were there.
    let mut again = Ws::connect(&server, Some(&ann)).await;
    subscribe(&mut again, Some(seqs[4])).await;
    assert_eq!(reading_seq(&again.next().await), seqs[5]);
    let notice = again.next().await;
    assert_eq!(
        (notice["type"].as_str(), notice["seq"].as_u64()),
        (Some("expired"), Some(cut))
    );
}

/// A subscription filtered to one source gets exactly that source's
/// readings, one with any other filter gets what its filter lets through,
/// and a changed filter takes effect at once.
#[tokio::test]
async fn readings_reach_subscribers_by_their_filter_on_the_source() {
    let (server, admin, _, _) = readings_server().await;
    let subscribe_with =
        |filter: &str| json!({"action": "subscribe", "topic": "readings", "filter": filter});
    let mut only_a = Ws::connect(&server, Some(&admin)).await;
    let mut a_or_b = Ws::connect(&server, Some(&admin)).await;
    let mut moves = Ws::connect(&server, Some(&admin)).await;
    for (ws, filter) in [
        (&mut only_a, "device = 'a'"),
        (&mut a_or_b, "device = 'a' || device = 'b'"),
        (&mut moves, "device = 'b' && temp >= 0"),
    ] {
        let reply = ws.request(subscribe_with(filter)).await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    let batch: Vec<Value> = (0..9)
        .map(|i| {
            let device = ["a", "b", "c"][i % 3];
            json!({"device": device, "temp": i})
        })
        .collect();
    let seqs = ingest(&server, &admin, Value::Array(batch.clone())).await;
    let of = |devices: &[&str]| -> Vec<u64> {
        seqs.iter()
            .zip(&batch)
            .filter(|(_, r)| devices.contains(&r["device"].as_str().unwrap()))
            .map(|(seq, _)| *seq)
            .collect()
    };
    let last = |seqs: &[u64]| *seqs.last().unwrap();
    let (a, ab, b) = (of(&["a"]), of(&["a", "b"]), of(&["b"]));
    assert_eq!(ws_seqs_until(&mut only_a, last(&a)).await, a);
    assert_eq!(ws_seqs_until(&mut a_or_b, last(&ab)).await, ab);
    assert_eq!(ws_seqs_until(&mut moves, last(&b)).await, b);

    let reply = moves.request(subscribe_with("device = 'c'")).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let seqs = ingest(&server, &admin, Value::Array(batch.clone())).await;
    let c: Vec<u64> = seqs
        .iter()
        .zip(&batch)
        .filter(|(_, r)| r["device"] == "c")
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(ws_seqs_until(&mut moves, last(&c)).await, c);
    moves.expect_quiet(Duration::from_millis(300)).await;
}
