//! Each wire type against the JSON docs/realtime.md shows: client actions
//! parse from it, server messages serialize to it.

use serde_json::{json, Map, Value};

use super::client::{Create, CreateTopic, List, Publish, RecordRef, Subscribe, Topics, Update};
use super::server::*;
use super::{ClientMessage, Request};
use crate::error::ApiError;
use crate::model::collection::EventOp;

fn parse(request: Value) -> Request {
    Request::parse(&request.to_string()).unwrap_or_else(|e| panic!("{request}: {}", e.message))
}

fn message(request: Value) -> ClientMessage {
    parse(request).message
}

/// The reply a malformed frame gets: its code, the `id` it echoes, and the
/// message.
fn rejected(text: &str) -> (&'static str, Option<Value>, String) {
    let rejected = Request::parse(text).expect_err(text);
    (rejected.error().code, rejected.id, rejected.message)
}

fn names(topic: Option<&str>, topics: Option<&[&str]>) -> Topics {
    Topics {
        topic: topic.map(str::to_owned),
        topics: topics.map(|t| t.iter().map(|s| s.to_string()).collect()),
    }
}

#[test]
fn subscribe_parses_with_every_field_and_with_none() {
    let request = parse(
        json!({"id": "1", "action": "subscribe", "topic": "readings",
        "ops": ["create"], "filter": "temp > 30", "aggregate": {"bucket": "1m"}}),
    );
    assert_eq!(request.id, Some(json!("1")));
    assert_eq!(
        request.message,
        ClientMessage::Subscribe(Subscribe {
            names: names(Some("readings"), None),
            ops: vec!["create".into()],
            filter: Some("temp > 30".into()),
            since: None,
            epoch: None,
            aggregate: Some(json!({"bucket": "1m"})),
        })
    );
    assert_eq!(
        message(
            json!({"action": "subscribe", "topics": ["a", "b"], "since": 1234,
            "epoch": "e1"})
        ),
        ClientMessage::Subscribe(Subscribe {
            names: names(None, Some(&["a", "b"])),
            since: Some(1234),
            epoch: Some("e1".into()),
            ..Subscribe::default()
        })
    );
    // Naming no topic is the topics service's refusal, not a parse error.
    assert_eq!(
        message(json!({"action": "subscribe"})),
        ClientMessage::Subscribe(Subscribe::default())
    );
}

#[test]
fn topic_actions_parse() {
    assert_eq!(
        message(json!({"action": "unsubscribe", "topic": "a,b"})),
        ClientMessage::Unsubscribe(names(Some("a,b"), None))
    );
    assert_eq!(
        message(json!({"action": "publish", "topic": "chat", "data": {"text": "hi"}})),
        ClientMessage::Publish(Publish {
            topic: "chat".into(),
            data: json!({"text": "hi"}),
        })
    );
    assert_eq!(
        message(json!({"action": "publish", "topic": "chat"})),
        ClientMessage::Publish(Publish {
            topic: "chat".into(),
            data: Value::Null,
        }),
        "data defaults to null"
    );
    assert_eq!(
        message(json!({"action": "topics"})),
        ClientMessage::Topics {}
    );
    assert_eq!(
        message(
            json!({"action": "create_topic", "topic": "chat-1", "history": 100,
            "publish": "@user != null", "subscribe": "room = 'r1'", "presence": true})
        ),
        ClientMessage::CreateTopic(CreateTopic {
            topic: "chat-1".into(),
            history: 100,
            publish: Some("@user != null".into()),
            subscribe: Some("room = 'r1'".into()),
            presence: true,
        })
    );
    assert_eq!(
        message(json!({"action": "create_topic", "topic": "t"})),
        ClientMessage::CreateTopic(CreateTopic {
            topic: "t".into(),
            history: 0,
            publish: None,
            subscribe: None,
            presence: false,
        })
    );
    assert_eq!(
        message(json!({"action": "delete_topic", "topic": "chat-1"})),
        ClientMessage::DeleteTopic {
            topic: "chat-1".into()
        }
    );
}

#[test]
fn session_actions_parse() {
    let ping = parse(json!({"action": "ping", "id": 7}));
    assert_eq!(
        (ping.id, ping.message),
        (Some(json!(7)), ClientMessage::Ping {})
    );
    assert_eq!(
        message(json!({"action": "auth", "token": "t0k"})),
        ClientMessage::Auth {
            token: "t0k".into()
        }
    );
}

#[test]
fn record_actions_parse() {
    assert_eq!(
        message(
            json!({"action": "list", "collection": "notes", "filter": "done = false",
            "sort": "-created", "limit": 5, "cursor": "c1", "fields": "id,text"})
        ),
        ClientMessage::List(List {
            collection: "notes".into(),
            filter: Some("done = false".into()),
            sort: Some("-created".into()),
            limit: Some(5),
            cursor: Some("c1".into()),
            fields: Some("id,text".into()),
        })
    );
    let one = RecordRef {
        collection: "notes".into(),
        record: "01J".into(),
    };
    assert_eq!(
        message(json!({"action": "get", "collection": "notes", "record": "01J"})),
        ClientMessage::Get(one.clone())
    );
    assert_eq!(
        message(json!({"action": "delete", "collection": "notes", "record": "01J"})),
        ClientMessage::Delete(one)
    );
    let mut text = Map::new();
    text.insert("text".into(), json!("hi"));
    assert_eq!(
        message(json!({"action": "create", "collection": "notes", "data": {"text": "hi"}})),
        ClientMessage::Create(Create {
            collection: "notes".into(),
            data: Some(text),
        })
    );
    for data in [json!({}), json!({"data": null})] {
        let mut request = json!({"action": "create", "collection": "notes"});
        request
            .as_object_mut()
            .unwrap()
            .extend(data.as_object().unwrap().clone());
        assert_eq!(
            message(request),
            ClientMessage::Create(Create {
                collection: "notes".into(),
                data: None,
            })
        );
    }
    assert_eq!(
        message(
            json!({"action": "update", "collection": "notes", "record": "01J",
            "data": {"text": null}})
        ),
        ClientMessage::Update(Update {
            collection: "notes".into(),
            record: "01J".into(),
            data: Some(json!({"text": null})),
        })
    );
}

#[test]
fn unknown_fields_are_ignored_and_a_null_id_is_none() {
    let request = parse(json!({"action": "ping", "id": null, "topic": 5, "extra": [1]}));
    assert_eq!(
        (request.id, request.message),
        (None, ClientMessage::Ping {})
    );
}

#[test]
fn every_action_name_is_a_variant() {
    for action in ClientMessage::ACTIONS {
        match Request::parse(&json!({"action": action}).to_string()) {
            Ok(_) => {}
            Err(e) => assert!(
                e.message.contains("missing field"),
                "{action}: {}",
                e.message
            ),
        }
    }
}

#[test]
fn malformed_frames_are_bad_requests_that_echo_the_id() {
    let (code, id, message) = rejected(r#"{"id": "9", "action": "dance"}"#);
    assert_eq!((code, id), ("bad_request", Some(json!("9"))));
    assert_eq!(message, r#"unknown action "dance""#);

    let (code, id, message) = rejected(r#"{"id": 3, "action": "publish", "data": 1}"#);
    assert_eq!((code, id), ("bad_request", Some(json!(3))));
    assert!(
        message.contains("publish") && message.contains("`topic`"),
        "{message}"
    );

    let (code, id, message) = rejected(r#"{"id": "s", "action": "subscribe", "since": "x"}"#);
    assert_eq!((code, id), ("bad_request", Some(json!("s"))));
    assert!(message.contains("invalid type"), "{message}");

    let (code, id, message) =
        rejected(r#"{"id": "c", "action": "create", "collection": "n", "data": 5}"#);
    assert_eq!((code, id), ("bad_request", Some(json!("c"))));
    assert!(message.contains("create"), "{message}");

    let (code, id, message) = rejected(r#"{"id": "m"}"#);
    assert_eq!((code, id), ("bad_request", Some(json!("m"))));
    assert!(message.contains("`action`"), "{message}");

    for text in ["{oops", r#""not an object""#, "[1]", r#"{"action": 5}"#] {
        let (code, id, _) = rejected(text);
        assert_eq!((code, id), ("bad_request", None), "{text}");
    }
}

#[test]
fn the_id_of_an_unhandled_frame_is_found_if_it_has_one() {
    assert_eq!(
        Request::id_of(r#"{"id": "1", "action": "?"}"#),
        Some(json!("1"))
    );
    assert_eq!(Request::id_of("[1]"), None);
    assert_eq!(Request::id_of("nope"), None);
}

/// Serializes, checks the `type` comes first as the docs show it, and
/// parses the text back for comparing with the documented JSON.
fn wire(message: &ServerMessage) -> Value {
    let text = message.to_text();
    let kind = message.kind();
    assert!(text.starts_with(&format!(r#"{{"type":"{kind}""#)), "{text}");
    serde_json::from_str(&text).expect("server messages are JSON")
}

#[test]
fn welcome_serializes_as_documented() {
    let user = json!({"id": "01J", "email": "you@example.com"});
    let welcome = ServerMessage::Welcome(Welcome {
        connection: ConnectionName(3),
        user: Some(&user),
        heartbeat: 30,
        seq: 1234,
        epoch: "e1",
    });
    assert_eq!(
        wire(&welcome),
        json!({"type": "welcome", "connection": "c_3", "user": user, "heartbeat": 30,
            "seq": 1234, "epoch": "e1"})
    );
    let anonymous = ServerMessage::Welcome(Welcome {
        connection: ConnectionName(4),
        user: None,
        heartbeat: 30,
        seq: 0,
        epoch: "e1",
    });
    assert_eq!(wire(&anonymous)["user"], Value::Null);
}

fn ok(id: Option<&Value>, body: ReplyBody) -> Value {
    wire(&ServerMessage::Ok(Reply { id, body }))
}

#[test]
fn ok_replies_carry_what_each_action_answers() {
    let id = json!("1");
    let id = Some(&id);
    let one = ["readings".to_owned()];
    let two = ["a".to_owned(), "b".to_owned()];
    assert_eq!(
        ok(
            id,
            ReplyBody::Subscribed {
                topics: TopicNames::of(&one),
                seq: 1234,
                epoch: "e1"
            }
        ),
        json!({"type": "ok", "id": "1", "topic": "readings", "seq": 1234, "epoch": "e1"})
    );
    assert_eq!(
        ok(
            id,
            ReplyBody::Subscribed {
                topics: TopicNames::of(&two),
                seq: 5,
                epoch: "e1"
            }
        ),
        json!({"type": "ok", "id": "1", "topics": ["a", "b"], "seq": 5, "epoch": "e1"})
    );
    assert_eq!(
        ok(
            None,
            ReplyBody::Unsubscribed {
                topics: TopicNames::of(&two)
            }
        ),
        json!({"type": "ok", "id": null, "topics": ["a", "b"]})
    );
    assert_eq!(
        ok(id, ReplyBody::Published { seq: 9 }),
        json!({"type": "ok", "id": "1", "seq": 9})
    );
    let topics = [
        TopicInfo::Collection {
            name: "readings".into(),
        },
        TopicInfo::Custom(CustomTopic {
            name: "chat-1".into(),
            owner: Some("u1".into()),
            publish: "@user != null".into(),
            subscribe: "room = 'r1'".into(),
            history: 100,
            created: "2026-11-22T09:00:00.000Z".into(),
            presence: true,
        }),
        TopicInfo::System {
            name: "_users".into(),
        },
    ];
    assert_eq!(
        ok(id, ReplyBody::Topics { topics: &topics }),
        json!({"type": "ok", "id": "1", "topics": [
            {"kind": "collection", "name": "readings"},
            {"kind": "custom", "name": "chat-1", "owner": "u1", "publish": "@user != null",
                "subscribe": "room = 'r1'", "history": 100,
                "created": "2026-11-22T09:00:00.000Z", "presence": true},
            {"kind": "system", "name": "_users"},
        ]})
    );
    assert_eq!(
        ok(id, ReplyBody::Topic { topic: "chat-1" }),
        json!({"type": "ok", "id": "1", "topic": "chat-1"})
    );
    let user = json!({"id": "u1"});
    assert_eq!(
        ok(id, ReplyBody::Auth { user: Some(&user) }),
        json!({"type": "ok", "id": "1", "user": {"id": "u1"}})
    );
    let page = json!({"items": [{"id": "r1"}], "next_cursor": null});
    assert_eq!(
        ok(id, ReplyBody::Page(&page)),
        json!({"type": "ok", "id": "1", "items": [{"id": "r1"}], "next_cursor": null})
    );
    let record = json!({"id": "r1", "text": "hi"});
    assert_eq!(
        ok(id, ReplyBody::Record { record: &record }),
        json!({"type": "ok", "id": "1", "record": record})
    );
    assert_eq!(ok(id, ReplyBody::Done {}), json!({"type": "ok", "id": "1"}));
}

#[test]
fn errors_pongs_and_heartbeats_serialize_as_documented() {
    let id = json!(5);
    let error = ApiError::bad_request("nope").with_details(json!({"cost": 9, "budget": 4}));
    assert_eq!(
        wire(&ServerMessage::Error(ErrorReply::new(Some(&id), &error))),
        json!({"type": "error", "id": 5, "code": "bad_request", "message": "nope",
            "details": {"cost": 9, "budget": 4}})
    );
    let plain = ApiError::bad_request("nope");
    assert_eq!(
        wire(&ServerMessage::Error(ErrorReply::new(None, &plain))),
        json!({"type": "error", "id": null, "code": "bad_request", "message": "nope"})
    );
    assert_eq!(
        wire(&ServerMessage::Closing {
            code: "token_expired",
            message: "expired"
        }),
        json!({"type": "error", "code": "token_expired", "message": "expired"})
    );
    assert_eq!(
        wire(&ServerMessage::Pong { id: Some(&id) }),
        json!({"type": "pong", "id": 5})
    );
    assert_eq!(
        wire(&ServerMessage::Pong { id: None }),
        json!({"type": "pong", "id": null})
    );
    assert_eq!(
        wire(&ServerMessage::Heartbeat {
            ts: "2026-11-22T09:00:00.000Z"
        }),
        json!({"type": "heartbeat", "ts": "2026-11-22T09:00:00.000Z"})
    );
}

#[test]
fn an_event_serializes_exactly_as_documented() {
    let record: Map<String, Value> =
        serde_json::from_value(json!({"id": "01J", "device": "gw-7", "temp": 31.5}))
            .expect("an object");
    let event = ServerMessage::Event(Event {
        topic: "readings",
        op: EventOp::Create,
        seq: 1235,
        ts: "2026-11-22T09:00:00.000Z",
        record: Some(EventRecord::Fields(&record)),
        reason: None,
    });
    assert_eq!(
        event.to_text(),
        r#"{"type":"event","topic":"readings","op":"create","seq":1235,"ts":"2026-11-22T09:00:00.000Z","record":{"device":"gw-7","id":"01J","temp":31.5}}"#
    );
}

#[test]
fn events_that_are_not_the_change_itself_say_why() {
    let event = |op, record, reason| {
        wire(&ServerMessage::Event(Event {
            topic: "readings",
            op,
            seq: 7,
            ts: "t",
            record,
            reason: Some(reason),
        }))
    };
    let left = event(
        EventOp::Delete,
        Some(EventRecord::Id { id: "01J" }),
        EventReason::Left,
    );
    assert_eq!(
        left,
        json!({"type": "event", "topic": "readings", "op": "delete", "seq": 7, "ts": "t",
            "record": {"id": "01J"}, "reason": "left"})
    );
    let fields = Map::new();
    let entered = event(
        EventOp::Create,
        Some(EventRecord::Fields(&fields)),
        EventReason::Entered,
    );
    assert_eq!(
        (&entered["op"], &entered["reason"]),
        (&json!("create"), &json!("entered"))
    );
    let expired = event(EventOp::Delete, None, EventReason::Expired);
    assert_eq!(
        (&expired["reason"], &expired["record"]),
        (&json!("expired"), &Value::Null)
    );
}

#[test]
fn messages_serialize_as_documented() {
    let data = serde_json::value::RawValue::from_string(r#"{"text": "hi"}"#.to_owned())
        .expect("valid JSON");
    let message = ServerMessage::Message(Message {
        topic: "chat-1",
        seq: 12,
        ts: "t",
        from: Some("u1"),
        data: MessageData::Published(&data),
    });
    assert_eq!(
        wire(&message),
        json!({"type": "message", "topic": "chat-1", "seq": 12, "ts": "t", "from": "u1",
            "data": {"text": "hi"}})
    );
    let notice = ServerMessage::Message(Message {
        topic: "_connections",
        seq: 12,
        ts: "t",
        from: None,
        data: MessageData::Connection(ConnectionNotice {
            event: "subscribe",
            connection: ConnectionName(3),
            user: None,
            topic: Some("readings"),
            transport: "mqtt",
        }),
    });
    assert_eq!(
        wire(&notice),
        json!({"type": "message", "topic": "_connections", "seq": 12, "ts": "t", "from": null,
            "data": {"event": "subscribe", "connection": "c_3", "user": null,
                "topic": "readings", "transport": "mqtt"}})
    );
}

#[test]
fn series_notices_are_pinned() {
    assert_eq!(
        wire(&ServerMessage::Expired {
            topic: "readings",
            before: "2026-11-03T08:00:00.000Z",
            seq: 9012
        }),
        json!({"type": "expired", "topic": "readings",
               "before": "2026-11-03T08:00:00.000Z", "seq": 9012})
    );
    let bucket = crate::series::Bucket {
        t: 1_796_284_800_000,
        group: json!({"device": "gw-1"}).as_object().unwrap().clone(),
        values: [
            ("avg(temp)".to_owned(), json!(21.3)),
            ("count()".to_owned(), json!(60)),
        ]
        .into_iter()
        .collect(),
    };
    assert_eq!(
        wire(&ServerMessage::Bucket {
            topic: "readings",
            bucket: &bucket,
            seq: 77
        }),
        json!({"type": "bucket", "topic": "readings", "t": "2026-12-03T08:00:00.000Z",
               "group": {"device": "gw-1"}, "values": {"avg(temp)": 21.3, "count()": 60},
               "seq": 77})
    );
}

#[test]
fn unsubscribed_names_its_reason() {
    let notice = |reason| {
        wire(&ServerMessage::Unsubscribed(Unsubscribed {
            topic: "chat-1",
            reason,
        }))
    };
    assert_eq!(
        notice(UnsubscribeReason::TopicDeleted),
        json!({"type": "unsubscribed", "topic": "chat-1", "reason": "topic_deleted"})
    );
    assert_eq!(
        notice(UnsubscribeReason::CollectionDropped),
        json!({"type": "unsubscribed", "topic": "chat-1", "reason": "collection_dropped"})
    );
    assert_eq!(
        notice(UnsubscribeReason::HistoryExpired { oldest: 40 }),
        json!({"type": "unsubscribed", "topic": "chat-1", "reason": "history_expired",
            "oldest": 40})
    );
}

#[test]
fn error_details_serialize_as_documented() {
    assert_eq!(
        details(&HistoryExpiredDetails {
            oldest: 3,
            epoch: "e1"
        }),
        json!({"oldest": 3, "epoch": "e1"})
    );
    assert_eq!(
        details(&FilterBudgetDetails {
            cost: 5000,
            budget: 4096
        }),
        json!({"cost": 5000, "budget": 4096})
    );
}
