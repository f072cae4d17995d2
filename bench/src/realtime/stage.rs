//! Setting up a run: the server signed in with its collection or topic and
//! subscriber accounts, and the subscribers themselves (WebSocket or SSE).

use super::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::broker_wire::BrokerConn;
use crate::load;
use crate::procs::{self, CpuSnapshot, Server, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::wire::{Sse, Ws};

pub(super) async fn stage_pulsebase(server: Server, sc: Scenario) -> anyhow::Result<Stage> {
    let addr = server.addr;
    let admin = format!(
        "Bearer {}",
        load::pulsebase_token(addr, ADMIN_EMAIL, ADMIN_PASSWORD).await?
    );
    // The view rule is checked per subscriber per event, in the hub.
    let mut collection = json!({
        "name": "readings",
        "fields": {
            "device": {"type": "string", "required": true},
            "temp": {"type": "number"},
            "n": {"type": "integer"},
            "sent": {"type": "integer"}
        },
        "rules": {"create": "@user != null", "list": "@user != null", "view": "@user != null"}
    });
    if let Kind::SeriesFanout { .. } = sc.kind {
        // Writes carry no `ts`: a reading without its time field is stamped
        // with the time the server received it.
        collection["kind"] = json!("series");
        collection["series"] = json!("device");
        collection["time"] = json!("ts");
        collection["fields"]["ts"] = json!({"type": "datetime"});
    }
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&admin),
        Some(collection),
    )
    .await?;
    if let Kind::Publish { .. }
    | Kind::PublishOne { .. }
    | Kind::PublishMax { .. }
    | Kind::Burst { .. } = sc.kind
    {
        load::request_ok(
            addr,
            Method::POST,
            "/api/topics",
            Some(&admin),
            Some(json!({"name": "bench", "history": 0,
                        "subscribe": "@user != null", "publish": "@user != null"})),
        )
        .await?;
        // The message rate limit (100/s per sender by default) guards a
        // server against one noisy client; here one account is the load.
        load::request_ok(
            addr,
            Method::PATCH,
            "/api/settings",
            Some(&admin),
            Some(json!({"message_rate": 10_000_000})),
        )
        .await?;
    }
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("sub{i}@example.com");
        load::request_ok(
            addr,
            Method::POST,
            "/api/users",
            Some(&admin),
            Some(json!({"email": email, "password": USER_PASSWORD})),
        )
        .await?;
        tokens.push(load::pulsebase_token(addr, &email, USER_PASSWORD).await?);
    }
    Ok(Stage {
        server,
        addr,
        writer_auth: admin,
        tokens,
    })
}

pub(super) async fn stage_pocketbase(server: Server) -> anyhow::Result<Stage> {
    let addr = server.addr;
    let admin = load::pocketbase_token(addr, "_superusers", ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let rule = "@request.auth.id != ''";
    load::request_ok(
        addr,
        Method::POST,
        "/api/collections",
        Some(&admin),
        Some(json!({
            "name": "readings",
            "type": "base",
            "fields": [
                {"name": "device", "type": "text", "required": true},
                {"name": "temp", "type": "number"},
                {"name": "n", "type": "number", "onlyInt": true},
                {"name": "sent", "type": "number", "onlyInt": true}
            ],
            "createRule": rule,
            "listRule": rule,
            "viewRule": rule
        })),
    )
    .await?;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        let email = format!("sub{i}@example.com");
        load::request_ok(
            addr,
            Method::POST,
            "/api/collections/users/records",
            Some(&admin),
            Some(json!({"email": email, "password": USER_PASSWORD, "passwordConfirm": USER_PASSWORD})),
        )
        .await?;
        tokens.push(load::pocketbase_token(addr, "users", &email, USER_PASSWORD).await?);
    }
    Ok(Stage {
        server,
        addr,
        writer_auth: admin,
        tokens,
    })
}

/// A broker takes anonymous clients: no accounts, no tokens (one empty
/// token so subscribers can still be dealt tokens in turn).
pub(super) fn stage_broker(server: Server) -> Stage {
    Stage {
        addr: server.addr,
        server,
        writer_auth: String::new(),
        tokens: vec![String::new()],
    }
}

pub(super) fn string_field(answer: &Value, key: &str) -> anyhow::Result<String> {
    Ok(answer[key]
        .as_str()
        .with_context(|| format!("answer has no {key}: {answer}"))?
        .to_owned())
}

/// One subscribed connection, either kind.
pub(super) enum Client {
    Ws(Ws),
    Sse(Sse),
    Broker(BrokerConn),
}

/// Opens subscriber `index` and subscribes it to `topic`. `poster` is a
/// keep-alive connection for PocketBase's subscribe POST.
pub(super) async fn subscribe(
    stage_addr: SocketAddr,
    peer: Peer,
    transport: Transport,
    token: &str,
    (topic, filter): (&str, Option<&str>),
    buffer: usize,
    poster: &mut Option<SendRequest<Full<Bytes>>>,
) -> anyhow::Result<Client> {
    match (peer, transport) {
        (Peer::Pulsebase, Transport::Ws) => {
            let mut ws = Ws::connect(stage_addr, Some(token), buffer).await?;
            let welcome = ws.next_text().await?;
            anyhow::ensure!(
                contains(&welcome, br#""type":"welcome""#),
                "expected welcome, got {}",
                String::from_utf8_lossy(&welcome)
            );
            let filter = match filter {
                Some(filter) => format!(r#","filter":{}"#, serde_json::to_string(filter)?),
                None => String::new(),
            };
            ws.send_text(&format!(
                r#"{{"id":"s","action":"subscribe","topic":"{topic}"{filter}}}"#
            ))
            .await?;
            loop {
                let reply = ws.next_text().await?;
                if contains(&reply, br#""type":"ok""#) {
                    return Ok(Client::Ws(ws));
                }
                if contains(&reply, br#""type":"error""#) {
                    bail!("subscribe refused: {}", String::from_utf8_lossy(&reply));
                }
            }
        }
        (Peer::Pulsebase, Transport::Sse) => {
            anyhow::ensure!(filter.is_none(), "SSE subscribers take no filter here");
            let sse = Sse::open(
                stage_addr,
                &format!("/api/realtime/sse?topic={topic}"),
                Some(&format!("Bearer {token}")),
            )
            .await?;
            Ok(Client::Sse(sse))
        }
        (Peer::PocketBase, Transport::Sse) => {
            let mut sse = Sse::open(stage_addr, "/api/realtime", None).await?;
            let connect = sse.next_event().await?;
            let text = String::from_utf8_lossy(&connect);
            let data = text
                .lines()
                .find_map(|l| l.strip_prefix("data:"))
                .context("PB_CONNECT has no data")?;
            let client_id = string_field(&serde_json::from_str(data.trim())?, "clientId")?;
            let sender = match poster {
                Some(s) => s,
                None => poster.insert(load::connect(stage_addr).await?),
            };
            let body = json!({"clientId": client_id, "subscriptions": [format!("{topic}/*")]});
            let request = Request::post("/api/realtime")
                .header(HOST, stage_addr.to_string())
                .header(AUTHORIZATION, token)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
            load::send_ok(sender, request)
                .await
                .context("PocketBase subscribe")?;
            Ok(Client::Sse(sse))
        }
        (Peer::Nats | Peer::Redis, Transport::Tcp) => {
            let protocol = super::brokers::protocol(peer).context("a broker peer")?;
            let mut conn = BrokerConn::connect(protocol, stage_addr, buffer).await?;
            conn.subscribe(topic).await?;
            Ok(Client::Broker(conn))
        }
        (peer, transport) => bail!("{peer:?} has no {transport:?} subscribers here"),
    }
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

/// Opens `count` subscribers, `SETUP_PARALLEL` at a time.
pub(super) async fn open_subscribers(
    stage: &Stage,
    sc: Scenario,
    count: usize,
    topic: &str,
    buffer: usize,
) -> anyhow::Result<Vec<Client>> {
    let mut set = JoinSet::new();
    let lanes = SETUP_PARALLEL.min(count.max(1));
    for lane in 0..lanes {
        let addr = stage.addr;
        let tokens = stage.tokens.clone();
        let topic = topic.to_owned();
        set.spawn_local(async move {
            let mut poster = None;
            let mut mine = Vec::new();
            for index in (lane..count).step_by(lanes) {
                let token = &tokens[index % tokens.len()];
                let filter = routed_device(sc.kind, index as u64)
                    .map(|device| format!("device = '{device}'"));
                let client = subscribe(
                    addr,
                    sc.peer,
                    sc.transport(),
                    token,
                    (&topic, filter.as_deref()),
                    buffer,
                    &mut poster,
                )
                .await
                .with_context(|| format!("subscriber {index}"))?;
                mine.push((index, client));
            }
            anyhow::Ok(mine)
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(lane) = set.join_next().await {
        all.extend(lane??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, c)| c).collect())
}

pub(super) async fn idle(
    mut stage: Stage,
    sc: Scenario,
    connections: usize,
    hz: u64,
) -> anyhow::Result<Outcome> {
    let pid = stage.server.pid();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = procs::rss_kib(pid).context("cannot read the server's RSS")?;
    let a = CpuSnapshot::take(pid);
    let started = Instant::now();
    let clients = open_subscribers(&stage, sc, connections, "readings", 2048).await?;
    // Let allocations settle (lazy buffers, the allocator's caches).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after_kib = procs::rss_kib(pid).context("cannot read the server's RSS")?;
    let b = CpuSnapshot::take(pid);
    let opened = clients.len();
    drop(clients);
    stage.server.stop();
    Ok(Outcome {
        scenario: sc,
        measured: Measured::Memory(Memory {
            connections,
            opened,
            rss_before_kib,
            rss_after_kib,
        }),
        duration: started.elapsed(),
        rss_kib: Some(rss_after_kib),
        cpu: procs::cpu_use(&a, &b, hz),
    })
}
