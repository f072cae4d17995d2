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
    // About 1.25 KB now: the session (once), the `select!`'s futures and a
    // few locals. Past 1.5 KB something large is kept across an await.
    assert!(size <= 1536, "a connection's task future is {size} bytes");
}
