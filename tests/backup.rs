//! Backup and restore with the real binary: a backup taken over HTTP while
//! writes go on holds every write acknowledged before it began, restores
//! into a store that opens and answers consistently, and the offline and
//! refusal paths say what is wrong.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{backup_leftovers, client, error_code, header, ids, send, Options, TestServer};
use serde_json::{json, Value};

fn pulsebase(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pulsebase"));
    command
        .args(args)
        .env_remove("PULSEBASE_DATA")
        .env_remove("PULSEBASE_TOKEN")
        .env("RUST_BACKTRACE", "0");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run pulsebase")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Every record id of a collection, page by page.
async fn all_ids(server: &TestServer, token: &str, collection: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = server.url(&format!("/api/collections/{collection}/records?limit=1000"));
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = send(client().get(url).bearer_auth(token)).await;
        assert_eq!(status, 200, "{page}");
        found.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return found,
        }
    }
}

async fn stats(server: &TestServer, token: &str) -> Value {
    let (status, body) = send(client().get(server.url("/api/stats")).bearer_auth(token)).await;
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_backup_during_writes_holds_every_acknowledged_write_and_restores_cleanly() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    server
        .create_collection(
            &admin,
            json!({"name": "readings", "fields": {"device": {"type": "string"}, "n": {"type": "integer"}},
                   "indexes": ["device"]}),
        )
        .await;

    // Four writers, each logging what was acknowledged, in order.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, stop, url, token) = (
            acked.clone(),
            stop.clone(),
            server.url("/api/collections/readings/records"),
            admin.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = json!({"device": format!("dev-{w}"), "n": n});
                let (status, record) =
                    send(client().post(&url).bearer_auth(&token).json(&body)).await;
                assert_eq!(status, 201, "{record}");
                acked
                    .lock()
                    .expect("lock")
                    .push(record["id"].as_str().expect("id").to_owned());
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("live.pbbackup");
    let before: Vec<String> = acked.lock().expect("lock").clone();
    let (base, token, out) = (server.base.clone(), admin.clone(), file.clone());
    let backup = tokio::task::spawn_blocking(move || {
        pulsebase(
            &["backup", path(&out), "--url", &base],
            &[("PULSEBASE_TOKEN", &token)],
        )
    })
    .await
    .expect("join");
    assert!(backup.status.success(), "{}", text(&backup));
    assert!(text(&backup).contains("backed up"), "{}", text(&backup));
    // Writes went on during and after the backup.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }
    let total = acked.lock().expect("lock").len();
    assert!(
        before.len() >= 20 && total > before.len(),
        "{} then {total}",
        before.len()
    );

    let restored_dir = dir.path().join("restored");
    let restore = pulsebase(
        &["restore", path(&file), "--data", path(&restored_dir)],
        &[],
    );
    assert!(restore.status.success(), "{}", text(&restore));

    let restored = TestServer::start_in(
        &restored_dir,
        Options {
            admin: false,
            ..Options::default()
        },
    );
    // The same signing secret: the old token still works.
    let found = all_ids(&restored, &admin, "readings").await;
    let found_set: std::collections::HashSet<&String> = found.iter().collect();
    let missing: Vec<&String> = before.iter().filter(|id| !found_set.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    assert!(found.len() <= total);
    // The count, the index and the change log agree with the records.
    let restored_stats = stats(&restored, &admin).await;
    assert_eq!(restored_stats["records"]["readings"], json!(found.len()));
    let mut by_device = 0;
    for w in 0..4 {
        let (status, page) = send(
            client()
                .get(restored.url(&format!("/api/collections/readings/records?filter=device%20%3D%20'dev-{w}'&limit=1000&fields=id")))
                .bearer_auth(&admin),
        )
        .await;
        assert_eq!(status, 200);
        by_device += ids(&page).len();
    }
    assert_eq!(
        by_device,
        found.len(),
        "the device index matches the records"
    );
    // Change 1 is the admin's creation (users are on the change log too),
    // then one change per record: the log and the records agree.
    assert_eq!(
        restored_stats["seq"].as_u64(),
        Some(found.len() as u64 + 1),
        "one change per create"
    );

    // The restored server takes new writes after the restored seqs.
    let (status, _) = send(
        client()
            .post(restored.url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(&json!({"device": "after", "n": 0})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        stats(&restored, &admin).await["seq"].as_u64(),
        Some(found.len() as u64 + 2)
    );
}

#[tokio::test]
async fn offline_backup_needs_a_stopped_server_and_restore_needs_an_empty_dir() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_in(&data, Options::default());
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "notes"}))
        .await;
    let file = dir.path().join("offline.pbbackup");

    let refused = pulsebase(&["backup", path(&file), "--data", path(&data)], &[]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--url"), "{}", text(&refused));
    assert!(!file.exists());

    assert!(server.terminate(), "clean stop");
    let done = pulsebase(&["backup", path(&file), "--data", path(&data)], &[]);
    assert!(done.status.success(), "{}", text(&done));

    let refused = pulsebase(&["restore", path(&file), "--data", path(&data)], &[]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("not empty"), "{}", text(&refused));

    let mut damaged = std::fs::read(&file).expect("read");
    damaged.truncate(damaged.len() - 1);
    let bad = dir.path().join("damaged.pbbackup");
    std::fs::write(&bad, &damaged).expect("write");
    let target = dir.path().join("from-damaged");
    let refused = pulsebase(&["restore", path(&bad), "--data", path(&target)], &[]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("damaged"), "{}", text(&refused));
    assert!(
        !target.join("db").exists(),
        "nothing restored from a damaged file"
    );

    let target = dir.path().join("good");
    let restored = pulsebase(&["restore", path(&file), "--data", path(&target)], &[]);
    assert!(restored.status.success(), "{}", text(&restored));
    let server = TestServer::start_in(
        &target,
        Options {
            admin: false,
            ..Options::default()
        },
    );
    let admin = server.admin_token().await;
    let (status, _) = send(
        client()
            .get(server.url("/api/collections/notes"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_backup_endpoint_is_for_admins_and_downloads_a_file() {
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let user = server.plain_user_token(&admin, "u@example.com").await;
    let (status, body) = send(client().get(server.url("/api/backup")).bearer_auth(&user)).await;
    assert_eq!((status, error_code(&body)), (403, "forbidden"));
    let (status, _) = send(client().get(server.url("/api/backup"))).await;
    assert_eq!(status, 401);

    let response = client()
        .get(server.url("/api/backup"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    let disposition = header(&response, "content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"pulsebase-"),
        "{disposition}"
    );
    let length: usize = header(&response, "content-length").parse().expect("number");
    let bytes = response.bytes().await.expect("body");
    assert_eq!(bytes.len(), length);
    assert!(bytes.starts_with(b"PULSEBASE-BACKUP"));
    // No scratch file is left in the data dir.
    let leftovers = backup_leftovers(&server.data);
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // The CLI refuses a wrong credential with the server's answer.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("x.pbbackup");
    let refused = pulsebase(
        &["backup", path(&file), "--url", &server.base],
        &[("PULSEBASE_TOKEN", &user)],
    );
    assert!(!refused.status.success());
    assert!(text(&refused).contains("403"), "{}", text(&refused));
    assert!(!file.exists() && !dir.path().join("x.pbbackup.partial").exists());
    let refused = pulsebase(&["backup", path(&file), "--url", &server.base], &[]);
    assert!(
        text(&refused).contains("PULSEBASE_TOKEN"),
        "{}",
        text(&refused)
    );
}
