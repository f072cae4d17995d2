//! The admin UI in a real headless Chromium (tests/browser/*.test.mjs,
//! driven over the DevTools protocol from Node) against the real binary.
//! Screenshots land in test-output/screenshots/ (ignored by git).
//!
//! Needs Chromium (`apt-get install chromium`; `.ci/run` installs it). On a
//! machine without it the test says so and passes, except under CI, where a
//! missing browser is a failure.

mod common;

use std::path::Path;

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
    let output = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-output");
    let output = output.to_string_lossy();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(root.join("tests/browser"))
        .expect("list tests/browser")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("tests/browser/{name}"))
        .collect();
    files.sort();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    common::node::run_node_tests(&files, &[("CHROMIUM", &chromium), ("TEST_OUTPUT", &output)]);
}
