//! Reads the router's routes from the source: axum cannot list them. Every
//! `.route(PATH, METHODS)` in src/ counts, its path a string literal or a
//! `const` of the crate; anything this cannot read fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Methods a route can name, as the OpenAPI document spells them.
pub const METHODS: [&str; 8] = [
    "get", "post", "put", "patch", "delete", "head", "options", "trace",
];

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a call's arguments: from just after `(` to its matching
/// `)`.
fn arguments(text: &str) -> &str {
    let mut depth = 1;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..at];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced call: {text}")
}

/// The value of `const NAME: &str = "...";` in any of `sources`.
fn constant(sources: &[(PathBuf, String)], name: &str) -> Option<String> {
    let needle = format!("const {name}: &str = \"");
    sources.iter().find_map(|(_, text)| {
        let start = text.find(&needle)? + needle.len();
        let end = text[start..].find('"')?;
        Some(text[start..start + end].to_owned())
    })
}

/// Every route in src/: its path in OpenAPI's syntax (`{*rest}` becomes
/// `{rest}`) and its methods (`any` for a route that takes every one).
pub fn routes_in_source() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let sources: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            // Whole-line comments may quote calls; they add no route.
            let code: Vec<&str> = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect();
            (path, code.join("\n"))
        })
        .collect();
    let mut routes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in &sources {
        for unreadable in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !text.contains(unreadable),
                "{}: routes added with `{unreadable}` are not read by this test; teach it",
                path.display()
            );
        }
        for (at, _) in text.match_indices(".route(") {
            let call = arguments(&text[at + ".route(".len()..]);
            let (first, methods) = call
                .split_once(',')
                .unwrap_or_else(|| panic!("{}: a route without methods: {call}", path.display()));
            let first = first.trim();
            let route = match first.strip_prefix('"') {
                Some(rest) => rest.trim_end_matches('"').to_owned(),
                None => {
                    let name = first.rsplit("::").next().unwrap();
                    constant(&sources, name).unwrap_or_else(|| {
                        panic!("{}: cannot read the route path {first}", path.display())
                    })
                }
            };
            let route = route.replace("{*", "{");
            let mut found = BTreeSet::new();
            for method in METHODS.iter().chain(&["any", "on"]) {
                let call = format!("{method}(");
                for (at, _) in methods.match_indices(&call) {
                    let before = methods[..at].chars().next_back();
                    if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                        let method = if *method == "on" { "any" } else { method };
                        found.insert(method.to_owned());
                    }
                }
            }
            assert!(
                !found.is_empty(),
                "{}: no method found for {route}: {methods}",
                path.display()
            );
            routes.entry(route).or_default().extend(found);
        }
    }
    routes
}
