//! The task spawned per connection is allocated whole, at the size of its
//! largest state, for as long as the connection lasts: what an idle
//! connection costs starts there.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::run;
use crate::state::AppState;

/// The size of what `f` returns, without calling it.
fn returned_size<A, B, C, F>(_: fn(A, B, C) -> F) -> usize {
    std::mem::size_of::<F>()
}

#[test]
fn a_connection_task_stays_small() {
    let size = returned_size(run::<TcpStream> as fn(AppState, TcpStream, SocketAddr) -> _);
    // tokio allocates a task as its future plus about 110 bytes, rounded
    // up to 128 and aligned to 128. Up to 1 KiB that is a size class of
    // its own; past it (1152, 1280, 1408) mimalloc over-allocates to align
    // it and the task costs 1.25-1.5 KiB. The future is about 870 bytes
    // now; it was 1,184 (a 1.5 KiB task) while it held a shutdown waiter,
    // the `select!`'s output across its awaits, and `run`'s arguments.
    assert!(size <= 912, "a connection's task future is {size} bytes");
}
