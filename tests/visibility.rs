//! One probe matrix over every path that shows a record: REST list and get,
//! WebSocket `list` and `get`, live events over WebSocket and SSE, and
//! replay (`since`) over WebSocket and SSE. Each probe asks the same
//! question of every path and expects the same answer, against the real
//! server over real sockets.
//!
//! Probes: a protected field through a filter and through a sort; `list`
//! narrower than `view`; owner; tenant; groups; an identity change while a
//! connection stays open.

mod common;

use std::collections::BTreeSet;

use common::live::{Sse, Ws};
use common::{client, send, TestServer};
use serde_json::{json, Value};

type Ids = BTreeSet<String>;

const PASSWORD: &str = "probe-password";

struct Probe<'a> {
    server: &'a TestServer,
    admin: String,
    collection: String,
    /// A custom topic whose one message closes each stream: everything
    /// written before it has arrived once it does.
    done: String,
}

impl<'a> Probe<'a> {
    async fn new(server: &'a TestServer, name: &str, definition: Value) -> Probe<'a> {
        let admin = server.admin_token().await;
        let mut definition = definition;
        definition["name"] = json!(name);
        server.create_collection(&admin, definition).await;
        let done = format!("{name}-done");
        let (status, body) = send(
            client()
                .post(server.url("/api/topics"))
                .bearer_auth(&admin)
                .json(
                    &json!({"name": done, "publish": "true", "subscribe": "true", "history": 10}),
                ),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        Probe {
            server,
            admin,
            collection: name.to_owned(),
            done,
        }
    }

    async fn user(&self, email: &str, extra: Value) -> (String, String) {
        let mut body = json!({"email": email, "password": PASSWORD});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let user = self.server.create_user(&self.admin, body).await;
        let token = self.server.signin(email, PASSWORD).await;
        (user["id"].as_str().expect("id").to_owned(), token)
    }

    async fn write(&self, token: &str, records: &[Value]) -> Vec<String> {
        let mut ids = Vec::new();
        for record in records {
            let (status, body) = send(
                client()
                    .post(
                        self.server
                            .url(&format!("/api/collections/{}/records", self.collection)),
                    )
                    .bearer_auth(token)
                    .json(record),
            )
            .await;
            assert_eq!(status, 201, "{body}");
            ids.push(body["id"].as_str().expect("id").to_owned());
        }
        ids
    }

    /// Publishes the closing message; `data` must pass the filter under
    /// test (SSE applies one filter to every topic of a stream).
    async fn finish(&self, data: &Value) {
        let (status, body) = send(
            client()
                .post(
                    self.server
                        .url(&format!("/api/topics/{}/messages", self.done)),
                )
                .bearer_auth(&self.admin)
                .json(&json!({"data": data})),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }

    async fn rest_list(&self, token: &str, filter: &str, sort: &str) -> Vec<String> {
        let (status, body) = send(
            client()
                .get(
                    self.server
                        .url(&format!("/api/collections/{}/records", self.collection)),
                )
                .bearer_auth(token)
                .query(&[("filter", filter), ("sort", sort), ("limit", "1000")]),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        ids_of(&body["items"])
    }

    async fn rest_get(&self, token: &str, ids: &[String]) -> Ids {
        let mut seen = Ids::new();
        for id in ids {
            let (status, body) = send(
                client()
                    .get(self.server.url(&format!(
                        "/api/collections/{}/records/{id}",
                        self.collection
                    )))
                    .bearer_auth(token),
            )
            .await;
            match status {
                200 => {
                    assert_no_secret(&body);
                    seen.insert(id.clone());
                }
                404 => {}
                other => panic!("get {id}: {other} {body}"),
            }
        }
        seen
    }
}

async fn ws_list(ws: &mut Ws, collection: &str, filter: &str, sort: &str) -> Vec<String> {
    let reply = ws
        .request(
            json!({"action": "list", "collection": collection, "filter": filter,
            "sort": sort, "limit": 1000}),
        )
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    ids_of(&reply["items"])
}

async fn ws_get(ws: &mut Ws, collection: &str, ids: &[String]) -> Ids {
    let mut seen = Ids::new();
    for id in ids {
        let reply = ws
            .request(json!({"action": "get", "collection": collection, "record": id}))
            .await;
        match reply["type"].as_str() {
            Some("ok") => {
                assert_no_secret(&reply["record"]);
                seen.insert(id.clone());
            }
            _ => assert_eq!(reply["code"], "not_found", "{reply}"),
        }
    }
    seen
}

fn ids_of(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            assert_no_secret(r);
            r["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

fn assert_no_secret(record: &Value) {
    assert!(
        record.get("secret").is_none(),
        "protected field shown: {record}"
    );
}

/// Subscribes to the collection (with `filter`) and to the closing topic.
async fn ws_subscribe(ws: &mut Ws, probe: &Probe<'_>, filter: &str, since: Option<u64>) {
    let mut request = json!({"action": "subscribe", "topic": probe.collection, "filter": filter});
    if let Some(since) = since {
        request["since"] = json!(since);
    }
    let reply = ws.request(request).await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut request = json!({"action": "subscribe", "topic": probe.done});
    if let Some(since) = since {
        request["since"] = json!(since);
    }
    let reply = ws.request(request).await;
    assert_eq!(reply["type"], "ok", "{reply}");
}

/// Record ids of events until the closing message: created or entered
/// minus deleted or left, as a client keeping a live list would hold.
async fn ws_collect(ws: &mut Ws, probe: &Probe<'_>) -> Ids {
    let mut held = Ids::new();
    loop {
        let frame = ws.next().await;
        if frame["topic"] == json!(probe.done) && frame["type"] == "message" {
            return held;
        }
        apply(&mut held, &frame);
    }
}

fn apply(held: &mut Ids, frame: &Value) {
    if frame["type"] != "event" {
        return;
    }
    assert_no_secret(&frame["record"]);
    let id = frame["record"]["id"].as_str().expect("event id").to_owned();
    match frame["op"].as_str() {
        Some("create" | "update") => {
            held.insert(id);
        }
        Some("delete") => {
            held.remove(&id);
        }
        other => panic!("op {other:?}"),
    }
}

async fn sse_open(probe: &Probe<'_>, token: &str, filter: &str, since: Option<u64>) -> Sse {
    let mut query = format!(
        "topic={}&topic={}&filter={}",
        probe.collection,
        probe.done,
        urlencode(filter)
    );
    if let Some(since) = since {
        query.push_str(&format!("&since={since}"));
    }
    let auth = format!("Bearer {token}");
    let (status, sse) = Sse::open(probe.server, &query, &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    sse
}

async fn sse_collect(sse: &mut Sse, probe: &Probe<'_>) -> Ids {
    let mut held = Ids::new();
    loop {
        let event = sse.next().await.expect("stream ended early");
        if event.data["topic"] == json!(probe.done) {
            return held;
        }
        apply(&mut held, &event.data);
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asks every path what `token` sees of the records `write` makes, through
/// `filter`, and checks each against `expected` (`expected_get` for the
/// paths that reach one record by id, which only `view` governs).
async fn check_every_path(
    probe: &Probe<'_>,
    token: &str,
    filter: &str,
    done_data: Value,
    records: &[Value],
    expected: &dyn Fn(&[String]) -> Ids,
    expected_get: &dyn Fn(&[String]) -> Ids,
) {
    let mut live = Ws::connect(probe.server, Some(token)).await;
    ws_subscribe(&mut live, probe, filter, None).await;
    // The stream's subscriptions exist once its response has begun.
    let mut live_sse = sse_open(probe, token, filter, None).await;

    let ids = probe.write(&probe.admin, records).await;
    probe.finish(&done_data).await;
    let want = expected(&ids);
    let want_get = expected_get(&ids);

    assert_eq!(ws_collect(&mut live, probe).await, want, "WebSocket live");
    assert_eq!(sse_collect(&mut live_sse, probe).await, want, "SSE live");

    let mut replay = Ws::connect(probe.server, Some(token)).await;
    ws_subscribe(&mut replay, probe, filter, Some(0)).await;
    assert_eq!(
        ws_collect(&mut replay, probe).await,
        want,
        "WebSocket replay"
    );
    let mut replay_sse = sse_open(probe, token, filter, Some(0)).await;
    assert_eq!(
        sse_collect(&mut replay_sse, probe).await,
        want,
        "SSE replay"
    );

    let listed: Ids = probe
        .rest_list(token, filter, "")
        .await
        .into_iter()
        .collect();
    assert_eq!(listed, want, "REST list");
    let listed: Ids = ws_list(&mut replay, &probe.collection, filter, "")
        .await
        .into_iter()
        .collect();
    assert_eq!(listed, want, "WebSocket list");
    if filter.is_empty() {
        assert_eq!(probe.rest_get(token, &ids).await, want_get, "REST get");
        assert_eq!(
            ws_get(&mut replay, &probe.collection, &ids).await,
            want_get,
            "WebSocket get"
        );
    }
}

fn all(ids: &[String]) -> Ids {
    ids.iter().cloned().collect()
}

fn none(_: &[String]) -> Ids {
    Ids::new()
}

fn picked(ids: &[String], which: &[usize]) -> Ids {
    which.iter().map(|&i| ids[i].clone()).collect()
}

#[tokio::test]
async fn a_protected_field_cannot_be_probed_through_a_filter_on_any_path() {
    let server = TestServer::start();
    let probe = Probe::new(
        &server,
        "vault",
        json!({"fields": {"label": {"type": "string"}, "secret": {"type": "string"}},
               "protected": ["secret"], "rules": {"list": "true", "view": "true"}}),
    )
    .await;
    let (_, token) = probe.user("reader@example.com", json!({})).await;
    let records: Vec<Value> = ["apple", "kiwi", "zebra"]
        .iter()
        .map(|s| json!({"label": "x", "secret": s}))
        .collect();
    // Before the fix, `secret > 'h'` matched kiwi and zebra on live and
    // replay paths, one character of the secret per subscription.
    check_every_path(
        &probe,
        &token,
        "secret > 'h'",
        json!({"secret": "zz"}),
        &records,
        &none,
        &all,
    )
    .await;
    // The field behaves as absent, not as hidden-but-matching.
    let probe = Probe::new(
        &server,
        "vault2",
        json!({"fields": {"label": {"type": "string"}, "secret": {"type": "string"}},
               "protected": ["secret"], "rules": {"list": "true", "view": "true"}}),
    )
    .await;
    check_every_path(
        &probe,
        &token,
        "secret = null",
        json!({"label": "x"}),
        &records,
        &all,
        &all,
    )
    .await;
}

#[tokio::test]
async fn a_protected_field_cannot_be_probed_through_a_sort() {
    let server = TestServer::start();
    let probe = Probe::new(
        &server,
        "vault",
        json!({"fields": {"secret": {"type": "string"}},
               "protected": ["secret"], "rules": {"list": "true", "view": "true"}}),
    )
    .await;
    let (_, token) = probe.user("reader@example.com", json!({})).await;
    // Ids ascending, secrets descending: a sort that saw the secret would
    // reverse the order.
    let ids = probe
        .write(
            &probe.admin,
            &[
                json!({"id": "a1", "secret": "z"}),
                json!({"id": "a2", "secret": "m"}),
                json!({"id": "a3", "secret": "a"}),
            ],
        )
        .await;
    let by_secret = probe.rest_list(&token, "", "secret").await;
    assert_eq!(by_secret, ids, "REST list sorted by a protected field");
    let mut ws = Ws::connect(&server, Some(&token)).await;
    let by_secret = ws_list(&mut ws, "vault", "", "secret").await;
    assert_eq!(by_secret, ids, "WebSocket list sorted by a protected field");
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/vault/records?sort=secret"))
            .bearer_auth(&probe.admin),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let admin_order: Vec<&str> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(admin_order, ["a3", "a2", "a1"], "admins sort by it");
}

#[tokio::test]
async fn list_narrower_than_view_governs_every_collection_path() {
    let server = TestServer::start();
    let probe = Probe::new(
        &server,
        "notes",
        json!({"fields": {"open": {"type": "boolean"}},
               "rules": {"list": "open = true", "view": "@user != null"}}),
    )
    .await;
    let (_, token) = probe.user("reader@example.com", json!({})).await;
    let records = [
        json!({"open": true}),
        json!({"open": false}),
        json!({"open": true}),
    ];
    // Before the fix, live events and replay checked `view` only and sent
    // the closed note to collection subscribers.
    check_every_path(
        &probe,
        &token,
        "",
        json!({}),
        &records,
        &|ids: &[String]| picked(ids, &[0, 2]),
        &all,
    )
    .await;
}

#[tokio::test]
async fn owner_tenant_and_group_rules_hold_on_every_path() {
    let server = TestServer::start();
    let rule = "owner = @user.id || (tenant = @user.tenant && @user.tenant != null) || team in @user.groups";
    let probe = Probe::new(
        &server,
        "docs",
        json!({"fields": {"tenant": {"type": "string"}, "team": {"type": "string"}},
               "strict": false,
               "rules": {"list": rule, "view": rule, "create": "true"}}),
    )
    .await;
    let (_, token) = probe
        .user(
            "member@example.com",
            json!({"tenant": "acme", "groups": ["red"]}),
        )
        .await;
    let records = [
        json!({"tenant": "acme"}),
        json!({"tenant": "globex"}),
        json!({"team": "red"}),
        json!({"team": "blue"}),
        json!({}),
    ];
    check_every_path(
        &probe,
        &token,
        "",
        json!({}),
        &records,
        &|ids: &[String]| picked(ids, &[0, 2]),
        &|ids: &[String]| picked(ids, &[0, 2]),
    )
    .await;
    // Owner: what the member writes is theirs.
    let own = probe.write(&token, &[json!({"tenant": "globex"})]).await;
    let listed = probe.rest_list(&token, "", "").await;
    assert!(listed.contains(&own[0]), "{listed:?}");
}

/// Records of tenants acme and globex, then of teams red and blue.
fn one_per_tenant_and_team() -> [Value; 4] {
    [
        json!({"tenant": "acme"}),
        json!({"tenant": "globex"}),
        json!({"team": "red"}),
        json!({"team": "blue"}),
    ]
}

/// The identity on an open connection is the identity now: a user moved
/// to another tenant and another group sees from the next action on, on
/// every path of the socket they already hold.
#[tokio::test]
async fn a_tenant_or_group_change_applies_to_an_open_connection() {
    let server = TestServer::start();
    let rule = "(tenant = @user.tenant && @user.tenant != null) || team in @user.groups";
    let probe = Probe::new(
        &server,
        "docs",
        json!({"fields": {"tenant": {"type": "string"}, "team": {"type": "string"}},
               "rules": {"list": rule, "view": rule}}),
    )
    .await;
    let (user_id, token) = probe
        .user(
            "mover@example.com",
            json!({"tenant": "acme", "groups": ["red"]}),
        )
        .await;
    let before = probe.write(&probe.admin, &one_per_tenant_and_team()).await;
    let mut ws = Ws::connect(&server, Some(&token)).await;
    ws_subscribe(&mut ws, &probe, "", None).await;
    let listed: Ids = ws_list(&mut ws, "docs", "", "").await.into_iter().collect();
    assert_eq!(listed, picked(&before, &[0, 2]));

    let (status, body) = send(
        client()
            .patch(server.url(&format!("/api/users/{user_id}")))
            .bearer_auth(&probe.admin)
            .json(&json!({"tenant": "globex", "groups": ["blue"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // REST sees the new identity at once; so must the open socket. Before
    // the fix its `list` and `get` still answered as the old tenant.
    let want = picked(&before, &[1, 3]);
    let rest: Ids = probe.rest_list(&token, "", "").await.into_iter().collect();
    assert_eq!(rest, want, "REST list");
    let listed: Ids = ws_list(&mut ws, "docs", "", "").await.into_iter().collect();
    assert_eq!(listed, want, "WebSocket list on the open socket");
    assert_eq!(
        ws_get(&mut ws, "docs", &before).await,
        want,
        "WebSocket get"
    );
    // Live: only what the new identity may see.
    let after = probe.write(&probe.admin, &one_per_tenant_and_team()).await;
    probe.finish(&json!({})).await;
    assert_eq!(
        ws_collect(&mut ws, &probe).await,
        picked(&after, &[1, 3]),
        "live"
    );
    // Replay on the same socket, as the new identity.
    let reply = ws
        .request(json!({"action": "unsubscribe", "topics": ["docs", probe.done]}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let reply = ws
        .request(json!({"action": "subscribe", "topics": ["docs", probe.done], "since": 0}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let mut replayed = Ids::new();
    loop {
        let frame = ws.next().await;
        if frame["type"] == "message" {
            break;
        }
        apply(&mut replayed, &frame);
    }
    let mut want = picked(&before, &[1, 3]);
    want.extend(picked(&after, &[1, 3]));
    assert_eq!(replayed, want, "replay on the open socket");
}
