//! Server-Sent Events blocks, written by hand: a batch of frames becomes
//! one body chunk, so hyper hands it to the kernel in one write.
//!
//! Through axum's `Sse`, every event was a chunk of its own, built in a
//! buffer of its own: at 1000 streams × 1000 events/s that was a million
//! allocations and chunk headers a second on the threads that also answer
//! requests, and writes got a fifth of their rate done.

use std::io::Write;

use bytes::Bytes;

use crate::fanout::{Frame, FrameKind};

/// Appends one event block: `event:`, a `data:` line per line of `data`
/// (`\r\n`, `\n` and `\r` all end one, as the format reads them), `id:`
/// if given, and the blank line that ends the block.
pub fn put(out: &mut Vec<u8>, name: &str, data: &str, id: Option<u64>) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    for line in data.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        for part in line.split('\r') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(part.as_bytes());
            out.push(b'\n');
        }
    }
    if let Some(id) = id {
        // Writing to a Vec cannot fail.
        let _ = writeln!(out, "id: {id}");
    }
    out.push(b'\n');
}

/// A frame's block, made once per frame whatever the number of streams it
/// goes to: events and messages carry their seq as the `id` a reconnect
/// resumes from (`Last-Event-ID`); replies and notices carry none.
fn block_of(frame: &Frame) -> &[u8] {
    frame.sse.get_or_init(|| {
        let id = match frame.kind {
            FrameKind::Event | FrameKind::Message => Some(frame.seq),
            FrameKind::Control(_) => None,
        };
        let mut block = Vec::with_capacity(frame.text.len() + 48);
        put(&mut block, frame.kind.sse_name(), frame.text.as_str(), id);
        block.into_boxed_slice()
    })
}

/// The blocks of `frames`, in order, as one body chunk.
pub fn chunk<F: AsRef<Frame>>(frames: &[F]) -> Bytes {
    let size = frames.iter().map(|f| block_of(f.as_ref()).len()).sum();
    let mut out = Vec::with_capacity(size);
    for frame in frames {
        out.extend_from_slice(block_of(frame.as_ref()));
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(name: &str, data: &str, id: Option<u64>) -> String {
        let mut out = Vec::new();
        put(&mut out, name, data, id);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn a_block_names_its_event_carries_its_data_and_ends_blank() {
        assert_eq!(
            block("event", r#"{"seq":7}"#, Some(7)),
            "event: event\ndata: {\"seq\":7}\nid: 7\n\n"
        );
        assert_eq!(block("ok", "{}", None), "event: ok\ndata: {}\n\n");
    }

    #[test]
    fn a_chunk_holds_each_frames_block_in_order() {
        let frames = [
            Frame::new(3, FrameKind::Event, r#"{"a":1}"#),
            Frame::new(0, FrameKind::Control("ok"), "{}"),
        ];
        assert_eq!(
            &chunk(&frames)[..],
            b"event: event\ndata: {\"a\":1}\nid: 3\n\nevent: ok\ndata: {}\n\n"
        );
    }

    #[test]
    fn every_line_ending_starts_a_data_line() {
        assert_eq!(
            block("message", "a\nb\r\nc\rd", None),
            "event: message\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
    }
}
