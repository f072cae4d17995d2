//! MQTT clients no one here wrote, driven from tests: `mosquitto_pub`
//! (Debian's `mosquitto-clients`) and Eclipse Paho for Python (`paho-mqtt`
//! 2.1.0, tests/mqtt/paho_client.py). `.ci/run` installs both; elsewhere a
//! test without them says SKIPPED, except under CI, where that fails.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::{json, Value};

use super::{client, send, Options, TestServer};

fn python() -> String {
    std::env::var("PULSEBASE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Whether both clients are here; under CI a missing one fails the test.
pub fn clients_available(test: &str) -> bool {
    let paho = Command::new(python())
        .args(["-c", "import paho.mqtt"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mosquitto = Command::new("mosquitto_pub").arg("--help").output().is_ok();
    if paho && mosquitto {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: mosquitto_pub ({mosquitto}) and paho-mqtt ({paho}) must be installed under CI"
    );
    eprintln!("{test}: SKIPPED (needs mosquitto-clients and paho-mqtt)");
    false
}

/// `mosquitto_pub` once: `version` is "mqttv311" or "mqttv5".
pub fn mosquitto_pub(
    port: u16,
    version: &str,
    password: &str,
    topic: &str,
    qos: u8,
    payload: &str,
) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
        .args(["-i", "mosquitto-test", "-u", "device", "-P", password])
        .args(["-t", topic, "-q", &qos.to_string(), "-m", payload])
        .stdin(Stdio::null())
        .output()
        .expect("run mosquitto_pub")
}

fn paho_command(plan: &Value) -> Command {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt/paho_client.py");
    let mut command = Command::new(python());
    command
        .arg(script)
        .arg(plan.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    command
}

/// Runs a Paho plan to its end; answers every line it printed.
pub fn paho(plan: &Value) -> Vec<Value> {
    let output = paho_command(plan).output().expect("run the paho client");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("paho said: {line}")))
        .collect()
}

/// Starts a Paho plan; its lines come as they are printed.
pub fn paho_spawn(plan: &Value) -> (Child, impl Iterator<Item = Value>) {
    let mut child = paho_command(plan).spawn().expect("start the paho client");
    let stdout = child.stdout.take().expect("paho stdout");
    let lines = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .map(|line| serde_json::from_str(&line).unwrap_or(Value::Null));
    (child, lines)
}

/// Starts a Paho plan that subscribes and waits for its SUBACK line:
/// the child, the SUBACK's reason codes, and the lines that follow.
pub async fn paho_subscribed(plan: &Value) -> (Child, Value, impl Iterator<Item = Value> + Send) {
    let (child, lines) = paho_spawn(plan);
    let (suback, lines) = blocking(move || {
        let mut lines = lines;
        let line = lines.find(|l| l.get("suback").is_some());
        (line.expect("a SUBACK"), lines)
    })
    .await;
    (child, suback["suback"].clone(), lines)
}

/// The PUBACK reason codes of a plan's publishes, in the plan's order
/// (`None`: not acknowledged).
pub fn acks(lines: &[Value]) -> Vec<Option<u64>> {
    let mut by_mid = std::collections::HashMap::new();
    for line in lines {
        if let (Some(mid), Some(rc)) = (line["mid"].as_u64(), line["rc"].as_u64()) {
            by_mid.insert(mid, rc);
        }
    }
    let mut sent: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|line| Some((line["sent"].as_u64()?, line["mid"].as_u64()?)))
        .collect();
    sent.sort_unstable();
    sent.into_iter()
        .map(|(_, mid)| by_mid.get(&mid).copied())
        .collect()
}

/// The value of the first line that has `key`.
pub fn first<'a>(lines: &'a [Value], key: &str) -> &'a Value {
    lines
        .iter()
        .find_map(|line| line.get(key))
        .unwrap_or_else(|| panic!("no {key} in {lines:?}"))
}

/// Server options with an MQTT listener on a free port.
pub fn with_mqtt() -> Options {
    Options {
        args: vec!["--mqtt".into(), "127.0.0.1:0".into()],
        ..Options::default()
    }
}

/// A series collection `climate` (device from the topic) and a records
/// collection `notes`, both writable by keys with the role `device`.
pub async fn collections(server: &TestServer, admin: &str) {
    server
        .create_collection(
            admin,
            json!({
                "name": "climate", "kind": "series", "series": "device",
                "fields": {
                    "device": {"type": "string", "required": true},
                    "temp": {"type": "number", "required": true}
                },
                "rules": {"create": "'device' in @user.roles"}
            }),
        )
        .await;
    server
        .create_collection(
            admin,
            json!({
                "name": "notes",
                "fields": {"text": {"type": "string", "required": true}},
                "rules": {"create": "'device' in @user.roles"}
            }),
        )
        .await;
}

/// An API key with `roles`: its secret.
pub async fn key(server: &TestServer, admin: &str, roles: &[&str]) -> String {
    let (status, key) = send(
        client()
            .post(server.url("/api/keys"))
            .bearer_auth(admin)
            .json(&json!({"name": "gateway", "roles": roles})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    key["secret"].as_str().expect("a key secret").to_owned()
}

pub async fn items(server: &TestServer, admin: &str, collection: &str) -> Vec<Value> {
    let (status, page) = send(
        client()
            .get(server.url(&format!("/api/collections/{collection}/records?limit=1000")))
            .bearer_auth(admin),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().expect("a list answer").clone()
}

/// Runs blocking client work off the test's runtime.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("client work panicked")
}

/// A running `mosquitto_sub -d`: its stdout lines as they come.
pub struct Sub {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Messages printed before the line waited for (a resumed session's
    /// may come before the SUBACK).
    early: std::collections::VecDeque<String>,
}

impl Sub {
    /// Subscribes to `filters` (`version` "mqttv311" or "mqttv5") with
    /// the extra arguments; answers once the SUBACK came, with its codes.
    pub fn start(
        port: u16,
        version: &str,
        password: &str,
        filters: &[&str],
        extra: &[&str],
    ) -> (Sub, Vec<u64>) {
        // Line-buffered: a pipe would otherwise hold its output until exit.
        let mut command = Command::new("stdbuf");
        command
            .args(["-oL", "mosquitto_sub"])
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version])
            .args(["-u", "device", "-P", password, "-d", "-W", "30"])
            .args(["-F", "MSG %q %t %p"])
            .args(extra);
        for filter in filters {
            command.args(["-t", filter]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mosquitto_sub");
        let stdout = child.stdout.take().expect("mosquitto_sub stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sub = Sub {
            child,
            lines,
            early: Default::default(),
        };
        let line = sub
            .next_line(|l| l.starts_with("Subscribed (mid:"))
            .unwrap_or_else(|| panic!("no SUBACK for {filters:?}"));
        // "Subscribed (mid: 1): 1, 128"
        let codes = line
            .rsplit("):")
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|c| c.trim().parse().expect("a SUBACK code"))
            .collect();
        (sub, codes)
    }

    fn next_line(&mut self, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if wanted(&line) {
                return Some(line);
            }
            if line.starts_with("MSG ") {
                self.early.push_back(line);
            }
        }
    }

    /// The next message: (QoS, topic name, payload), or `None` if none
    /// comes within `wait`.
    pub fn message(&mut self, wait: std::time::Duration) -> Option<(u8, String, Value)> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let line = match self.early.pop_front() {
                Some(line) => line,
                None => {
                    let left = deadline.checked_duration_since(std::time::Instant::now())?;
                    self.lines.recv_timeout(left).ok()?
                }
            };
            let Some(rest) = line.strip_prefix("MSG ") else {
                continue;
            };
            let mut parts = rest.splitn(3, ' ');
            let qos = parts.next()?.parse().ok()?;
            let topic = parts.next()?.to_owned();
            let payload = serde_json::from_str(parts.next()?).expect("a JSON payload");
            return Some((qos, topic, payload));
        }
    }

    /// The reason code of the DISCONNECT the server sent (5.0), if one
    /// comes within 20 s.
    pub fn disconnect_reason(&mut self) -> Option<u64> {
        let line = self.next_line(|l| l.starts_with("Received DISCONNECT ("))?;
        line.trim_start_matches("Received DISCONNECT (")
            .trim_end_matches(')')
            .parse()
            .ok()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a custom topic as `token`.
pub async fn topic(server: &TestServer, token: &str, body: Value) {
    let (status, answer) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
}

/// Publishes `data` on a custom topic over REST.
pub async fn message(server: &TestServer, token: &str, topic: &str, data: Value) {
    let (status, answer) = send(
        client()
            .post(server.url(&format!("/api/topics/{topic}/messages")))
            .bearer_auth(token)
            .json(&json!({ "data": data })),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
}
