//! Runs the README's curl walkthrough verbatim against the real binary (only
//! the port differs), so the quick start cannot rot.

// A failed unwrap in a test helper is a test failure with a backtrace, which
// is what we want here.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{Options, TestServer};
use serde_json::Value;

fn walkthrough_script() -> String {
    let readme = include_str!("../README.md");
    let section = readme
        .split("<!-- walkthrough:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .expect("README has walkthrough markers");
    let mut script = String::from("set -euo pipefail\n");
    let mut in_block = false;
    for line in section.lines() {
        match (in_block, line.trim()) {
            (false, "```sh") => in_block = true,
            (true, "```") => {
                in_block = false;
                script.push_str("echo\n");
            }
            (true, _) => {
                script.push_str(line);
                script.push('\n');
            }
            _ => {}
        }
    }
    script
}

#[test]
fn readme_walkthrough_works_as_written() {
    let server = TestServer::start_with(Options {
        admin: false,
        env: vec![
            ("PULSEBASE_ADMIN_EMAIL".into(), "admin@example.com".into()),
            ("PULSEBASE_ADMIN_PASSWORD".into(), "change-me-please".into()),
        ],
        ..Options::default()
    });
    let script = walkthrough_script().replace("http://127.0.0.1:7070", &server.base);
    assert!(
        script.contains("curl"),
        "no commands found in the walkthrough"
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "walkthrough failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!stdout.contains("\"error\""), "an error in:\n{stdout}");
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    let page: Value = serde_json::from_str(last).expect("the last answer is JSON");
    let items = page["items"].as_array().expect("a list answer");
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["device"], "gw-7");
    assert_eq!(items[0]["temp"], 31.5);
}
