//! MQTT sessions for the WebSocket transport and Will tests: a Paho
//! session ended in a chosen way (tests/mqtt/paho_session.py), raw MQTT
//! bytes over TCP or over `/mqtt`, and a realtime subscriber to a custom
//! topic that sees what a Will publishes.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::live::Ws;
use super::{client, send, TestServer};

/// Runs a Paho session plan to its end; answers every line it printed.
pub fn paho_session(plan: &Value) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mqtt/paho_session.py");
    let python = std::env::var("PULSEBASE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = Command::new(python)
        .arg(script)
        .arg(plan.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the paho client");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("paho said: {line}")))
        .collect()
}

/// A 3.1.1 CONNECT as bytes: a password, and a Will (topic, payload) if
/// given, at QoS 0.
pub fn connect_v311(
    client_id: &str,
    keep_alive: u16,
    password: &str,
    will: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut flags = 0xC2; // user name, password, clean session
    if will.is_some() {
        flags |= 0x04;
    }
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, flags];
    body.extend(keep_alive.to_be_bytes());
    let mut field = |bytes: &[u8]| {
        body.extend((bytes.len() as u16).to_be_bytes());
        body.extend(bytes);
    };
    field(client_id.as_bytes());
    if let Some((topic, payload)) = will {
        field(topic.as_bytes());
        field(payload);
    }
    field(b"device");
    field(password.as_bytes());
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend(body);
    packet
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
/// A 3.1.1 CONNACK, accepted.
pub const CONNACK_OK: [u8; 4] = [0x20, 0x02, 0x00, 0x00];

/// An MQTT client over `/mqtt` speaking raw bytes.
pub struct MqttWs {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The subprotocol the server chose.
    pub protocol: Option<String>,
}

impl MqttWs {
    pub async fn connect(server: &TestServer, protocol: &str) -> MqttWs {
        let url = server.base.replacen("http://", "ws://", 1) + "/mqtt";
        let mut request = url.into_client_request().expect("a request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocol.parse().expect("a header value"),
        );
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connect to /mqtt");
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        MqttWs { stream, protocol }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("websocket send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::text(text))
            .await
            .expect("websocket send");
    }

    /// Reads binary messages until `len` bytes came (they may come in
    /// any number of messages); `None` if the connection ends first.
    pub async fn read(&mut self, len: usize) -> Option<Vec<u8>> {
        let mut got = Vec::new();
        while got.len() < len {
            let message = tokio::time::timeout(Duration::from_secs(10), self.stream.next())
                .await
                .expect("nothing from the server within 10 s");
            match message {
                Some(Ok(Message::Binary(bytes))) => got.extend_from_slice(&bytes),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
        Some(got)
    }

    /// Whether the server ends the connection within 10 s.
    pub async fn closed(&mut self) -> bool {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Err(_) => return false,
                Ok(Some(Ok(Message::Close(_))) | Some(Err(_)) | None) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Creates the custom topic `name`, open to subscribers, that keys with
/// the role `device` may publish to.
pub async fn device_topic(server: &TestServer, admin: &str, name: &str) {
    let (status, body) = send(
        client()
            .post(server.url("/api/topics"))
            .bearer_auth(admin)
            .json(&json!({"name": name, "subscribe": "true",
                          "publish": "'device' in @user.roles"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// A realtime subscriber to the custom topic `name`.
pub async fn subscriber(server: &TestServer, token: &str, name: &str) -> Ws {
    let mut ws = Ws::connect(server, Some(token)).await;
    let reply = ws
        .request(json!({"action": "subscribe", "topic": name}))
        .await;
    assert_eq!(reply["type"], "ok", "{reply}");
    ws
}

/// The `data` of the next message on the subscriber's topics.
pub async fn next_message(ws: &mut Ws) -> Value {
    loop {
        let frame = ws.next().await;
        if frame["type"] == "message" {
            return frame["data"].clone();
        }
    }
}
