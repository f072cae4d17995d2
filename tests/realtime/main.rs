//! Realtime delivery over real sockets: who sees which events,
//! ops and filters, record topics, deletes, custom topics, resume, limits,
//! series readings.

#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod connection;
mod delivery;
mod outbox;
mod resume;
mod series;
mod sse_wire;
mod topics;

use std::time::Duration;

use common::live::{RawWs, Sse, Ws, OPCODE_PING};
use common::{client, error_code, send, TestServer};
use futures_util::SinkExt;
use serde_json::{json, Value};

/// Notes: each user sees their own and what is shared with them; `secret`
/// is protected.
async fn notes_server() -> (TestServer, String, String, String) {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({
                "name": "notes",
                "fields": {"text": {"type": "string"}, "secret": {"type": "string"},
                           "shared_with": {"type": "json"}, "public": {"type": "boolean"}},
                "protected": ["secret"],
                "rules": {
                    "list": "true",
                    "view": "public = true || owner = @user.id || @user.id in shared_with",
                    "create": "@user != null",
                    "update": "owner = @user.id",
                    "delete": "owner = @user.id"
                }
            }),
        )
        .await;
    for email in ["ann@example.com", "bob@example.com"] {
        server
            .create_user(&admin, json!({"email": email, "password": "password-123"}))
            .await;
    }
    let ann = server.signin("ann@example.com", "password-123").await;
    let bob = server.signin("bob@example.com", "password-123").await;
    (server, admin, ann, bob)
}

async fn patch(url: &str, token: &str, body: Value) -> u16 {
    send(client().patch(url).bearer_auth(token).json(&body))
        .await
        .0
}

async fn delete(url: &str, token: &str) -> u16 {
    send(client().delete(url).bearer_auth(token)).await.0
}

async fn user_id(server: &TestServer, token: &str) -> Value {
    let (_, me) = send(client().get(server.url("/api/auth/me")).bearer_auth(token)).await;
    me["id"].clone()
}

fn options(args: &[&str]) -> common::Options {
    common::Options {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..common::Options::default()
    }
}
