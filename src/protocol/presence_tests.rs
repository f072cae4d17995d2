//! The presence messages against the JSON docs/realtime.md shows.

use serde_json::{json, Value};

use super::client::ClientMessage;
use super::server::*;
use super::Request;

fn wire(message: &ServerMessage) -> Value {
    let text = message.to_text();
    let kind = message.kind();
    assert!(text.starts_with(&format!(r#"{{"type":"{kind}""#)), "{text}");
    serde_json::from_str(&text).expect("server messages are JSON")
}

fn member<'a>(conn: u64, user: Option<(&'a str, &'a str)>) -> PresenceMember<'a> {
    PresenceMember {
        connection: ConnectionName(conn),
        user: user.map(|(id, name)| PresenceUser { id, name }),
        since: "2026-11-22T09:00:00.000Z",
    }
}

#[test]
fn the_presence_action_parses() {
    let request = Request::parse(r#"{"id":"1","action":"presence","topic":"chat-1"}"#)
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert_eq!(request.id, Some(json!("1")));
    assert_eq!(
        request.message,
        ClientMessage::Presence {
            topic: "chat-1".into()
        }
    );
    let missing = Request::parse(r#"{"action":"presence"}"#).expect_err("no topic");
    assert!(missing.message.contains("topic"), "{}", missing.message);
}

#[test]
fn the_presence_reply_lists_members_or_only_counts_them() {
    let id = json!("7");
    let members = [member(3, Some(("u1", "Ann"))), member(4, None)];
    let listed = ServerMessage::Ok(Reply {
        id: Some(&id),
        body: ReplyBody::Presence {
            presence: Some(&members),
            count: 2,
        },
    });
    assert_eq!(
        wire(&listed),
        json!({"type": "ok", "id": "7", "presence": [
            {"connection": "c_3", "user": {"id": "u1", "name": "Ann"},
                "since": "2026-11-22T09:00:00.000Z"},
            {"connection": "c_4", "user": null, "since": "2026-11-22T09:00:00.000Z"},
        ], "count": 2})
    );
    let counted = ServerMessage::Ok(Reply {
        id: Some(&id),
        body: ReplyBody::Presence {
            presence: None,
            count: 2000,
        },
    });
    assert_eq!(
        wire(&counted),
        json!({"type": "ok", "id": "7", "count": 2000})
    );
}

#[test]
fn joins_leaves_and_counts_serialize_as_documented() {
    let join = ServerMessage::Join(PresenceChange {
        topic: "chat-1",
        member: member(3, Some(("u1", "Ann"))),
    });
    assert_eq!(
        wire(&join),
        json!({"type": "join", "topic": "chat-1", "connection": "c_3",
            "user": {"id": "u1", "name": "Ann"}, "since": "2026-11-22T09:00:00.000Z"})
    );
    let leave = ServerMessage::Leave(PresenceChange {
        topic: "chat-1",
        member: member(4, None),
    });
    assert_eq!(
        wire(&leave),
        json!({"type": "leave", "topic": "chat-1", "connection": "c_4", "user": null,
            "since": "2026-11-22T09:00:00.000Z"})
    );
    let count = ServerMessage::Presence {
        topic: "chat-1",
        count: 1500,
    };
    assert_eq!(
        wire(&count),
        json!({"type": "presence", "topic": "chat-1", "count": 1500})
    );
}
