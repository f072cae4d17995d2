//! Presence on custom topics, over real sockets: who is subscribed, joins
//! and leaves gathered per window, who may see them, and the switch to
//! counts in a large room.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::live::{RawWs, Sse, Ws, OPCODE_TEXT};
use common::{client, send, Options, TestServer};
use rumqttc::mqttbytes::{v4, QoS};
use serde_json::{json, Value};

/// Longer than a presence window (100 ms) with room to spare.
const QUIET: Duration = Duration::from_millis(600);

async fn create_topic(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, topic) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "create topic: {topic}");
    topic
}

/// A signed-in user: their token and id.
async fn user(server: &TestServer, admin: &str, name: &str, roles: &[&str]) -> (String, String) {
    let email = format!("{}@example.com", name.to_lowercase());
    let password = "presence-password";
    let created = server
        .create_user(
            admin,
            json!({"email": email, "password": password, "name": name, "roles": roles}),
        )
        .await;
    let token = server.signin(&email, password).await;
    (token, created["id"].as_str().unwrap().to_owned())
}

async fn subscribe(ws: &mut Ws, topic: &str) {
    let reply = ws
        .request(json!({"action": "subscribe", "topic": topic}))
        .await;
    assert_eq!(reply["type"], "ok", "subscribe to {topic}: {reply}");
}

async fn unsubscribe(ws: &mut Ws, topic: &str) {
    let reply = ws
        .request(json!({"action": "unsubscribe", "topic": topic}))
        .await;
    assert_eq!(reply["type"], "ok", "unsubscribe from {topic}: {reply}");
}

async fn presence(ws: &mut Ws, topic: &str) -> Value {
    ws.request(json!({"action": "presence", "topic": topic}))
        .await
}

/// The next frame, which must be a `join` or `leave` of `connection`.
async fn expect_change(ws: &mut Ws, kind: &str, connection: &Value) -> Value {
    let frame = ws.next().await;
    assert_eq!(
        (&frame["type"], &frame["connection"]),
        (&json!(kind), connection),
        "expected a {kind} of {connection}, got {frame}"
    );
    frame
}

/// The topic `room` with presence, anyone may subscribe, and the admin
/// watching it (its own join already heard).
async fn watched_room(server: &TestServer, admin: &str) -> Ws {
    create_topic(
        server,
        admin,
        json!({"name": "room", "presence": true, "subscribe": "true"}),
    )
    .await;
    let mut watcher = Ws::connect(server, Some(admin)).await;
    let watcher_conn = watcher.welcome["connection"].clone();
    subscribe(&mut watcher, "room").await;
    expect_change(&mut watcher, "join", &watcher_conn).await;
    watcher
}

fn looks_like_rfc3339(text: &Value) -> bool {
    let text = text.as_str().unwrap_or_default();
    text.len() >= 20 && text.as_bytes()[10] == b'T' && text.ends_with('Z')
}

#[tokio::test]
async fn members_are_listed_with_their_user_and_subscribers_hear_joins_and_leaves() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (ann, ann_id) = user(&server, &admin, "Ann", &[]).await;
    let (bob, bob_id) = user(&server, &admin, "Bob", &[]).await;
    let created = create_topic(
        &server,
        &ann,
        json!({"name": "chat-1", "presence": true, "subscribe": "true"}),
    )
    .await;
    assert_eq!(created["presence"], true, "{created}");
    let plain = create_topic(&server, &ann, json!({"name": "plain"})).await;
    assert_eq!(plain["presence"], false, "presence is off unless asked for");
    let (_, listed) = send(client().get(server.url("/api/topics")).bearer_auth(&ann)).await;
    let chat = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "chat-1")
        .unwrap();
    assert_eq!(chat["presence"], true, "{listed}");

    let mut a = Ws::connect(&server, Some(&ann)).await;
    let a_conn = a.welcome["connection"].clone();
    subscribe(&mut a, "chat-1").await;
    let joined = expect_change(&mut a, "join", &a_conn).await;
    assert_eq!(
        joined,
        json!({"type": "join", "topic": "chat-1", "connection": a_conn,
            "user": {"id": ann_id, "name": "Ann"}, "since": joined["since"]})
    );
    assert!(looks_like_rfc3339(&joined["since"]), "{joined}");

    let mut b = Ws::connect(&server, Some(&bob)).await;
    let b_conn = b.welcome["connection"].clone();
    subscribe(&mut b, "chat-1").await;
    let bob_joined = expect_change(&mut a, "join", &b_conn).await;
    assert_eq!(
        bob_joined["user"],
        json!({"id": bob_id, "name": "Bob"}),
        "{bob_joined}"
    );
    // A newcomer asks who is there: the list, with what the joins said.
    let reply = presence(&mut b, "chat-1").await;
    assert_eq!(
        reply,
        json!({"type": "ok", "id": reply["id"], "count": 2, "presence": [
            {"connection": a_conn, "user": {"id": ann_id, "name": "Ann"}, "since": joined["since"]},
            {"connection": b_conn, "user": {"id": bob_id, "name": "Bob"}, "since": bob_joined["since"]},
        ]})
    );

    // Anonymous members (and API keys) have no user.
    let mut anon = Ws::connect(&server, None).await;
    let anon_conn = anon.welcome["connection"].clone();
    subscribe(&mut anon, "chat-1").await;
    let anon_joined = expect_change(&mut a, "join", &anon_conn).await;
    assert_eq!(anon_joined["user"], Value::Null, "{anon_joined}");

    // An SSE subscriber is a member too, and hears joins and leaves.
    let bearer = format!("Bearer {bob}");
    let (status, mut sse) = Sse::open(&server, "topic=chat-1", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200);
    let sse_joined = a.next().await;
    assert_eq!(
        (&sse_joined["type"], &sse_joined["user"]["id"]),
        (&json!("join"), &json!(bob_id)),
        "{sse_joined}"
    );
    let sse_conn = sse_joined["connection"].clone();
    assert_ne!(sse_conn, b_conn, "each connection is its own member");
    let own = sse.next().await.unwrap();
    assert_eq!(
        (own.event.as_str(), &own.data["connection"]),
        ("join", &sse_conn),
        "{own:?}"
    );
    drop(sse);
    expect_change(&mut a, "leave", &sse_conn).await;

    unsubscribe(&mut anon, "chat-1").await;
    let left = expect_change(&mut a, "leave", &anon_conn).await;
    assert_eq!(
        left,
        json!({"type": "leave", "topic": "chat-1", "connection": anon_conn, "user": null,
            "since": anon_joined["since"]})
    );
    unsubscribe(&mut b, "chat-1").await;
    expect_change(&mut a, "leave", &b_conn).await;
    let reply = presence(&mut a, "chat-1").await;
    assert_eq!(reply["count"], 1, "{reply}");
    assert_eq!(reply["presence"][0]["connection"], a_conn, "{reply}");
    a.expect_quiet(QUIET).await;
}

/// The welcome's connection name, read from a raw client.
async fn raw_member(server: &TestServer, topic: &str) -> (RawWs, Value) {
    let mut raw = RawWs::connect(server, None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let welcome = raw.read_frame(deadline).await.expect("a welcome");
    let welcome: Value = serde_json::from_slice(&welcome.payload).unwrap();
    let request = json!({"id": "s", "action": "subscribe", "topic": topic}).to_string();
    raw.send_frame(OPCODE_TEXT, request.as_bytes()).await;
    let reply = raw.read_frame(deadline).await.expect("a reply");
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply["type"], "ok", "{reply}");
    (raw, welcome["connection"].clone())
}

#[tokio::test]
async fn a_connection_that_ends_leaves_however_it_ends() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut watcher = watched_room(&server, &admin).await;

    // A clean WebSocket close.
    let mut clean = Ws::connect(&server, None).await;
    let clean_conn = clean.welcome["connection"].clone();
    subscribe(&mut clean, "room").await;
    expect_change(&mut watcher, "join", &clean_conn).await;
    clean.stream.close(None).await.unwrap();
    expect_change(&mut watcher, "leave", &clean_conn).await;

    // The TCP connection ends with no WebSocket close.
    let (raw, raw_conn) = raw_member(&server, "room").await;
    expect_change(&mut watcher, "join", &raw_conn).await;
    drop(raw);
    expect_change(&mut watcher, "leave", &raw_conn).await;

    // The TCP connection is killed: a reset, nothing else.
    let (killed, killed_conn) = raw_member(&server, "room").await;
    expect_change(&mut watcher, "join", &killed_conn).await;
    killed.reset();
    expect_change(&mut watcher, "leave", &killed_conn).await;

    let reply = presence(&mut watcher, "room").await;
    assert_eq!(reply["count"], 1, "{reply}");
    watcher.expect_quiet(QUIET).await;
}

#[tokio::test]
async fn a_join_and_leave_within_one_window_are_never_announced() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut watcher = watched_room(&server, &admin).await;

    // Subscribe and unsubscribe sent back to back: both reach the hub
    // within a window.
    let mut brief = Ws::connect(&server, None).await;
    brief
        .send(json!({"id": "1", "action": "subscribe", "topic": "room"}))
        .await;
    brief
        .send(json!({"id": "2", "action": "unsubscribe", "topic": "room"}))
        .await;
    for id in ["1", "2"] {
        let reply = brief.next().await;
        assert_eq!((&reply["type"], &reply["id"]), (&json!("ok"), &json!(id)));
    }
    // Subscribe, then the socket closes at once.
    let mut gone = Ws::connect(&server, None).await;
    gone.send(json!({"id": "1", "action": "subscribe", "topic": "room"}))
        .await;
    gone.stream.close(None).await.unwrap();
    drop(gone);
    watcher.expect_quiet(QUIET).await;
    let reply = presence(&mut watcher, "room").await;
    assert_eq!(reply["count"], 1, "{reply}");

    // One that stays is announced: the watcher would have heard the others.
    let mut stays = Ws::connect(&server, None).await;
    let stays_conn = stays.welcome["connection"].clone();
    subscribe(&mut stays, "room").await;
    expect_change(&mut watcher, "join", &stays_conn).await;

    // Several changes in one window arrive together, leaves first.
    let mut c = Ws::connect(&server, None).await;
    let c_conn = c.welcome["connection"].clone();
    c.send(json!({"id": "1", "action": "subscribe", "topic": "room"}))
        .await;
    stays
        .send(json!({"id": "9", "action": "unsubscribe", "topic": "room"}))
        .await;
    expect_change(&mut watcher, "leave", &stays_conn).await;
    expect_change(&mut watcher, "join", &c_conn).await;
}

#[tokio::test]
async fn only_those_who_may_subscribe_see_presence() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let (staff, _) = user(&server, &admin, "Sam", &["staff"]).await;
    let (other_staff, _) = user(&server, &admin, "Sue", &["staff"]).await;
    let (outsider, _) = user(&server, &admin, "Oscar", &[]).await;
    create_topic(
        &server,
        &admin,
        json!({"name": "staff-room", "presence": true,
            "subscribe": "'staff' in @user.roles"}),
    )
    .await;
    create_topic(&server, &admin, json!({"name": "plain"})).await;
    server
        .create_collection(&admin, json!({"name": "notes", "rules": {"list": "true"}}))
        .await;

    let mut out = Ws::connect(&server, Some(&outsider)).await;
    let refused = presence(&mut out, "staff-room").await;
    assert_eq!(
        (&refused["type"], &refused["code"]),
        (&json!("error"), &json!("forbidden")),
        "{refused}"
    );
    assert!(refused["message"].is_string() && refused["id"].is_string());
    let subscribe_refused = out
        .request(json!({"action": "subscribe", "topic": "staff-room"}))
        .await;
    assert_eq!(subscribe_refused["code"], "forbidden");
    let mut anonymous = Ws::connect(&server, None).await;
    assert_eq!(
        presence(&mut anonymous, "staff-room").await["code"],
        "forbidden"
    );
    assert_eq!(presence(&mut out, "nowhere").await["code"], "not_found");
    assert_eq!(presence(&mut out, "plain").await["code"], "bad_request");
    assert_eq!(presence(&mut out, "notes").await["code"], "bad_request");

    let mut member = Ws::connect(&server, Some(&staff)).await;
    let member_conn = member.welcome["connection"].clone();
    subscribe(&mut member, "staff-room").await;
    expect_change(&mut member, "join", &member_conn).await;
    let mut turned = Ws::connect(&server, Some(&other_staff)).await;
    let turned_conn = turned.welcome["connection"].clone();
    subscribe(&mut turned, "staff-room").await;
    expect_change(&mut member, "join", &turned_conn).await;
    expect_change(&mut turned, "join", &turned_conn).await;
    let list = presence(&mut turned, "staff-room").await;
    assert_eq!(list["count"], 2, "{list}");

    // A member whose connection now acts as the outsider (`auth`) keeps
    // its subscription, so it is still listed, as who it is now; but it
    // may no longer see who comes and goes.
    let reply = turned
        .request(json!({"action": "auth", "token": outsider}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    let left = expect_change(&mut member, "leave", &turned_conn).await;
    assert_eq!(left["user"]["name"], "Sue", "{left}");
    let back = expect_change(&mut member, "join", &turned_conn).await;
    assert_eq!(back["user"]["name"], "Oscar", "{back}");
    assert_eq!(
        presence(&mut turned, "staff-room").await["code"],
        "forbidden"
    );
    unsubscribe(&mut member, "staff-room").await;

    out.expect_quiet(QUIET).await;
    anonymous.expect_quiet(Duration::ZERO).await;
    turned.expect_quiet(Duration::ZERO).await;
    // Sam's leave went out (to nobody allowed to hear it) with the window.
    let mut admin_ws = Ws::connect(&server, Some(&admin)).await;
    let seen = presence(&mut admin_ws, "staff-room").await;
    assert_eq!(seen["count"], 1, "admins may always look: {seen}");
}

#[tokio::test]
async fn past_presence_max_subscribers_hear_only_the_count() {
    let server = TestServer::start_with(Options {
        args: vec!["--presence-max".into(), "2".into()],
        ..Options::default()
    });
    let admin = server.admin_token().await;
    create_topic(
        &server,
        &admin,
        json!({"name": "room", "presence": true, "subscribe": "true"}),
    )
    .await;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(Ws::connect(&server, None).await);
    }
    let conns: Vec<Value> = members
        .iter()
        .map(|m| m.welcome["connection"].clone())
        .collect();
    subscribe(&mut members[0], "room").await;
    expect_change(&mut members[0], "join", &conns[0]).await;
    subscribe(&mut members[1], "room").await;
    expect_change(&mut members[0], "join", &conns[1]).await;
    expect_change(&mut members[1], "join", &conns[1]).await;

    // The third member takes the room past 2: a count instead of a join.
    subscribe(&mut members[2], "room").await;
    for member in &mut members {
        assert_eq!(
            member.next().await,
            json!({"type": "presence", "topic": "room", "count": 3})
        );
    }
    let reply = presence(&mut members[0], "room").await;
    assert_eq!(
        reply,
        json!({"type": "ok", "id": reply["id"], "count": 3}),
        "only the count past presence_max"
    );

    // Back to 2: the count once more (the list is to be fetched again),
    // then joins and leaves one by one.
    unsubscribe(&mut members[2], "room").await;
    for member in &mut members[..2] {
        assert_eq!(
            member.next().await,
            json!({"type": "presence", "topic": "room", "count": 2})
        );
    }
    let reply = presence(&mut members[0], "room").await;
    assert_eq!(reply["presence"].as_array().unwrap().len(), 2, "{reply}");
    unsubscribe(&mut members[1], "room").await;
    expect_change(&mut members[0], "leave", &conns[1]).await;
    for member in &mut members {
        member.expect_quiet(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn an_mqtt_subscriber_is_a_member_that_hears_nothing_itself() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start_with(Options {
        args: vec!["--mqtt".into(), "127.0.0.1:0".into()],
        ..Options::default()
    });
    let admin = server.admin_token().await;
    let (dev, dev_id) = user(&server, &admin, "Dev", &[]).await;
    let mut watcher = watched_room(&server, &admin).await;

    let mut mqtt = tokio::net::TcpStream::connect(("127.0.0.1", server.mqtt_port()))
        .await
        .unwrap();
    // MQTT 3.1.1, encoded by the codec crate (rumqttc's mqttbytes): the
    // password is the user's access token; then SUBSCRIBE to `room` at
    // QoS 0, packet id 1.
    let mut connect = v4::Connect::new("presence-test");
    connect.keep_alive = 60;
    connect.set_login("dev", dev.as_str());
    let mut subscribe = v4::Subscribe::new("room", QoS::AtMostOnce);
    subscribe.pkid = 1;
    let mut out = BytesMut::new();
    for packet in [
        v4::Packet::Connect(connect),
        v4::Packet::Subscribe(subscribe),
    ] {
        packet.write(&mut out, usize::MAX).unwrap();
    }
    mqtt.write_all(&out).await.unwrap();
    let mut answers = BytesMut::new();
    let mut packets = Vec::new();
    while packets.len() < 2 {
        match v4::Packet::read(&mut answers, usize::MAX) {
            Ok(packet) => packets.push(packet),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                assert!(mqtt.read_buf(&mut answers).await.unwrap() > 0, "closed");
            }
            Err(e) => panic!("unreadable answer: {e:?}"),
        }
    }
    assert!(
        matches!(&packets[0], v4::Packet::ConnAck(ack) if ack.code == v4::ConnectReturnCode::Success),
        "CONNACK accepted: {packets:?}"
    );
    assert!(
        matches!(&packets[1], v4::Packet::SubAck(ack)
            if ack.pkid == 1 && ack.return_codes == [v4::SubscribeReasonCode::Success(QoS::AtMostOnce)]),
        "SUBACK granted QoS 0: {packets:?}"
    );

    let joined = watcher.next().await;
    assert_eq!(
        (&joined["type"], &joined["user"]),
        (&json!("join"), &json!({"id": dev_id, "name": "Dev"})),
        "{joined}"
    );
    let mqtt_conn = joined["connection"].clone();
    // Its own join has no MQTT form: nothing arrives.
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(QUIET, mqtt.read(&mut byte)).await;
    assert!(read.is_err(), "the MQTT client got something: {read:?}");
    drop(mqtt);
    expect_change(&mut watcher, "leave", &mqtt_conn).await;
}
