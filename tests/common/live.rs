//! Realtime clients for tests: a WebSocket client (tokio-tungstenite) and a
//! minimal SSE reader, both over real sockets.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestServer;

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for a reply, kept for `next`.
    buffered: VecDeque<Value>,
    next_id: u64,
    pub welcome: Value,
}

/// Why a connection ended: the close code and reason, if it sent one.
#[derive(Debug)]
pub struct Closed {
    pub code: Option<u16>,
    pub reason: String,
}

impl Ws {
    pub async fn connect(server: &TestServer, token: Option<&str>) -> Ws {
        let mut url = server.base.replacen("http://", "ws://", 1) + "/api/realtime";
        if let Some(token) = token {
            url = format!("{url}?token={token}");
        }
        let (stream, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        let mut ws = Ws {
            stream,
            buffered: VecDeque::new(),
            next_id: 0,
            welcome: Value::Null,
        };
        ws.welcome = ws.next().await;
        assert_eq!(ws.welcome["type"], "welcome", "{}", ws.welcome);
        ws
    }

    pub async fn send(&mut self, value: Value) {
        self.stream
            .send(Message::text(value.to_string()))
            .await
            .expect("websocket send");
    }

    /// The next frame that is not a heartbeat.
    pub async fn next(&mut self) -> Value {
        if let Some(value) = self.buffered.pop_front() {
            return value;
        }
        self.read(WAIT)
            .await
            .unwrap_or_else(|closed| panic!("connection ended: {closed:?}"))
            .expect("no frame within the wait")
    }

    /// `Ok(None)` on timeout, `Err` when the connection ended.
    pub async fn read(&mut self, wait: Duration) -> Result<Option<Value>, Closed> {
        loop {
            let frame = match tokio::time::timeout(wait, self.stream.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON frame");
                    if value["type"] != "heartbeat" {
                        return Ok(Some(value));
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Closed {
                        code: frame.as_ref().map(|f| u16::from(f.code)),
                        reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    })
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Closed {
                        code: None,
                        reason: e.to_string(),
                    })
                }
                None => {
                    return Err(Closed {
                        code: None,
                        reason: "stream ended".into(),
                    })
                }
            }
        }
    }

    /// Sends a request with a fresh id and returns its reply; other frames
    /// that arrive first are kept for `next`.
    pub async fn request(&mut self, mut body: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        body["id"] = json!(id);
        self.send(body).await;
        loop {
            let frame = self
                .read(WAIT)
                .await
                .unwrap_or_else(|closed| panic!("connection ended: {closed:?}"))
                .expect("no reply within the wait");
            if frame["id"] == json!(id) {
                return frame;
            }
            self.buffered.push_back(frame);
        }
    }

    /// Asserts nothing but heartbeats arrives for `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Some(frame) = self.buffered.pop_front() {
            panic!("expected nothing, got {frame}");
        }
        if let Ok(Some(frame)) = self.read(wait).await {
            panic!("expected nothing, got {frame}");
        }
    }

    /// Reads until the connection closes; returns how.
    pub async fn closed(&mut self) -> Closed {
        loop {
            match self.read(WAIT).await {
                Err(closed) => return closed,
                Ok(None) => panic!("connection did not close within the wait"),
                Ok(Some(_)) => {}
            }
        }
    }
}

/// A minimal SSE reader over a streaming HTTP response.
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
    /// The stream's first event (a 200's): the subscription's `ok`, with
    /// the resume point as its id.
    pub opening: Option<SseEvent>,
}

#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: Value,
}

impl Sse {
    pub async fn open(server: &TestServer, query: &str, headers: &[(&str, &str)]) -> (u16, Sse) {
        let mut request = super::client().get(server.url(&format!("/api/realtime/sse?{query}")));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("sse request");
        let status = response.status().as_u16();
        let mut sse = Sse {
            response,
            buffer: String::new(),
            opening: None,
        };
        if status == 200 {
            let opening = sse.next().await.expect("the stream's opening event");
            assert_eq!(opening.event, "ok", "the first event: {opening:?}");
            sse.opening = Some(opening);
        }
        (status, sse)
    }

    pub async fn body_json(self) -> Value {
        self.response.json().await.expect("json body")
    }

    /// The next event that is not a heartbeat; `None` when the stream ends.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() || event.event == "heartbeat" {
                    continue;
                }
                event.data = serde_json::from_str(&data).expect("JSON data");
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("no SSE data within the wait")
                .expect("sse read");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }
}

impl Sse {
    pub fn headers(&self) -> &reqwest::header::HeaderMap {
        self.response.headers()
    }

    /// The next raw event block (heartbeats included), without its blank
    /// line; `None` when the stream ends or nothing arrives within `wait`.
    pub async fn next_block(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(block.trim_end().to_owned());
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("sse read")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A WebSocket client written by hand over TCP: it performs the upgrade
/// and then only reads, so it never answers a ping (tungstenite would).
pub struct RawWs {
    stream: TcpStream,
}

/// One server frame as read by [`RawWs`].
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;

impl RawWs {
    pub async fn connect(server: &TestServer, token: Option<&str>) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = server.base.trim_start_matches("http://").to_owned();
        let mut stream = TcpStream::connect(&host).await.expect("tcp connect");
        let path = match token {
            Some(token) => format!("/api/realtime?token={token}"),
            None => "/api/realtime".to_owned(),
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send upgrade");
        // Read the response head byte by byte so no frame is swallowed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(WAIT, stream.read_u8())
                .await
                .expect("no upgrade response within the wait")
                .expect("upgrade response");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "expected 101 Switching Protocols, got {head}"
        );
        RawWs { stream }
    }

    /// Sends one final frame, masked as a client must.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.expect("send frame");
    }

    /// Kills the TCP connection the way a crashed host's kernel or a
    /// middlebox does: a reset, with no WebSocket close and no FIN.
    pub fn reset(self) {
        self.stream
            .set_zero_linger()
            .expect("SO_LINGER 0 on the client socket");
        drop(self.stream);
    }

    /// The next frame, or `None` once the server has closed the TCP
    /// connection (or reset it). Panics when nothing arrives by `deadline`.
    pub async fn read_frame(&mut self, deadline: tokio::time::Instant) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        let read = async {
            let mut header = [0u8; 2];
            self.stream.read_exact(&mut header).await?;
            let opcode = header[0] & 0x0f;
            let len = match header[1] & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                n => u64::from(n),
            };
            // Server frames are never masked.
            let mut payload = vec![0u8; len as usize];
            self.stream.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>(RawFrame { opcode, payload })
        };
        tokio::time::timeout_at(deadline, read)
            .await
            .expect("the server did not close the connection in time")
            .ok()
    }
}

impl Ws {
    /// Keeps reading (so tungstenite answers pings) for `wait`, whatever
    /// the heartbeat, and panics if the connection ends meanwhile; frames
    /// read are kept for `next`. (`read` restarts its wait on every
    /// heartbeat, so it cannot bound a wait when heartbeats are frequent.)
    pub async fn stays_open(&mut self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        while let Ok(read) = tokio::time::timeout_at(until, self.read(wait)).await {
            match read {
                Ok(Some(frame)) => self.buffered.push_back(frame),
                Ok(None) => {}
                Err(closed) => panic!("connection ended: {closed:?}"),
            }
        }
    }
}
