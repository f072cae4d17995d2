//! Start-up, settings, the admin CLI and graceful shutdown of the real binary.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{client, error_code, send, Options, TestServer};
use serde_json::json;

/// Posts a batch of `count` empty records to collection `c`.
async fn post_empty_records(
    server: &TestServer,
    token: &str,
    count: usize,
) -> (u16, serde_json::Value) {
    let batch = vec![json!({}); count];
    send(
        client()
            .post(server.url("/api/collections/c/records"))
            .bearer_auth(token)
            .json(&batch),
    )
    .await
}

#[tokio::test]
async fn health_reports_the_version() {
    let server = TestServer::start();
    let (status, body) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
}

#[tokio::test]
async fn sigterm_flushes_relaxed_writes_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let relaxed = || Options {
        args: vec![
            "--durability".into(),
            "relaxed".into(),
            "--flush-ms".into(),
            "60000".into(),
        ],
        ..Options::default()
    };
    let mut server = TestServer::start_in(dir.path(), relaxed());
    let token = server.admin_token().await;
    server
        .create_collection(&token, json!({"name": "logs"}))
        .await;
    let (status, _) = send(
        client()
            .post(server.url("/api/collections/logs/records"))
            .bearer_auth(&token)
            .json(&json!({"id": "kept", "line": 1})),
    )
    .await;
    assert_eq!(status, 201);
    assert!(server.terminate(), "clean exit on SIGTERM");

    let server = TestServer::start_in(dir.path(), relaxed());
    let token = server.admin_token().await;
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/logs/records/kept"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(
        status, 200,
        "written before shutdown, flushed at shutdown: {body}"
    );
}

#[tokio::test]
async fn settings_come_from_the_data_dir_file_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pulsebase.toml"),
        "max_batch = 2\nallow_signup = true\n",
    )
    .unwrap();
    let server = TestServer::start_in(dir.path(), Options::default());
    let token = server.admin_token().await;
    server.create_collection(&token, json!({"name": "c"})).await;
    let (status, body) = post_empty_records(&server, &token, 3).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    let (status, _) = send(
        client()
            .post(server.url("/api/auth/signup"))
            .json(&json!({"email": "x@example.com", "password": "password-123"})),
    )
    .await;
    assert_eq!(status, 201, "allow_signup from the file");
    drop(server);

    let server = TestServer::start_in(
        dir.path(),
        Options {
            args: vec!["--max-batch".into(), "3".into()],
            ..Options::default()
        },
    );
    let token = server.admin_token().await;
    let (status, _) = post_empty_records(&server, &token, 3).await;
    assert_eq!(status, 201, "the flag beats the file");
}

#[test]
fn bad_settings_stop_the_start_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--durability",
            "eventually",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("durability"), "{stderr}");
}

/// Runs `pulsebase admin create --password-stdin` on `data`.
fn admin_create(data: &std::path::Path, email: &str, password: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args([
            "admin",
            "create",
            "--email",
            email,
            "--password-stdin",
            "--data",
        ])
        .arg(data)
        .env("PULSEBASE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn admin_create_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = admin_create(dir.path(), "ops@example.com", "ops-password");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let again = admin_create(dir.path(), "ops@example.com", "ops-password");
    assert!(!again.status.success(), "the same email twice is refused");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already exists"),
        "refused for the right reason: {stderr}"
    );

    let server = TestServer::start_in(
        dir.path(),
        Options {
            admin: false,
            ..Options::default()
        },
    );
    assert!(
        !server.banner.join("\n").contains("setup code"),
        "an admin exists: no setup code"
    );
    let token = server.signin("ops@example.com", "ops-password").await;
    let (status, _) = send(
        client()
            .get(server.url("/api/collections"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn environment_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pulsebase.toml"), "max_batch = 2\n").unwrap();
    let server = TestServer::start_in(
        dir.path(),
        Options {
            env: vec![("PULSEBASE_MAX_BATCH".into(), "3".into())],
            ..Options::default()
        },
    );
    let token = server.admin_token().await;
    server.create_collection(&token, json!({"name": "c"})).await;
    let (status, _) = post_empty_records(&server, &token, 3).await;
    assert_eq!(status, 201);
    let (status, _) = post_empty_records(&server, &token, 4).await;
    assert_eq!(status, 413);
}

/// The allocator's purge delay the server runs with (it sets it and
/// executes itself again when the environment does not).
fn purge_delay(server: &TestServer) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid())).unwrap();
    environ
        .split(|b| *b == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix("MIMALLOC_PURGE_DELAY="))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_small_cache_gives_freed_memory_back_at_once() {
    // Only the mimalloc build on Linux sets it, and only when it is unset.
    if !cfg!(target_os = "linux") || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    let small = TestServer::start_with(Options {
        env: vec![("PULSEBASE_CACHE_MB".into(), "8".into())],
        ..Options::default()
    });
    small.admin_token().await;
    let default = TestServer::start();
    default.admin_token().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pulsebase.toml"), "cache_mb = 16\n").unwrap();
    let from_file = TestServer::start_in(dir.path(), Options::default());
    from_file.admin_token().await;
    assert_eq!(purge_delay(&small).as_deref(), Some("0"));
    assert_eq!(purge_delay(&from_file).as_deref(), Some("0"));
    assert_eq!(purge_delay(&default).as_deref(), Some("10"));
}

#[test]
fn version_and_help() {
    let output = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("pulsebase {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["serve", "admin", "--http", "--data", "--durability"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}
