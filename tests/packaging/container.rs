//! The container image: its health check and the build context it is built
//! from.

use super::*;

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
