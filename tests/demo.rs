//! `serve --demo`: a new user gets an admin, a `readings` collection and
//! live readings from simulated devices within seconds.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::live::Ws;
use common::{client, send, Options, TestServer};
use serde_json::json;

fn demo_options(admin: bool) -> Options {
    Options {
        admin,
        args: vec!["--demo".into()],
        ..Options::default()
    }
}

#[tokio::test]
async fn a_new_user_signs_in_with_the_printed_admin_and_watches_live_readings() {
    let server = TestServer::start_with(demo_options(false));
    let line = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("demo admin: "))
        .unwrap_or_else(|| panic!("no demo admin line in {:?}", server.banner))
        .to_owned();
    let (email, password) = line.split_once(" / ").unwrap();
    assert!(
        !server.banner.iter().any(|l| l.contains("setup code")),
        "{:?}",
        server.banner
    );
    // The printed admin UI address opens the UI.
    let ui = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("admin UI: "))
        .unwrap_or_else(|| panic!("no admin UI line in {:?}", server.banner))
        .to_owned();
    assert_eq!(ui, server.url("/admin/"));
    let page = client().get(&ui).send().await.expect("admin UI");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("pulsebase admin"));
    let token = server.signin(email, password).await;

    let mut ws = Ws::connect(&server, Some(&token)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "readings"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let started = Instant::now();
    let mut devices = BTreeSet::new();
    let mut events = 0;
    while events < 8 {
        let event = ws.next().await;
        assert_eq!(
            (event["type"].as_str(), event["op"].as_str()),
            (Some("event"), Some("create")),
            "{event}"
        );
        let record = &event["record"];
        assert!(
            record["temp"].is_number() && record["site"].is_string(),
            "{record}"
        );
        assert_eq!(record["owner"], "demo-devices", "{record}");
        devices.insert(record["device"].as_str().unwrap().to_owned());
        events += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(devices.len() >= 3, "{devices:?}");

    let (status, collection) = send(
        client()
            .get(server.url("/api/collections/readings"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(collection["kind"], "series", "{collection}");
    assert_eq!(
        collection["retention"]["max_bytes"], "64MiB",
        "{collection}"
    );
    assert_eq!(collection["rules"]["view"], "@user != null", "{collection}");
    // Anonymous callers see nothing of it.
    let (status, page) = send(client().get(server.url("/api/collections/readings/records"))).await;
    assert!(
        status == 403 || page["items"] == json!([]),
        "{status} {page}"
    );
}

#[tokio::test]
async fn the_demo_leaves_an_existing_readings_collection_and_admin_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), Options::default());
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "readings", "fields": {"x": {"type": "integer"}}, "strict": true,
                   "rules": {"list": "true", "view": "true"}}),
        )
        .await;
    assert!(server.terminate());

    let server = TestServer::start_in(dir.path(), demo_options(true));
    assert!(
        !server.banner.iter().any(|l| l.starts_with("demo admin:")),
        "an admin exists: no demo admin, {:?}",
        server.banner
    );
    let admin = server.admin_token().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, collection) = send(
        client()
            .get(server.url("/api/collections/readings"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200);
    assert!(collection["fields"]["device"].is_null(), "{collection}");
    // The simulated readings do not fit this schema: refused, not forced in.
    let (status, page) = send(
        client()
            .get(server.url("/api/collections/readings/records"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!((status, page["items"].clone()), (200, json!([])));
    // And the server is still fine.
    let (status, _) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(status, 200);
}
