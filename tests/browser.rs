//! The admin UI in a real headless Chromium (tests/browser/*.test.mjs,
//! driven over the DevTools protocol from Node) against the real binary.
//! Screenshots land in test-output/screenshots/ (ignored by git).
//!
//! Needs Chromium (`apt-get install chromium`; `.ci/run` installs it). On a
//! machine without it the test says so and passes, except under CI, where a
//! missing browser is a failure.

use std::path::Path;
use std::process::Command;

const BROWSERS: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];

#[test]
fn the_admin_ui_works_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").ok().or_else(|| {
        BROWSERS
            .iter()
            .find(|p| Path::new(p).exists())
            .map(|p| (*p).to_owned())
    });
    let Some(chromium) = chromium else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser tests: install Chromium (apt-get install chromium)"
        );
        eprintln!("SKIPPED: no Chromium found (apt-get install chromium, or set CHROMIUM)");
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let version = Command::new("node")
        .arg("--version")
        .output()
        .expect("Node.js is needed for the browser tests (`node` on PATH)");
    let major: u32 = String::from_utf8_lossy(&version.stdout)
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let mut node = Command::new("node");
    if major < 22 {
        node.arg("--experimental-websocket");
    }
    let output = node
        .args([
            "--test",
            "--test-reporter=spec",
            "tests/browser/admin.test.mjs",
        ])
        .current_dir(root)
        .env("PULSEBASE_BIN", env!("CARGO_BIN_EXE_pulsebase"))
        .env("CHROMIUM", &chromium)
        .env("TEST_OUTPUT", Path::new(root).join("test-output"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser tests failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(!stdout.contains("ℹ pass 0"), "no test ran:\n{stdout}");
}
