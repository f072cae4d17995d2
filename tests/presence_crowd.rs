//! Presence in a room of two thousand members over real sockets: the
//! count is exact, and past `presence_max` every subscriber gets one count
//! per window, not a join or leave per member.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live::Ws;
use common::{client, send, Options, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

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

async fn presence(ws: &mut Ws, topic: &str) -> Value {
    ws.request(json!({"action": "presence", "topic": topic}))
        .await
}

/// Raises this process's soft limit on open files (the server inherits
/// it) to `needed`, when the hard limit allows, with util-linux `prlimit`.
fn ensure_open_files(needed: u64) {
    let soft = || {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| {
                let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
                line.split_whitespace().nth(3)?.parse::<u64>().ok()
            })
    };
    if soft().is_some_and(|n| n >= needed) {
        return;
    }
    let _ = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={needed}:"))
        .status();
    let now = soft();
    assert!(
        now.is_some_and(|n| n >= needed),
        "this test needs {needed} open files; the soft limit is {now:?} (ulimit -n)"
    );
}

const ROOM: usize = 2000;
const DROPPED: usize = 500;

/// What one member's reader saw.
#[derive(Default)]
struct Heard {
    /// `join`, `leave` and `presence` frames.
    frames: AtomicUsize,
    leaves: AtomicUsize,
    /// The last count a `presence` frame gave, plus one (0: none yet).
    count: AtomicUsize,
}

/// A connected client, not yet subscribed.
type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(url: String) -> Client {
    // Small buffers: two thousand clients in one process.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut stream, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .expect("websocket connect");
    let welcome = stream.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"));
    stream
}

/// A member: subscribes, then reads until dropped, noting what it hears.
fn member(mut stream: Client, heard: Arc<Heard>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let subscribe = json!({"id": "s", "action": "subscribe", "topic": "crowd"});
        stream
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            match frame["type"].as_str() {
                Some("ok") => {}
                Some("join") => {
                    heard.frames.fetch_add(1, Ordering::Relaxed);
                }
                Some("leave") => {
                    heard.frames.fetch_add(1, Ordering::Relaxed);
                    heard.leaves.fetch_add(1, Ordering::Relaxed);
                }
                Some("presence") => {
                    heard.frames.fetch_add(1, Ordering::Relaxed);
                    let count = frame["count"].as_u64().unwrap() as usize;
                    heard.count.store(count + 1, Ordering::Relaxed);
                }
                _ => panic!("unexpected {frame}"),
            }
        }
    })
}

fn total(heard: &[Arc<Heard>], of: impl Fn(&Heard) -> usize) -> usize {
    heard.iter().map(|h| of(h)).sum()
}

/// Waits until every member in `heard` last heard the count `count`.
async fn all_heard(heard: &[Arc<Heard>], count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let behind = heard
            .iter()
            .filter(|h| h.count.load(Ordering::Relaxed) != count + 1)
            .count();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{behind} members never heard the count {count}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_of_two_thousand_is_counted_exactly_with_one_message_per_window() {
    // Each connection is one descriptor here and one in the server.
    ensure_open_files(2 * ROOM as u64 + 500);
    let server = TestServer::start_with(Options {
        args: vec!["--max-connections-per-ip".into(), "5000".into()],
        ..Options::default()
    });
    let admin = server.admin_token().await;
    create_topic(
        &server,
        &admin,
        json!({"name": "crowd", "presence": true, "subscribe": "true"}),
    )
    .await;
    let url = server.base.replacen("http://", "ws://", 1) + "/api/realtime";

    let started = Instant::now();
    let mut clients = Vec::with_capacity(ROOM);
    while clients.len() < ROOM {
        let batch = (0..200).map(|_| connect(url.clone()));
        clients.extend(futures_util::future::join_all(batch).await);
    }
    let connected = started.elapsed();
    // Everyone subscribes at once, as a room fills when an event starts.
    let heard: Vec<Arc<Heard>> = (0..ROOM).map(|_| Arc::default()).collect();
    let mut readers: Vec<_> = clients
        .into_iter()
        .zip(&heard)
        .map(|(client, heard)| member(client, heard.clone()))
        .collect();
    all_heard(&heard, ROOM).await;
    let mut observer = Ws::connect(&server, Some(&admin)).await;
    let reply = presence(&mut observer, "crowd").await;
    assert_eq!(
        reply,
        json!({"type": "ok", "id": reply["id"], "count": ROOM}),
        "past presence_max (1000) only the count"
    );
    let ramp = started.elapsed();
    // Let the last windows go out before counting what the drop costs.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = total(&heard, |h| h.frames.load(Ordering::Relaxed));
    eprintln!(
        "{ROOM} connected in {connected:?}, members in {ramp:?}: {before} presence frames in all"
    );
    // Subscribing together, the room filled in a few windows, each a
    // count: not a join per member per member (two million).
    assert!(
        before <= ROOM * (ramp.as_millis() as usize / 100 + 2),
        "{before} frames while {ROOM} joined in {ramp:?}"
    );

    let (_, stayed) = heard.split_at(DROPPED);
    let stayed_before = total(stayed, |h| h.frames.load(Ordering::Relaxed));
    let dropped_at = Instant::now();
    for reader in readers.drain(..DROPPED) {
        reader.abort();
    }
    all_heard(stayed, ROOM - DROPPED).await;
    let reply = presence(&mut observer, "crowd").await;
    assert_eq!(reply["count"], ROOM - DROPPED, "{reply}");
    assert!(reply.get("presence").is_none(), "{reply}");
    let took = dropped_at.elapsed();
    // Let any window still open go out, then count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = total(stayed, |h| h.frames.load(Ordering::Relaxed)) - stayed_before;
    let windows = (took + Duration::from_millis(300)).as_millis() as usize / 100 + 2;
    eprintln!(
        "{DROPPED} left in {took:?}: {after} frames to {} members",
        stayed.len()
    );
    assert_eq!(
        total(stayed, |h| h.leaves.load(Ordering::Relaxed)),
        0,
        "no leave one by one past presence_max"
    );
    assert!(
        after <= stayed.len() * windows,
        "{after} frames for {} members over {windows} windows: more than one per window",
        stayed.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
