//! A full disk, for real: the data dir sits on a small tmpfs that a filler
//! file fills up. Needs root (mount); under CI a failed mount fails the test,
//! elsewhere it says SKIPPED.
//!
//! What it pins down: a backup or a write on a full disk answers 503 in the
//! contract's shape and leaves nothing behind; /api/health turns 503, since
//! sled refuses writes after an I/O error until the process restarts; after
//! freeing space and restarting, every acknowledged write is there.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{client, error_code, send, Options, TestServer};
use serde_json::json;

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

/// Writes zeros to `path` until the disk refuses more.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial chunk may still fit in smaller pieces.
    while file.write_all(&chunk[..512]).is_ok() {}
}

#[tokio::test]
async fn a_full_disk_refuses_backups_and_writes_with_503_and_loses_nothing() {
    let Some(disk) = Tmpfs::mount(24) else {
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
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(&batch),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let filler = disk.mount.join("filler");
    fill(&filler);
    let (status, body) = send(client().get(server.url("/api/backup")).bearer_auth(&admin)).await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("backup"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A write cannot be made durable: 503, and health says why.
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(&json!({"device": "during", "n": -1})),
    )
    .await;
    assert_eq!((status, error_code(&body)), (503, "unavailable"), "{body}");
    let (status, health) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (503, Some("storage_failed")),
        "{health}"
    );
    // Reads go on while the disk is full.
    let (status, page) = send(
        client()
            .get(server.url("/api/collections/readings/records?limit=1000&fields=id"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200);
    assert!(page["items"].as_array().expect("items").len() >= 500);

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
    let (status, body) = send(
        client()
            .post(server.url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(&json!({"device": "after", "n": 500})),
    )
    .await;
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
    // The 500 acknowledged, the one after; the write refused during the
    // full disk may or may not have been made (503 says so).
    let count = stats["records"]["readings"].as_u64().expect("count");
    assert!(count == 501 || count == 502, "{stats}");
}
