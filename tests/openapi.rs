//! `GET /api/openapi.json`: a valid OpenAPI 3.1 document (checked by
//! `openapi-spec-validator` from PyPI, which `.ci/run` installs into the
//! virtualenv that `PULSEBASE_PYTHON` names), of every route the router
//! has, whose schemas the server's real answers match.
//!
//! axum cannot list its routes, so the routes are read from the source:
//! every `.route(PATH, METHODS)` in src/. A route the test cannot read
//! fails it, so a new way of adding routes cannot slip past.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "openapi/routes.rs"]
mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::mqtt::with_mqtt;
use common::{client, send, TestServer};
use routes::{routes_in_source, METHODS};
use serde_json::{json, Value};

/// Routes that are not API and stay out of the document: the admin UI's
/// redirects and files, and the catch-all that answers unknown `/api/`
/// paths with 404 in the error shape. (The `public` site's files are the
/// router's fallback, not routes.)
const NOT_DOCUMENTED: [&str; 5] = ["/", "/admin", "/admin/", "/admin/{path}", "/api/{rest}"];

fn python() -> String {
    std::env::var("PULSEBASE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether `openapi-spec-validator` is here; under CI it must be.
fn validator_available(test: &str) -> bool {
    let found = Command::new(python())
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: openapi-spec-validator must be installed under CI"
        );
        eprintln!("{test}: SKIPPED (needs openapi-spec-validator from PyPI)");
    }
    found
}

/// Runs tests/openapi/validate.py on `payload`; its complaints, if any.
fn validate(mode: &str, payload: &Value) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload.json");
    std::fs::write(&file, serde_json::to_vec(payload).unwrap()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openapi/validate.py");
    let output = Command::new(python())
        .arg(script)
        .arg(mode)
        .arg(&file)
        .output()
        .expect("run tests/openapi/validate.py");
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

async fn document(server: &TestServer) -> Value {
    let (status, document) = send(client().get(server.url("/api/openapi.json"))).await;
    assert_eq!(status, 200, "{document}");
    document
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_served_without_auth_with_cors() {
    let server = TestServer::start();
    let response = client()
        .get(server.url("/api/openapi.json"))
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        common::header(&response, "access-control-allow-origin"),
        "*",
        "CORS like the other /api routes"
    );
    assert!(common::header(&response, "content-type").starts_with("application/json"));
    let document: Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        document["openapi"]
    );
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["api_key"]["name"], "X-Api-Key");
    // Without MQTT there is no /mqtt, and the document says so.
    assert!(document["paths"].get("/mqtt").is_none());

    if !validator_available("the_document_is_valid_openapi_3_1") {
        return;
    }
    validate("spec", &document).unwrap_or_else(|problems| panic!("{problems}"));
}

/// The document's operations: path → methods.
fn documented(document: &Value) -> BTreeMap<String, BTreeSet<String>> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document_and_no_other() {
    let routes = routes_in_source();
    // The reading itself must work: these are in mod.rs and mqtt/.
    for known in [
        "/api/health",
        "/api/collections/{name}/records/{id}",
        "/mqtt",
    ] {
        assert!(routes.contains_key(known), "{known} not read: {routes:?}");
    }
    let server = TestServer::start_with(with_mqtt());
    let document = documented(&document(&server).await);

    let mut missing = Vec::new();
    for (route, methods) in &routes {
        if NOT_DOCUMENTED.contains(&route.as_str()) {
            continue;
        }
        let Some(have) = document.get(route) else {
            missing.push(format!("{route} (every method)"));
            continue;
        };
        for method in methods {
            assert_ne!(
                method, "any",
                "{route} takes every method: document it or exclude it"
            );
            if !have.contains(method) {
                missing.push(format!("{} {route}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes the document lacks: {missing:#?}"
    );
    let mut invented = Vec::new();
    for (path, methods) in &document {
        for method in methods {
            if !routes.get(path).is_some_and(|m| m.contains(method)) {
                invented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        invented.is_empty(),
        "operations the document has and the router does not: {invented:#?}"
    );
}

/// What a request to `path` with placeholder parameters answers, without
/// credentials: the router must route it (no `no such endpoint` 404 and no
/// 405), whatever the handler then says.
#[tokio::test]
async fn every_documented_operation_is_routed_by_the_running_server() {
    let server = TestServer::start_with(with_mqtt());
    let document = document(&server).await;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let mut url = path.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let name = parameter["name"].as_str().unwrap();
                let mut schema = &parameter["schema"];
                if let Some(name) = schema["$ref"].as_str().and_then(|r| r.rsplit('/').next()) {
                    schema = &document["components"]["schemas"][name];
                }
                let value = schema["enum"][0].as_str().unwrap_or("placeholder");
                url = url.replace(&format!("{{{name}}}"), value);
            }
            let request =
                client().request(method.to_uppercase().parse().unwrap(), server.url(&url));
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted = status == 405
                || (status == 404
                    && (!url.starts_with("/api/")
                        || body["error"]["message"] == "no such endpoint"));
            assert!(!unrouted, "{method} {url}: {status} {body}");
        }
    }
}

/// One answer to check: what was asked and what came back.
async fn answer(
    answers: &mut Vec<Value>,
    template: &str,
    request: reqwest::RequestBuilder,
) -> Value {
    let built = request.build().unwrap();
    let method = built.method().as_str().to_lowercase();
    let response = client().execute(built).await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    answers.push(json!({"method": method, "path": template, "status": status, "body": body}));
    body
}

#[tokio::test]
async fn real_answers_match_the_documented_schemas() {
    if !validator_available("real_answers_match_the_documented_schemas") {
        return;
    }
    let server = TestServer::start();
    let admin = server.admin_token().await;
    let document = document(&server).await;
    let http = client();
    let url = |path: &str| server.url(path);
    let mut a = Vec::new();

    answer(&mut a, "/api/health", http.get(url("/api/health"))).await;
    answer(&mut a, "/api/setup", http.get(url("/api/setup"))).await;
    let session = answer(
        &mut a,
        "/api/auth/signin",
        http.post(url("/api/auth/signin"))
            .json(&json!({"email": common::ADMIN_EMAIL, "password": common::ADMIN_PASSWORD})),
    )
    .await;
    let refresh = session["refresh_token"].as_str().unwrap();
    answer(
        &mut a,
        "/api/auth/refresh",
        http.post(url("/api/auth/refresh"))
            .json(&json!({"refresh_token": refresh})),
    )
    .await;
    answer(
        &mut a,
        "/api/auth/me",
        http.get(url("/api/auth/me")).bearer_auth(&admin),
    )
    .await;
    // Errors: a wrong password, an unknown user.
    answer(
        &mut a,
        "/api/auth/signin",
        http.post(url("/api/auth/signin"))
            .json(&json!({"email": common::ADMIN_EMAIL, "password": "wrong-password"})),
    )
    .await;
    answer(
        &mut a,
        "/api/users/{id}",
        http.get(url("/api/users/nobody")).bearer_auth(&admin),
    )
    .await;

    let user = answer(
        &mut a,
        "/api/users",
        http.post(url("/api/users")).bearer_auth(&admin).json(
            &json!({"email": "ann@example.com", "password": "ann-password", "tenant": "acme"}),
        ),
    )
    .await;
    let user_path = format!("/api/users/{}", user["id"].as_str().unwrap());
    answer(
        &mut a,
        "/api/users",
        http.get(url("/api/users")).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/users/{id}",
        http.get(url(&user_path)).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/users/{id}",
        http.patch(url(&user_path))
            .bearer_auth(&admin)
            .json(&json!({"name": "Ann"})),
    )
    .await;

    answer(
        &mut a,
        "/api/keys",
        http.post(url("/api/keys"))
            .bearer_auth(&admin)
            .json(&json!({"name": "gw-1", "roles": ["device"], "expires": "2999-01-01T00:00:00Z"})),
    )
    .await;
    answer(
        &mut a,
        "/api/keys",
        http.get(url("/api/keys")).bearer_auth(&admin),
    )
    .await;

    let notes = json!({"name": "notes", "fields": {"title": {"type": "string", "required": true},
        "n": {"type": "integer", "min": 0}}, "rules": {"list": "true", "view": "true",
        "create": "@user != null"}, "protected": ["n"], "indexes": ["title"],
        "retention": {"max_records": 100}});
    answer(
        &mut a,
        "/api/collections",
        http.post(url("/api/collections"))
            .bearer_auth(&admin)
            .json(&notes),
    )
    .await;
    let readings = json!({"name": "readings", "kind": "series", "series": "device", "time": "ts",
        "fields": {"device": {"type": "string", "required": true}, "temp": {"type": "number"},
        "ts": {"type": "datetime"}}, "retention": {"max_age": "7d", "max_bytes": "64MiB"}});
    answer(
        &mut a,
        "/api/collections",
        http.post(url("/api/collections"))
            .bearer_auth(&admin)
            .json(&readings),
    )
    .await;
    answer(
        &mut a,
        "/api/collections",
        http.get(url("/api/collections")).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/collections/{name}",
        http.patch(url("/api/collections/notes"))
            .bearer_auth(&admin)
            .json(&json!({"events": ["create"]})),
    )
    .await;
    // A definition with a problem.
    answer(
        &mut a,
        "/api/collections",
        http.post(url("/api/collections"))
            .bearer_auth(&admin)
            .json(&json!({"name": "bad", "fields": {"x": {"type": "string", "min": "a"}}})),
    )
    .await;

    let records = "/api/collections/{name}/records";
    let note = answer(
        &mut a,
        records,
        http.post(url("/api/collections/notes/records"))
            .bearer_auth(&admin)
            .json(&json!({"title": "one", "n": 1, "extra": [1, 2]})),
    )
    .await;
    answer(
        &mut a,
        records,
        http.post(url("/api/collections/notes/records"))
            .bearer_auth(&admin)
            .json(&json!([{"title": "two"}, {"title": "three"}])),
    )
    .await;
    answer(
        &mut a,
        records,
        http.get(url("/api/collections/notes/records?limit=2")),
    )
    .await;
    let note_path = format!(
        "/api/collections/notes/records/{}",
        note["id"].as_str().unwrap()
    );
    let record = "/api/collections/{name}/records/{id}";
    answer(&mut a, record, http.get(url(&note_path))).await;
    answer(
        &mut a,
        record,
        http.patch(url(&note_path))
            .bearer_auth(&admin)
            .json(&json!({"title": "uno"})),
    )
    .await;
    answer(
        &mut a,
        record,
        http.put(url(&note_path))
            .bearer_auth(&admin)
            .header("If-Match", "1")
            .json(&json!({"title": "stale"})),
    )
    .await;

    answer(
        &mut a,
        records,
        http.post(url("/api/collections/readings/records"))
            .bearer_auth(&admin)
            .json(
                &json!([{"device": "gw-1", "temp": 20.5, "ts": "2026-12-03T08:00:00Z"},
                          {"device": "gw-2", "temp": 19.0, "ts": "2026-12-03T08:00:30Z"}]),
            ),
    )
    .await;
    answer(
        &mut a,
        records,
        http.post(url("/api/collections/readings/records?return=items"))
            .bearer_auth(&admin)
            .json(&json!({"device": "gw-1", "temp": 21.0, "ts": "2026-12-03T08:01:00Z"})),
    )
    .await;
    answer(
        &mut a,
        records,
        http.get(url("/api/collections/readings/records"))
            .bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/collections/{name}/latest",
        http.get(url("/api/collections/readings/latest"))
            .bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/collections/{name}/aggregate",
        http.get(url("/api/collections/readings/aggregate?from=2026-12-03T08:00:00Z&to=2026-12-03T09:00:00Z&bucket=1m&agg=avg(temp),count()&group=device&fill=null"))
            .bearer_auth(&admin),
    )
    .await;

    answer(
        &mut a,
        "/api/topics",
        http.get(url("/api/topics")).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/topics",
        http.post(url("/api/topics"))
            .bearer_auth(&admin)
            .json(&json!({"name": "chat", "history": 5})),
    )
    .await;
    answer(
        &mut a,
        "/api/topics/{name}/messages",
        http.post(url("/api/topics/chat/messages"))
            .bearer_auth(&admin)
            .json(&json!({"data": {"text": "hi"}})),
    )
    .await;
    answer(
        &mut a,
        "/api/stats",
        http.get(url("/api/stats")).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/settings",
        http.get(url("/api/settings")).bearer_auth(&admin),
    )
    .await;
    answer(
        &mut a,
        "/api/settings",
        http.patch(url("/api/settings"))
            .bearer_auth(&admin)
            .json(&json!({"message_rate": 50})),
    )
    .await;

    // The exchange covered what it meant to: successes and errors.
    let statuses: BTreeSet<u64> = a.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    for status in [200, 201, 202, 400, 401, 404, 412] {
        assert!(
            statuses.contains(&status),
            "no {status} answer checked: {a:#?}"
        );
    }
    validate("answers", &json!({"document": document, "answers": a}))
        .unwrap_or_else(|problems| panic!("answers that do not match the document:\n{problems}"));
}
