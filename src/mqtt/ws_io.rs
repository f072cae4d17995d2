//! An upgraded WebSocket as the byte stream a TCP connection is, so one
//! session loop ([`super::connection::run`]) serves both transports.
//!
//! MQTT over WebSocket carries the MQTT byte stream in binary messages with
//! no alignment to packets: a packet may span messages and a message may
//! hold several packets. So the adapter only concatenates what comes in
//! (the session's framer finds the packets) and sends each flushed write as
//! one binary message. Built from `tokio-util`'s `StreamReader` and
//! `SinkWriter`, which the server already depends on.

use std::future::ready;
use std::io;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};

/// The socket's binary messages as one stream of bytes, both ways.
///
/// Reading ends (with an error, which a session takes for a lost
/// connection) at a close frame or a text frame: MQTT is only ever sent in
/// binary frames, and a client that sends text is not speaking it. Pings
/// are answered by the WebSocket layer itself.
pub fn byte_stream(socket: WebSocket) -> impl AsyncRead + AsyncWrite + Unpin + Send + 'static {
    let (sink, stream) = socket.split();
    let inbound = stream.filter_map(|message| ready(bytes_of(message)));
    let outbound = sink
        .sink_map_err(io::Error::other)
        .with(|bytes: Bytes| ready(Ok::<_, io::Error>(Message::Binary(bytes))));
    tokio::io::join(
        StreamReader::new(inbound),
        SinkWriter::new(CopyToBytes::new(outbound)),
    )
}

/// The bytes of one message; `None` for the ones that carry none.
fn bytes_of(message: Result<Message, axum::Error>) -> Option<io::Result<Bytes>> {
    match message {
        Ok(Message::Binary(bytes)) => Some(Ok(bytes)),
        Ok(Message::Ping(_) | Message::Pong(_)) => None,
        Ok(Message::Text(_)) => Some(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a text frame: MQTT is sent in binary frames",
        ))),
        Ok(Message::Close(_)) => Some(Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the client closed the WebSocket",
        ))),
        Err(e) => Some(Err(io::Error::other(e))),
    }
}
