//! Wildcard filters over custom topics created after the SUBSCRIBE: a
//! `#` or `+` filter takes in each new topic its client may read, from
//! shortly after the topic is created, and never one its `subscribe` rule
//! hides. Driven by `mosquitto_sub` against the real server.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::mqtt::{blocking, clients_available, key, message, topic, with_mqtt, Sub};
use common::TestServer;
use serde_json::{json, Value};

/// The next message `sub` gets within `wait`: (topic name, data).
async fn next(sub: Sub, wait: Duration) -> (Sub, Option<(String, Value)>) {
    blocking(move || {
        let mut sub = sub;
        let got = sub
            .message(wait)
            .map(|(_, name, p)| (name, p["data"].clone()));
        (sub, got)
    })
    .await
}

#[tokio::test]
async fn a_wildcard_covers_topics_created_after_it_but_not_hidden_ones() {
    if !clients_available("wildcards_later") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    for (version, filter) in [("mqttv311", "+"), ("mqttv5", "#")] {
        let secret = viewer.clone();
        let (mut sub, codes) =
            blocking(move || Sub::start(port, version, &secret, &[filter], &["-q", "1"])).await;
        assert_eq!(codes, [1], "{version}: granted with no topic yet");

        let late = format!("late{}", filter.len() + version.len());
        let hidden = format!("hidden{}", filter.len() + version.len());
        topic(&server, &admin, json!({"name": late, "subscribe": "true"})).await;
        let rule = "'boss' in @user.roles";
        topic(&server, &admin, json!({"name": hidden, "subscribe": rule})).await;

        // Taken in shortly after creation: publish until one arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        let first = loop {
            message(&server, &admin, &hidden, json!({ "n": n })).await;
            message(&server, &admin, &late, json!({ "n": n })).await;
            let got;
            (sub, got) = next(sub, Duration::from_millis(200)).await;
            if let Some(got) = got {
                break got;
            }
            assert!(
                Instant::now() < deadline,
                "{version} {filter}: {late} never came"
            );
            n += 1;
        };
        assert_eq!(first.0, late, "{version} {filter}: {first:?}");

        message(&server, &admin, &hidden, json!({"end": true})).await;
        message(&server, &admin, &late, json!({"end": true})).await;
        let mut names = vec![first.0];
        loop {
            let got;
            (sub, got) = next(sub, Duration::from_secs(5)).await;
            let (name, data) = got.unwrap_or_else(|| panic!("{version}: no end: {names:?}"));
            names.push(name);
            if data == json!({"end": true}) {
                break;
            }
        }
        assert!(
            names.iter().all(|name| *name == late),
            "{version} {filter}: only {late}, never {hidden}: {names:?}"
        );
    }
}
