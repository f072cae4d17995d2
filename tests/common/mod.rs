//! Starts the real `pulsebase` binary on 127.0.0.1:0 with a temporary data
//! dir and talks to it over HTTP.

#![allow(dead_code)]

pub mod live;
pub mod mqtt;
pub mod mqtt_session;
pub mod node;
pub mod smtp;
pub mod strace;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin-password";

pub struct Options {
    /// Create the admin above through the environment.
    pub admin: bool,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            admin: true,
            env: Vec::new(),
            args: Vec::new(),
        }
    }
}

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub data: PathBuf,
    /// Stdout lines printed up to and including the listening line.
    pub banner: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().to_owned();
        let mut server = TestServer::start_in(&data, options);
        server._dir = Some(dir);
        server
    }

    /// Starts on an existing data dir (for restarts); the caller keeps it.
    pub fn start_in(data: &Path, options: Options) -> TestServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pulsebase"));
        command
            .arg("serve")
            .arg("--http")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .args(&options.args)
            .env_remove("PULSEBASE_ADMIN_EMAIL")
            .env_remove("PULSEBASE_ADMIN_PASSWORD")
            .env("PULSEBASE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if options.admin {
            command
                .env("PULSEBASE_ADMIN_EMAIL", ADMIN_EMAIL)
                .env("PULSEBASE_ADMIN_PASSWORD", ADMIN_PASSWORD);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start pulsebase");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut banner = Vec::new();
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("pulsebase did not report its address within 30 s");
            banner.push(line.clone());
            if let Some(at) = line.find("listening on ") {
                break line[at + "listening on ".len()..].trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        TestServer {
            child: Some(child),
            base,
            data: data.to_owned(),
            banner,
            _dir: None,
        }
    }

    /// The MQTT port, when the server was started with `--mqtt`.
    pub fn mqtt_port(&self) -> u16 {
        self.banner
            .iter()
            .find_map(|line| line.strip_prefix("mqtt clients connect to "))
            .and_then(|addr| addr.trim().rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no MQTT listener in {:?}", self.banner))
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub async fn signin(&self, email: &str, password: &str) -> String {
        let response = client()
            .post(self.url("/api/auth/signin"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("signin request");
        assert_eq!(response.status(), 200, "signin as {email}");
        let body: Value = response.json().await.expect("signin body");
        body["token"].as_str().expect("token").to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.signin(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user as admin (`body` as for `POST /api/users`) and
    /// returns its JSON.
    pub async fn create_user(&self, admin: &str, body: Value) -> Value {
        let (status, user) = send(
            client()
                .post(self.url("/api/users"))
                .bearer_auth(admin)
                .json(&body),
        )
        .await;
        assert_eq!(status, 201, "create user: {user}");
        user
    }

    /// A new user with no roles, signed in: their access token.
    pub async fn plain_user_token(&self, admin: &str, email: &str) -> String {
        let password = "plain-user-password";
        self.create_user(admin, json!({"email": email, "password": password}))
            .await;
        self.signin(email, password).await
    }

    /// Creates a collection as admin and returns its JSON.
    pub async fn create_collection(&self, token: &str, definition: Value) -> Value {
        let (status, body) = send(
            client()
                .post(self.url("/api/collections"))
                .bearer_auth(token)
                .json(&definition),
        )
        .await;
        assert_eq!(status, 201, "create collection: {body}");
        body
    }

    /// Creates a record and returns it; anything but 201 fails the test.
    pub async fn create_record(&self, token: &str, collection: &str, body: Value) -> Value {
        let (status, record) = send(
            client()
                .post(self.url(&format!("/api/collections/{collection}/records")))
                .bearer_auth(token)
                .json(&body),
        )
        .await;
        assert_eq!(status, 201, "create in {collection}: {record}");
        record
    }

    /// Patches a record and returns it; anything but 200 fails the test.
    pub async fn patch_record(
        &self,
        token: &str,
        collection: &str,
        id: &str,
        body: Value,
    ) -> Value {
        let (status, record) = send(
            client()
                .patch(self.url(&format!("/api/collections/{collection}/records/{id}")))
                .bearer_auth(token)
                .json(&body),
        )
        .await;
        assert_eq!(status, 200, "patch {collection}/{id}: {record}");
        record
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Reads a raw HTTP answer until the server closes the connection: its
/// head (without the blank line) and its body.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server did not close the connection")
        .expect("read the answer");
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    (head, bytes[end + 4..].to_vec())
}

/// Sends a request and returns the status and the JSON body (`null` when
/// the body is empty).
pub async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request failed");
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, body)
}

/// Files in `dir` a backup left behind (its scratch copy is named
/// `.backup-*`).
pub fn backup_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list the data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("backup"))
        .collect()
}

/// A response header as text (the test fails when it is missing).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("an ASCII header")
        .to_owned()
}

/// Asserts the contract's error shape and returns the code.
pub fn error_code(body: &Value) -> &str {
    let error = &body["error"];
    assert!(error["message"].is_string(), "no error message in {body}");
    error["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

/// The ids of a list answer's items, in order.
pub fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("a list answer")
        .iter()
        .map(|r| r["id"].as_str().expect("an id").to_owned())
        .collect()
}
