//! What admins watch: the `_connections` and `_users` topics and the
//! dashboard counts.

use super::*;

#[tokio::test]
async fn admins_watch_connections_and_users() {
    let (server, admin, ann, _bob) = notes_server().await;
    let mut watcher = Ws::connect(&server, Some(&admin)).await;
    for topic in ["_users", "_connections"] {
        let reply = watcher
            .request(json!({"action": "subscribe", "topic": topic}))
            .await;
        assert_eq!(reply["type"], "ok", "{reply}");
    }
    let mut ws = Ws::connect(&server, Some(&ann)).await;
    let notice = watcher.next().await;
    assert_eq!(notice["topic"], "_connections");
    assert_eq!(notice["data"]["event"], "connect");
    assert_eq!(notice["data"]["connection"], ws.welcome["connection"]);
    ws.request(json!({"action": "subscribe", "topic": "notes"}))
        .await;
    let notice = watcher.next().await;
    assert_eq!(
        (
            notice["data"]["event"].as_str(),
            notice["data"]["topic"].as_str()
        ),
        (Some("subscribe"), Some("notes"))
    );
    drop(ws);
    let notice = watcher.next().await;
    assert_eq!(notice["data"]["event"], "disconnect");
    server
        .create_user(
            &admin,
            json!({"email": "cy@example.com", "password": "password-123"}),
        )
        .await;
    let event = watcher.next().await;
    assert_eq!(
        (event["topic"].as_str(), event["op"].as_str()),
        (Some("_users"), Some("create"))
    );
    assert!(
        event["record"].get("password_hash").is_none() && event["record"].get("hash").is_none(),
        "{event}"
    );
}

#[tokio::test]
async fn admins_read_the_counts_the_dashboard_charts() {
    let (server, admin, ann, bob) = notes_server().await;
    let stats = |token: String| {
        let url = server.url("/api/stats");
        async move { send(client().get(url).bearer_auth(token)).await }
    };
    let (status, before) = stats(admin.clone()).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["connections"], 0, "{before}");
    let mut sockets = Vec::new();
    for token in [&ann, &bob] {
        let mut ws = Ws::connect(&server, Some(token)).await;
        for topic in ["notes", "notes/none"] {
            ws.request(json!({"action": "subscribe", "topic": topic}))
                .await;
        }
        sockets.push(ws);
    }
    for text in ["a", "b", "c"] {
        server
            .create_record(&ann, "notes", json!({"text": text, "public": true}))
            .await;
    }
    for ws in &mut sockets {
        for _ in 0..3 {
            assert_eq!(ws.next().await["type"], "event");
        }
    }
    let (_, after) = stats(admin.clone()).await;
    assert_eq!(after["connections"], 2, "{after}");
    // notes/none does not exist: refused, so one subscription each.
    assert_eq!(after["subscriptions"], 2, "{after}");
    let delivered = |v: &Value| v["events_delivered"].as_u64().unwrap();
    assert_eq!(
        delivered(&after) - delivered(&before),
        6,
        "{before} {after}"
    );
    let seq = |v: &Value| v["seq"].as_u64().unwrap();
    assert_eq!(seq(&after) - seq(&before), 3, "{before} {after}");
    assert_eq!(after["records"]["notes"], 3, "{after}");
    assert!(after["storage_bytes"].as_u64().unwrap() > 0, "{after}");
    drop(sockets);
    let (status, body) = stats(ann.clone()).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"), "{body}");
    let (status, _) = send(client().get(server.url("/api/stats"))).await;
    assert_eq!(status, 401);
}
