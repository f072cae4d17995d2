//! Packaging (issue 6): the example `pulsebase.toml`, the environment file,
//! the systemd unit, the container's health check and the .deb metadata are
//! checked against the real binary, systemd's own tools and
//! docs/configuration.md, so they cannot drift apart unnoticed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{client, send, Options, TestServer};

const EXAMPLE: &str = "data/pulsebase.example.toml";
const UNIT: &str = "packaging/pulsebase.service";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// A `#key = value` line of the example (prose comments start with `# `):
/// the key and the value as TOML text.
fn setting_line(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.strip_prefix('#')?.split_once('=')?;
    let key = key.trim_end();
    let is_key = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    is_key.then(|| (key, value.trim()))
}

/// The example's settings, in file order.
fn example_settings() -> Vec<(String, String)> {
    read(EXAMPLE)
        .lines()
        .filter_map(setting_line)
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The example with every setting line uncommented.
fn example_uncommented() -> String {
    read(EXAMPLE)
        .lines()
        .map(|line| match setting_line(line) {
            Some(_) => &line[1..],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// docs/configuration.md's settings table: toml key → default column, for
/// the rows that have a toml key.
fn documented_settings() -> BTreeMap<String, String> {
    let text = read("docs/configuration.md");
    let mut rows = text
        .lines()
        .skip_while(|line| !line.starts_with("| setting |"))
        .take_while(|line| line.starts_with('|'));
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let header = cells(
        rows.next()
            .expect("docs/configuration.md has no settings table"),
    );
    let column = |name: &str| {
        header
            .iter()
            .position(|cell| cell == name)
            .unwrap_or_else(|| panic!("the settings table has no `{name}` column: {header:?}"))
    };
    let (key_at, default_at) = (column("toml key"), column("default"));
    rows.skip(1) // the |---| line
        .map(cells)
        .filter(|row| row[key_at] != "(n/a)")
        .map(|row| {
            (
                row[key_at].trim_matches('`').to_owned(),
                row[default_at].clone(),
            )
        })
        .collect()
}

/// A default written as one code span (`100`, `@user != null`), unquoted;
/// `None` for prose such as "unset".
fn literal_default(cell: &str) -> Option<&str> {
    let inner = cell.strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// A TOML value as the docs table writes it.
fn as_documented(value: &toml::Value) -> String {
    match value {
        toml::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The example, every line uncommented, is a pulsebase.toml the real server
/// starts with; each setting takes effect from the file, at its default.
#[tokio::test]
async fn example_config_with_every_setting_uncommented_starts_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let uncommented = example_uncommented();
    std::fs::write(data.join("pulsebase.toml"), &uncommented).unwrap();
    let table: toml::Table = toml::from_str(&uncommented).expect("the uncommented example is TOML");
    let keys: Vec<String> = example_settings().into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        table.len(),
        keys.len(),
        "every setting line became a key: {keys:?}"
    );

    // `start_in` passes `--http 127.0.0.1:0`: a flag wins over the file's
    // `http`. If the server refuses a key it exits, and the error it printed
    // on stderr names the key (e.g. `metrics_token` before the binary knew it).
    let mut server = TestServer::start_in(&data, Options::default());
    let (status, health) = send(client().get(server.url("/api/health"))).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"), "{health}");

    let admin = server.admin_token().await;
    let (status, settings) = send(
        client()
            .get(server.url("/api/settings"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    let documented = documented_settings();
    for key in &keys {
        // Settings without a literal default (a secret such as the metrics
        // token) carry a placeholder in the example: acceptance is the check.
        if key == "http"
            || documented
                .get(key)
                .and_then(|d| literal_default(d))
                .is_none()
        {
            continue;
        }
        let shown = &settings[key.as_str()];
        let written = serde_json::to_value(&table[key.as_str()]).unwrap();
        assert_eq!(shown["value"], written, "{key}: the server shows {shown}");
        if shown["runtime"] == true {
            assert_eq!(
                shown["source"], "file",
                "{key} was not read from the file: {shown}"
            );
            assert_eq!(
                shown["default"], written,
                "{key}: the example's value is not the server's default"
            );
        }
    }
    assert!(
        server.terminate(),
        "the server did not exit cleanly on SIGTERM"
    );
}

/// The example holds exactly the toml keys of docs/configuration.md's table,
/// with the defaults the table gives.
#[test]
fn example_config_and_configuration_doc_have_the_same_keys_and_defaults() {
    let example: BTreeMap<String, String> = example_settings().into_iter().collect();
    let documented = documented_settings();
    assert!(
        documented.len() >= 10,
        "the settings table was not parsed: {documented:?}"
    );
    let missing: Vec<_> = documented
        .keys()
        .filter(|k| !example.contains_key(*k))
        .collect();
    let extra: Vec<_> = example
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not in {EXAMPLE}: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "in {EXAMPLE} but not in docs/configuration.md: {extra:?}"
    );
    assert_eq!(
        example_settings().len(),
        example.len(),
        "a key appears twice in {EXAMPLE}"
    );
    for (key, cell) in &documented {
        let Some(default) = literal_default(cell) else {
            continue;
        };
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {}", example[key]))
            .unwrap_or_else(|e| panic!("{key} in {EXAMPLE}: {e}"))
            .remove("v")
            .unwrap();
        assert_eq!(
            as_documented(&value),
            default,
            "{key}: {EXAMPLE} and docs/configuration.md give different defaults"
        );
    }
}

/// Every variable in the environment file is one the binary reads: a flag's
/// variable (from `pulsebase serve --help`) or one documented for start-up
/// and logging.
#[test]
fn environment_file_names_only_real_variables() {
    let env_file = read("packaging/pulsebase.env");
    let variables: BTreeSet<&str> = env_file
        .lines()
        .map(|line| line.trim_start_matches('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name))
        .filter(|name| {
            name.starts_with("PULSEBASE_")
                && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    assert!(variables.contains("PULSEBASE_HTTP"), "{variables:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_pulsebase"))
        .args(["serve", "--help"])
        .output()
        .expect("run pulsebase serve --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let docs = read("docs/configuration.md");
    for name in variables {
        // `[env: NAME=]` in clap's help; the others are read directly and
        // documented in prose.
        let by_flag = help.contains(&format!("[env: {name}="));
        let documented = docs.contains(&format!("`{name}`"));
        assert!(
            by_flag || documented,
            "packaging/pulsebase.env names {name}, which neither `pulsebase serve --help` nor docs/configuration.md knows"
        );
    }
}

fn unit_value<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The unit runs the binary on the data dir systemd creates for it, as the
/// user the .deb creates.
#[test]
fn systemd_unit_matches_the_deb_and_the_data_dir() {
    let unit = read(UNIT);
    assert_eq!(
        unit_value(&unit, "ExecStart"),
        ["/usr/bin/pulsebase serve --data /var/lib/pulsebase"]
    );
    assert_eq!(unit_value(&unit, "StateDirectory"), ["pulsebase"]);
    assert_eq!(
        unit_value(&unit, "EnvironmentFile"),
        ["-/etc/pulsebase/pulsebase.env"]
    );
    let user = unit_value(&unit, "User");
    assert_eq!(user, ["pulsebase"]);
    let postinst = read("packaging/debian/postinst");
    assert!(
        postinst.contains("adduser --system") && postinst.contains(" pulsebase\n"),
        "packaging/debian/postinst does not create the unit's user {user:?}"
    );
    // cargo-deb replaces every #DEBHELPER#, comments included: a second one
    // would start the service before the user exists.
    assert_eq!(
        postinst.matches("#DEBHELPER#").count(),
        1,
        "packaging/debian/postinst needs #DEBHELPER# exactly once, after adduser"
    );
    assert!(postinst.find("adduser") < postinst.find("#DEBHELPER#"));

    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let assets = deb["assets"].as_array().expect("deb assets");
    let destinations: Vec<&str> = assets.iter().map(|a| a[1].as_str().unwrap()).collect();
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        if !source.starts_with("target/") {
            assert!(repo(source).exists(), "deb asset {source} does not exist");
        }
    }
    for conffile in deb["conf-files"].as_array().expect("deb conf-files") {
        let path = conffile.as_str().unwrap().trim_start_matches('/');
        assert!(
            destinations.contains(&path),
            "conffile {path} is not installed by any asset: {destinations:?}"
        );
    }
    let env_file = unit_value(&unit, "EnvironmentFile")[0].trim_start_matches("-/");
    assert!(
        destinations.contains(&env_file),
        "the .deb does not install {env_file}"
    );
}

/// `systemd-analyze verify` accepts the unit without a single warning (it
/// only warns about unknown keys and bad values, so any output fails), and
/// `systemd-analyze security` rates its sandbox at most 2.0 ("OK"). The
/// copy points ExecStart at the built binary: verify checks that it exists.
#[test]
fn systemd_unit_passes_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must check the unit: install systemd-analyze (apt-get install systemd)"
        );
        eprintln!("SKIPPED: systemd-analyze not found (apt-get install systemd)");
        return;
    }
    let unit = read(UNIT);
    let exec = "ExecStart=/usr/bin/pulsebase ";
    assert_eq!(unit.matches(exec).count(), 1, "one ExecStart in {UNIT}");
    let local = unit.replace(
        exec,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_pulsebase")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pulsebase.service");
    std::fs::write(&path, local).unwrap();

    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && said.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{said}",
        verify.status
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--no-pager", "--offline=yes"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&security.stdout);
    let Some(level) = report
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for pulsebase.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
    else {
        // systemd before 250 has no --offline; verify above still ran.
        eprintln!(
            "SKIPPED: no offline security report ({}): {}",
            security.status,
            String::from_utf8_lossy(&security.stderr)
        );
        return;
    };
    assert!(level <= 2.0, "exposure level {level} > 2.0:\n{report}");
}

/// The container's HEALTHCHECK command, run as Docker would run it (bash
/// from the image's PATH), reports a running server healthy and a wrong port
/// unhealthy.
#[test]
fn dockerfile_health_check_probes_the_health_endpoint() {
    let dockerfile = read("packaging/Dockerfile").replace("\\\n", " ");
    let line = dockerfile
        .lines()
        .find(|line| line.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK in the Dockerfile");
    let json = &line[line.find("CMD [").expect("HEALTHCHECK ... CMD [json]") + 4..];
    let command: Vec<String> = serde_json::from_str(json).expect("the CMD is a JSON array");
    let server = TestServer::start();
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let probe = |http: &str| {
        Command::new(&command[0])
            .args(&command[1..])
            .env("PULSEBASE_HTTP", http)
            .output()
            .expect("run the health check")
            .status
    };
    let healthy = probe(&format!("0.0.0.0:{port}"));
    assert!(healthy.success(), "health check failed: {healthy}");
    drop(server);
    let gone = probe(&format!("0.0.0.0:{port}"));
    assert!(!gone.success(), "health check passed with no server");
}

/// The Docker build context (an allow-list in Dockerfile.dockerignore)
/// holds every manifest, build script, lock file and embedded file that
/// `cargo build --release --locked` reads.
///
/// Nothing here depends on what the cargo cache holds: a full `cargo
/// metadata` must see every package of the lock file, for every platform,
/// and offline it failed on machines whose cache lacks the Windows-only
/// crates (`failed to download anstyle-wincon`). Loading the workspace
/// alone (`--no-deps`) reads only our manifests; the lock file is checked by
/// being the repository's own, byte for byte: the manifests are verbatim
/// copies too, and the repository is built and tested with `--locked`, which
/// fails when its lock file does not fit its manifests.
#[test]
fn docker_build_context_holds_what_the_build_reads() {
    let ignore = read("packaging/Dockerfile.dockerignore");
    let mut patterns = ignore
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    assert_eq!(
        patterns.next(),
        Some("*"),
        "the ignore file is an allow-list"
    );
    let allowed: Vec<&str> = patterns
        .map(|p| {
            p.strip_prefix('!')
                .unwrap_or_else(|| panic!("only !exceptions after `*`: {p}"))
        })
        .collect();
    let in_context = |path: &str| {
        allowed
            .iter()
            .any(|a| path == *a || path.starts_with(&format!("{a}/")))
    };

    // What src/ embeds: include_str!/include_bytes! paths and rust-embed
    // folders, relative to the repository root.
    let mut embedded = vec!["build.rs".to_owned(), "Cargo.lock".to_owned()];
    let mut stack = vec![repo("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (marker, relative_to_file) in [
                ("include_str!(\"", true),
                ("include_bytes!(\"", true),
                ("#[folder = \"", false),
            ] {
                for piece in text.split(marker).skip(1) {
                    let target = piece.split('"').next().unwrap();
                    let full = if relative_to_file {
                        path.parent().unwrap().join(target)
                    } else {
                        repo(target)
                    };
                    let full = full.canonicalize().unwrap_or(full);
                    let root = repo("").canonicalize().unwrap();
                    if let Ok(relative) = full.strip_prefix(&root) {
                        embedded.push(relative.to_string_lossy().into_owned());
                    }
                }
            }
        }
    }
    assert!(
        embedded.iter().any(|p| p.starts_with("web")),
        "{embedded:?}"
    );
    // Cargo reads these when present; none is today.
    for config in [
        ".cargo/config.toml",
        ".cargo/config",
        "rust-toolchain.toml",
        "rust-toolchain",
    ] {
        if repo(config).exists() {
            embedded.push(config.to_owned());
        }
    }
    for path in &embedded {
        assert!(
            in_context(path),
            "{path} is read by the build but not in the Docker context"
        );
    }

    let context = tempfile::tempdir().unwrap();
    for entry in &allowed {
        copy_tree(&repo(entry), &context.path().join(entry));
    }
    // The workspace loads from the context, with the same packages and the
    // same lib, bin and build-script targets as in the repository (a
    // missing build.rs would otherwise go unnoticed: cargo only looks for
    // one). Tests and benches are not built in the image.
    let repository = built_targets(&repo(""));
    let copied = built_targets(context.path());
    assert_eq!(
        copied, repository,
        "the Docker context's workspace differs from the repository's"
    );
    assert!(
        repository.contains(&("pulsebase".into(), "custom-build".into(), "build.rs".into())),
        "{repository:?}"
    );

    // The lock file the build runs --locked with is the repository's, and
    // it pins exactly the workspace's own packages.
    let lock = std::fs::read(context.path().join("Cargo.lock"))
        .expect("Cargo.lock is in the Docker context");
    assert!(
        lock == std::fs::read(repo("Cargo.lock")).unwrap(),
        "the Docker context's Cargo.lock differs from the repository's"
    );
    let lock: toml::Value = toml::from_str(std::str::from_utf8(&lock).unwrap()).unwrap();
    let locked_members: BTreeSet<(String, String)> = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|package| package.get("source").is_none())
        .map(|package| {
            (
                package["name"].as_str().unwrap().to_owned(),
                package["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(locked_members, workspace_packages(context.path()));
}

/// `cargo metadata --no-deps` of the workspace at `root`: reads only the
/// workspace's manifests, never the registry or the cargo cache.
fn workspace_metadata(root: &Path) -> serde_json::Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "the workspace in {} does not load: {}",
        root.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn workspace_packages(root: &Path) -> BTreeSet<(String, String)> {
    workspace_metadata(root)["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |name: &str| p[name].as_str().unwrap().to_owned();
            (field("name"), field("version"))
        })
        .collect()
}

/// (package, kind, source path relative to `root`) of every target a
/// release build of the binary can compile.
fn built_targets(root: &Path) -> BTreeSet<(String, String, String)> {
    let root = root.canonicalize().unwrap();
    let mut targets = BTreeSet::new();
    for package in workspace_metadata(&root)["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        for target in package["targets"].as_array().unwrap() {
            for kind in target["kind"].as_array().unwrap() {
                let kind = kind.as_str().unwrap();
                if !["lib", "bin", "custom-build", "proc-macro"].contains(&kind) {
                    continue;
                }
                let path = Path::new(target["src_path"].as_str().unwrap());
                let relative = path
                    .strip_prefix(&root)
                    .unwrap_or_else(|_| panic!("{} is outside the workspace", path.display()));
                targets.insert((
                    name.to_owned(),
                    kind.to_owned(),
                    relative.to_string_lossy().into_owned(),
                ));
            }
        }
    }
    targets
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}
