//! Realtime delivery yields the cores to requests and writes: WebSocket
//! connections run on their own threads (`pulsebase-live`), at a lower
//! scheduling priority than the threads that answer requests and write.
//! How much that helps is a benchmark's business (bench/, realtime
//! suite); this checks the arrangement itself, on Linux, where the nice
//! value is per thread and visible in /proc.

mod common;

use common::live::Ws;
use common::TestServer;

/// (name, nice) of each thread of `pid`.
fn threads(pid: u32) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc") {
        let dir = task.expect("task").path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        // The fields after the parenthesised name; nice is field 19.
        let after = &stat[stat.rfind(')').expect("stat") + 2..];
        let nice = after
            .split(' ')
            .nth(16)
            .and_then(|n| n.parse().ok())
            .expect("nice");
        out.push((name.trim().to_owned(), nice));
    }
    out
}

#[tokio::test]
async fn websocket_connections_run_on_lower_priority_threads() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let mut ws = Ws::connect(&server, Some(&admin)).await;
    let pong = ws.request(serde_json::json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    let threads = threads(server.pid());
    let live: Vec<_> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("pulsebase-live"))
        .collect();
    assert!(!live.is_empty(), "no connection threads: {threads:?}");
    // Relative to the process's own priority, whatever the test runner's.
    let base = threads
        .iter()
        .find(|(name, _)| name == "pulsebase-write")
        .map(|(_, nice)| *nice)
        .expect("the writer thread");
    for name in ["pulsebase-flush", "tokio-rt-worker"] {
        assert!(
            threads.iter().any(|(n, nice)| n == name && *nice == base),
            "{name} should run at the writer's priority: {threads:?}"
        );
    }
    assert!(
        live.iter().all(|(_, nice)| *nice > base),
        "connection threads not lowered: {threads:?}"
    );
}
