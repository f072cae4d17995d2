//! MQTT subscribers as devices meet them: `mosquitto_sub` (3.1.1 and 5.0)
//! and Eclipse Paho (5.0, with a `filter` user property) against the real
//! server, fed by REST writes and topic messages. What they receive must be
//! what a WebSocket subscriber with the same credential receives, and
//! nothing a rule hides.

// A failed unwrap in a test is a test failure with a backtrace.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::mqtt::{
    blocking, clients_available, key, message, paho_spawn, paho_subscribed, topic, with_mqtt, Sub,
};
use common::{client, send, TestServer};
use serde_json::{json, Value};

/// A records collection `notes` every key may list, whose records a
/// non-admin sees only when `public`, and `secrets`, only for role `boss`.
async fn notes(server: &TestServer, admin: &str) {
    server
        .create_collection(
            admin,
            json!({
                "name": "notes",
                "fields": {"text": {"type": "string", "required": true},
                           "public": {"type": "boolean"}},
                "rules": {"list": "@user != null", "view": "public = true"}
            }),
        )
        .await;
    server
        .create_collection(
            admin,
            json!({
                "name": "secrets",
                "fields": {"text": {"type": "string"}},
                "rules": {"list": "'boss' in @user.roles", "view": "'boss' in @user.roles"}
            }),
        )
        .await;
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn mosquitto_sub_gets_the_websocket_event_and_never_a_hidden_record() {
    if !clients_available("mosquitto_sub_events") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    notes(&server, &admin).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    for (version, refused) in [("mqttv311", 0x80), ("mqttv5", 0x87)] {
        let mut ws = common::live::Ws::connect(&server, Some(&viewer)).await;
        let reply = ws
            .request(json!({"action": "subscribe", "topic": "notes"}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
        let secret = viewer.clone();
        let (mut sub, codes) = blocking(move || {
            Sub::start(
                port,
                version,
                &secret,
                &["secrets/#", "notes/#"],
                &["-q", "1"],
            )
        })
        .await;
        assert_eq!(
            codes,
            [refused, 1],
            "{version}: secrets refused, notes at QoS 1"
        );

        let hidden = json!({"text": format!("hidden {version}"), "public": false});
        server
            .create_record(&admin, "secrets", json!({"text": "s"}))
            .await;
        server.create_record(&admin, "notes", hidden).await;
        let shown = json!({"text": format!("shown {version}"), "public": true});
        let record = server.create_record(&admin, "notes", shown).await;

        let event = loop {
            let frame = ws.next().await;
            if frame["type"] == "event" {
                break frame;
            }
        };
        let (qos, name, payload, quiet) = blocking(move || {
            let (qos, name, payload) = sub.message(WAIT).expect("an event");
            let quiet = sub.message(Duration::from_millis(500));
            (qos, name, payload, quiet)
        })
        .await;
        // The hidden record was written first: had it leaked, it would be
        // the first message.
        assert_eq!(payload, event, "{version}: the WebSocket's JSON, as it is");
        assert_eq!(payload["record"]["text"], format!("shown {version}"));
        assert_eq!(name, format!("notes/{}", record["id"].as_str().unwrap()));
        assert_eq!(qos, 1, "{version}");
        assert_eq!(quiet, None, "{version}: nothing else");
    }
}

#[tokio::test]
async fn paho_v5_filters_with_the_filter_user_property_at_qos_1() {
    if !clients_available("paho_filter") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    notes(&server, &admin).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = json!({
        "port": server.mqtt_port(), "version": 5, "client_id": "filtered",
        "password": viewer,
        "subscribe": [{"topic": "notes", "qos": 2}, {"topic": "nowhere/#", "qos": 0}],
        "user_properties": {"filter": "text = 'b'", "ops": "create"},
        "messages_expected": 1, "wait": 3,
    });
    let (mut child, mut lines) = paho_spawn(&plan);
    let suback = blocking(move || {
        let line = lines.find(|l| l.get("suback").is_some()).unwrap();
        (line, lines)
    })
    .await;
    let (line, lines) = suback;
    // QoS 2 asked, 1 granted; an unknown name is an invalid filter.
    assert_eq!(line["suback"], json!([1, 0x8F]), "{line}");
    for text in ["a", "b"] {
        let body = json!({"text": text, "public": true});
        server.create_record(&admin, "notes", body).await;
    }
    let got: Vec<Value> = blocking(move || {
        let got = lines.filter(|l| l.get("message").is_some()).collect();
        let _ = child.wait();
        got
    })
    .await;
    assert_eq!(got.len(), 1, "only the record the filter matches: {got:?}");
    let message = &got[0]["message"];
    assert_eq!(message["payload"]["record"]["text"], "b", "{message}");
    assert_eq!(message["payload"]["op"], "create", "{message}");
    assert_eq!(message["qos"], 1, "{message}");
}

#[tokio::test]
async fn wildcards_match_the_custom_topics_the_subscriber_may_read() {
    if !clients_available("wildcards") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    for name in ["alerts", "chat"] {
        topic(&server, &admin, json!({"name": name, "subscribe": "true"})).await;
    }
    let private = json!({"name": "private", "subscribe": "'boss' in @user.roles"});
    topic(&server, &admin, private).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    for (version, filter) in [("mqttv311", "+"), ("mqttv5", "#")] {
        let secret = viewer.clone();
        let (mut sub, codes) =
            blocking(move || Sub::start(port, version, &secret, &[filter], &[])).await;
        assert_eq!(codes, [0], "{version} {filter}");
        message(&server, &admin, "private", json!({"n": 0})).await;
        message(&server, &admin, "alerts", json!({"n": 1})).await;
        message(&server, &admin, "chat", json!({"n": 2})).await;
        let got = blocking(move || {
            let mut got = Vec::new();
            while let Some((_, name, payload)) = sub.message(Duration::from_millis(1500)) {
                got.push((name, payload["data"]["n"].as_i64().unwrap()));
            }
            got
        })
        .await;
        assert_eq!(
            got,
            [("alerts".to_owned(), 1), ("chat".to_owned(), 2)],
            "{version} {filter}: not `private`"
        );
    }
}

#[tokio::test]
async fn filters_that_name_nothing_here_are_refused_as_invalid() {
    if !clients_available("invalid_filters") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    topic(
        &server,
        &admin,
        json!({"name": "alerts", "subscribe": "true"}),
    )
    .await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    // Deeper than any name delivered here, below a custom topic (one
    // level), and a name that is neither a collection nor a topic.
    let filters = ["alerts/x/y", "+/+", "alerts/x", "nosuch/#"];
    for (version, code) in [("mqttv5", 0x8F), ("mqttv311", 0x80)] {
        let secret = viewer.clone();
        let (_sub, codes) =
            blocking(move || Sub::start(port, version, &secret, &filters, &[])).await;
        assert_eq!(codes, [code; 4], "{version}");
    }
}

#[tokio::test]
async fn max_subscriptions_counts_the_topics_filters_name_and_refuses_as_quota_exceeded() {
    if !clients_available("max_subscriptions") {
        return;
    }
    let mut options = with_mqtt();
    options
        .args
        .extend(["--max-subscriptions".into(), "2".into()]);
    let server = TestServer::start_with(options);
    let admin = server.admin_token().await;
    for name in ["a1", "a2", "a3"] {
        topic(&server, &admin, json!({"name": name, "subscribe": "true"})).await;
    }
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    // `a1/#` names the topic `a1` already held: still two.
    let filters = ["a1", "a2", "a1/#", "a3", "+"];
    for (version, quota) in [("mqttv5", 0x97), ("mqttv311", 0x80)] {
        let secret = viewer.clone();
        let (_sub, codes) =
            blocking(move || Sub::start(port, version, &secret, &filters, &[])).await;
        assert_eq!(codes, [0, 0, 0, quota, quota], "{version}");
    }
}

#[tokio::test]
async fn mqtt_clients_are_connections_with_their_transport_in_notices_stats_and_metrics() {
    if !clients_available("transport") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    topic(
        &server,
        &admin,
        json!({"name": "alerts", "subscribe": "true"}),
    )
    .await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let mut ws = common::live::Ws::connect(&server, Some(&admin)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": "_connections"}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let port = server.mqtt_port();
    let (sub, codes) =
        blocking(move || Sub::start(port, "mqttv5", &viewer, &["alerts"], &[])).await;
    assert_eq!(codes, [0]);
    let mut notices = Vec::new();
    while notices.len() < 2 {
        let frame = ws.next().await;
        if frame["topic"] == "_connections" {
            notices.push(frame["data"].clone());
        }
    }
    assert_eq!(notices[0]["event"], "connect", "{notices:?}");
    assert_eq!(notices[1]["event"], "subscribe", "{notices:?}");
    assert_eq!(notices[1]["topic"], "alerts", "{notices:?}");
    assert!(
        notices.iter().all(|n| n["transport"] == "mqtt"),
        "{notices:?}"
    );

    let (status, stats) = send(client().get(server.url("/api/stats")).bearer_auth(&admin)).await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(
        stats["transports"],
        json!({"websocket": 1, "sse": 0, "mqtt": 1}),
        "{stats}"
    );
    assert_eq!(stats["connections"], 2, "{stats}");
    let metrics = client()
        .get(server.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("pulsebase_realtime_transport_connections{transport=\"mqtt\"} 1"),
        "{metrics}"
    );
    drop(sub);
    let gone = loop {
        let frame = ws.next().await;
        if frame["topic"] == "_connections" {
            break frame["data"].clone();
        }
    };
    assert_eq!(gone["event"], "disconnect", "{gone}");
    assert_eq!(gone["transport"], "mqtt", "{gone}");
}

/// A persistent session (5.0 session expiry with Paho, 3.1.1 clean
/// session off with `mosquitto_sub -c`) gets, when it comes back, what
/// was written while it was away, across a kill -9 of the server, from
/// the change log: in order, at QoS 1, and nothing a rule hides.
#[tokio::test]
async fn a_persistent_session_gets_what_it_missed_across_kill_9() {
    if !clients_available("persistent_session") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(dir.path(), with_mqtt());
    let admin = server.admin_token().await;
    notes(&server, &admin).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = |port: u16, subscribe: bool, expected: usize| {
        json!({
            "port": port, "version": 5, "client_id": "keeper", "password": viewer,
            "clean": false, "session_expiry": 3600,
            "subscribe": if subscribe { json!([{"topic": "notes/#", "qos": 1}]) } else { json!([]) },
            "messages_expected": expected, "wait": 10,
        })
    };
    let first = plan(server.mqtt_port(), true, 0);
    let lines = blocking(move || common::mqtt::paho(&first)).await;
    assert_eq!(
        common::mqtt::first(&lines, "suback"),
        &json!([1]),
        "{lines:?}"
    );
    assert_eq!(common::mqtt::first(&lines, "session_present"), false);
    let port = server.mqtt_port();
    let secret = viewer.clone();
    let mosquitto = ["-c", "-i", "keeper311", "-q", "1"];
    let (sub, codes) =
        blocking(move || Sub::start(port, "mqttv311", &secret, &["notes/#"], &mosquitto)).await;
    assert_eq!(codes, [1]);
    drop(sub);

    for (text, public) in [("two", true), ("hidden", false), ("three", true)] {
        let body = json!({"text": text, "public": public});
        server.create_record(&admin, "notes", body).await;
    }
    server.kill();
    let server = TestServer::start_in(dir.path(), with_mqtt());
    let admin = server.admin_token().await;
    let body = json!({"text": "four", "public": true});
    server.create_record(&admin, "notes", body).await;

    let again = plan(server.mqtt_port(), false, 3);
    let lines = blocking(move || common::mqtt::paho(&again)).await;
    assert_eq!(
        common::mqtt::first(&lines, "session_present"),
        true,
        "{lines:?}"
    );
    let got: Vec<(&Value, &Value)> = lines
        .iter()
        .filter_map(|l| l.get("message"))
        .map(|m| (&m["payload"]["record"]["text"], &m["qos"]))
        .collect();
    let expected = [
        (&json!("two"), &json!(1)),
        (&json!("three"), &json!(1)),
        (&json!("four"), &json!(1)),
    ];
    assert_eq!(got, expected, "{lines:?}");

    let port = server.mqtt_port();
    let got = blocking(move || {
        let (mut sub, _) = Sub::start(port, "mqttv311", &viewer, &["notes/#"], &mosquitto);
        let mut got = Vec::new();
        while let Some((qos, _, payload)) = sub.message(Duration::from_millis(1500)) {
            got.push((payload["record"]["text"].as_str().unwrap().to_owned(), qos));
        }
        got
    })
    .await;
    let texts = |names: &[&str]| -> Vec<(String, u8)> {
        names.iter().map(|n| ((*n).to_owned(), 1)).collect()
    };
    assert_eq!(got, texts(&["two", "three", "four"]), "3.1.1");
}

/// A QoS 1 subscriber that never acknowledges fills its in-flight window,
/// then its outbox: it is closed as a slow consumer (5.0: DISCONNECT
/// 0x97), and its persistent session resumes with everything, the
/// unacknowledged ones included, in order.
#[tokio::test]
async fn a_subscriber_that_does_not_acknowledge_is_closed_as_slow_and_resumes() {
    if !clients_available("slow_consumer") {
        return;
    }
    let mut options = with_mqtt();
    options.args.extend(["--outbox".into(), "16".into()]);
    let server = TestServer::start_with(options);
    let admin = server.admin_token().await;
    notes(&server, &admin).await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = |manual_ack: bool, expected: usize| {
        json!({
            "port": server.mqtt_port(), "version": 5, "client_id": "stuck", "password": viewer,
            "clean": false, "session_expiry": 3600, "manual_ack": manual_ack,
            "subscribe": [{"topic": "notes", "qos": 1}],
            "messages_expected": expected, "wait": 15,
        })
    };
    let (mut child, lines) = paho_spawn(&plan(true, 1000));
    let (suback, lines) = blocking(move || {
        let mut lines = lines;
        let line = lines.find(|l| l.get("suback").is_some()).unwrap();
        (line, lines)
    })
    .await;
    assert_eq!(suback["suback"], json!([1]));
    const N: usize = 80;
    for i in 0..N {
        let body = json!({"text": i.to_string(), "public": true});
        server.create_record(&admin, "notes", body).await;
    }
    let (received, disconnect) = blocking(move || {
        let mut received = 0;
        let mut disconnect = None;
        for line in lines {
            if line.get("message").is_some() {
                received += 1;
            }
            if let Some(rc) = line.get("disconnect") {
                disconnect = Some(rc.clone());
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        (received, disconnect)
    })
    .await;
    assert_eq!(
        disconnect,
        Some(json!(0x97)),
        "quota exceeded: slow consumer"
    );
    assert_eq!(received, 32, "the in-flight window, then nothing more");

    let lines = blocking({
        let plan = plan(false, N);
        move || common::mqtt::paho(&plan)
    })
    .await;
    let texts: Vec<String> = lines
        .iter()
        .filter_map(|l| l.get("message"))
        .map(|m| m["payload"]["record"]["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(texts, expected, "all of them, in order, once");
}

/// A custom topic that keeps history has a retained message: its newest
/// one, sent after the SUBACK with the retain flag if the subscriber may
/// see it; live messages follow without the flag.
#[tokio::test]
async fn subscribing_gets_the_newest_kept_message_of_a_custom_topic_as_retained() {
    if !clients_available("retained") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    let status = json!({"name": "status", "subscribe": "true", "history": 5});
    topic(&server, &admin, status).await;
    let private = json!({"name": "private", "subscribe": "'boss' in @user.roles", "history": 5});
    topic(&server, &admin, private).await;
    topic(
        &server,
        &admin,
        json!({"name": "plain", "subscribe": "true"}),
    )
    .await;
    for (name, n) in [("status", 1), ("status", 2), ("private", 9), ("plain", 7)] {
        message(&server, &admin, name, json!({ "n": n })).await;
    }
    let viewer = key(&server, &admin, &["viewer"]).await;
    let plan = json!({
        "port": server.mqtt_port(), "version": 5, "client_id": "retained",
        "password": viewer, "subscribe": [{"topic": "#", "qos": 1}],
        "messages_expected": 2, "wait": 5,
    });
    let (mut child, suback, lines) = paho_subscribed(&plan).await;
    assert_eq!(suback, json!([1]));
    message(&server, &admin, "status", json!({"n": 3})).await;
    let got: Vec<Value> = blocking(move || {
        let got = lines.filter_map(|l| l.get("message").cloned()).collect();
        let _ = child.wait();
        got
    })
    .await;
    let seen: Vec<(&Value, &Value, &Value)> = got
        .iter()
        .map(|m| (&m["topic"], &m["payload"]["data"]["n"], &m["retain"]))
        .collect();
    assert_eq!(
        seen,
        [
            (&json!("status"), &json!(2), &json!(true)),
            (&json!("status"), &json!(3), &json!(false)),
        ],
        "{got:?}"
    );
}

/// One connection per client id: a second one takes the session over and
/// the first is closed (5.0: DISCONNECT 0x8E session taken over).
#[tokio::test]
async fn a_second_connection_with_the_same_client_id_takes_the_session_over() {
    if !clients_available("takeover") {
        return;
    }
    let server = TestServer::start_with(with_mqtt());
    let admin = server.admin_token().await;
    topic(
        &server,
        &admin,
        json!({"name": "alerts", "subscribe": "true"}),
    )
    .await;
    let viewer = key(&server, &admin, &["viewer"]).await;
    let port = server.mqtt_port();
    let reason = blocking(move || {
        let same = ["-i", "same-device"];
        let (mut first, _) = Sub::start(port, "mqttv5", &viewer, &["alerts"], &same);
        let (_second, codes) = Sub::start(port, "mqttv5", &viewer, &["alerts"], &same);
        assert_eq!(codes, [0]);
        first.disconnect_reason()
    })
    .await;
    assert_eq!(reason, Some(0x8E));
}
