//! A full disk, for real: the data dir sits on a small tmpfs that a filler
//! file fills up. Needs root (mount); under CI a failed mount fails the test,
//! elsewhere it says SKIPPED.
//!
//! What it pins down: a backup stops short of filling the disk (503, and the
//! server keeps writing); a write on a full disk answers 503 in the
//! contract's shape; after that sled refuses writes (and reads that need
//! the disk) until the process restarts, so they answer 503 and
//! /api/health turns 503; after
//! freeing space and restarting, every acknowledged write is there.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{backup_leftovers, client, error_code, send, Options, TestServer};
use serde_json::{json, Value};

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted on drop.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("dir");
        let mount = dir.path().join("fs");
        std::fs::create_dir(&mount).expect("mkdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { mount, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Appends zeros to `path` until only `leave` bytes are free (0: until the
/// disk refuses more).
fn fill(path: &Path, leave: u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    let dir = path.parent().expect("dir");
    while fs_free(dir) > leave + chunk.len() as u64 && file.write_all(&chunk).is_ok() {}
    if leave == 0 {
        // The last partial chunk may still fit in smaller pieces.
        while file.write_all(&chunk[..512]).is_ok() {}
    }
}

fn fs_free(dir: &Path) -> u64 {
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

async fn post_readings(server: &TestServer, admin: &str, body: &Value) -> (u16, Value) {
    send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(admin)
            .json(body),
    )
    .await
}

#[tokio::test]
async fn a_full_disk_refuses_backups_and_writes_with_503_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount(160) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the full-disk test: it needs root to mount a tmpfs"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs (needs root)");
        return;
    };
    let data = disk.mount.join("data");
    let mut server = TestServer::start_in(&data, Options::default());
    let admin = server.admin_token().await;
    server
        .create_collection(&admin, json!({"name": "readings"}))
        .await;
    let batch: Vec<_> = (0..500)
        .map(|n| json!({"device": format!("dev-{}", n % 7), "n": n}))
        .collect();
    let (status, body) = post_readings(&server, &admin, &json!(batch)).await;
    assert_eq!(status, 201, "{body}");

    // 32 MiB free: less than a backup leaves for the database. It is
    // refused before it starts, and the server goes on writing.
    let filler = disk.mount.join("filler");
    fill(&filler, 32 << 20);
    let (status, body) = send(client().get(server.url("/api/backup")).bearer_auth(&admin)).await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("MiB free"),
        "{body}"
    );
    let (status, _) = post_readings(&server, &admin, &json!({"device": "low", "n": 500})).await;
    assert_eq!(status, 201, "a refused backup leaves the database writable");
    let (status, _) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(status, 200);

    // Now truly full.
    fill(&filler, 0);
    let (status, body) = send(client().get(server.url("/api/backup")).bearer_auth(&admin)).await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    let leftovers = backup_leftovers(&data);
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // sled may still have room inside its own files; batches soon need
    // more. The first write that cannot be made durable answers 503, and
    // health says why.
    let mut acknowledged = 501;
    let refused_batch = 2000;
    let mut refused = None;
    for round in 0..100 {
        let batch: Vec<_> = (0..refused_batch)
            .map(|n| json!({"device": "during", "n": round * 10_000 + n, "pad": "x".repeat(200)}))
            .collect();
        let (status, body) = post_readings(&server, &admin, &json!(batch)).await;
        if status == 201 {
            acknowledged += refused_batch;
            continue;
        }
        refused = Some((status, body));
        break;
    }
    let (status, body) = refused.expect("a full disk refuses writes at last");
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    let (status, health) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("storage_failed")),
        "{health}"
    );
    // Reads may still be served from sled's cache; one that needs the
    // disk is refused like a write: 503 in the contract's shape, never a
    // 500.
    let (status, body) = send(
        client()
            .get(server.url("/api/collections/readings/records?limit=1000&fields=id"))
            .bearer_auth(&admin),
    )
    .await;
    if status != 200 {
        assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    }

    // Free space and restart (what the systemd unit's Restart= or an
    // operator does): writes and backups work, and nothing acknowledged
    // was lost.
    std::fs::remove_file(&filler).expect("remove filler");
    assert!(server.terminate(), "a clean stop even after the failure");
    let server = TestServer::start_in(
        &data,
        Options {
            admin: false,
            ..Options::default()
        },
    );
    let (status, health) = send(client().get(server.url("/api/health"))).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, body) =
        post_readings(&server, &admin, &json!({"device": "after", "n": 500})).await;
    assert_eq!(status, 201, "{body}");
    let response = client()
        .get(server.url("/api/backup"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("backup");
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.expect("body");
    let outside = tempfile::tempdir().expect("dir");
    let file = outside.path().join("after.pbbackup");
    std::fs::write(&file, &bytes).expect("write");
    let restored_dir = outside.path().join("restored");
    let restore = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .arg("restore")
        .arg(&file)
        .arg("--data")
        .arg(&restored_dir)
        .output()
        .expect("restore");
    assert!(restore.status.success(), "{restore:?}");
    let restored = TestServer::start_in(
        &restored_dir,
        Options {
            admin: false,
            ..Options::default()
        },
    );
    let (_, stats) = send(client().get(restored.url("/api/stats")).bearer_auth(&admin)).await;
    // Every acknowledged write and the one after the restart; the batch
    // refused on the full disk may or may not have been made (its 503 says
    // so), but all or nothing.
    let count = stats["records"]["readings"].as_u64().expect("count");
    let expected = acknowledged as u64 + 1;
    assert!(
        count == expected || count == expected + refused_batch as u64,
        "{count} records, {expected} acknowledged: {stats}"
    );
}
