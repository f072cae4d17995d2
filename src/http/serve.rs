//! The accept loop: every connection is served by hyper's HTTP/1 server
//! directly, with upgrades (WebSocket), the peer's address as `ConnectInfo`,
//! and a graceful shutdown that stops accepting, lets each connection finish
//! its request in flight, and waits for them all. A connection that opens
//! with an SSE request is served without hyper's buffers (`sse_conn`), on
//! the realtime connection runtime.
//!
//! Why not `axum::serve`: it serves through hyper-util's `auto` builder,
//! which first reads up to 24 bytes to tell HTTP/2 from HTTP/1 and hands
//! them to hyper as a prefix. hyper's first read then returns only those
//! bytes, and its second one grows the connection's read buffer from 8 to
//! 16 KiB, copying all 8 (so touching them) for as long as the connection
//! lives: most of what an idle SSE stream cost. We build no HTTP/2 anyway.

use std::net::SocketAddr;
use std::pin::pin;

use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::{Extension, Router};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Layer as _;

use super::hyper_errors::JsonErrors;
use super::sse_conn;

/// Serves `app` on `listener` until `shutdown` completes, then waits for the
/// open connections to end (the caller bounds that wait). SSE streams run
/// on `streams` (the realtime connection runtime, as WebSockets do), so
/// their deliveries do not queue with the requests answered here.
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    streams: Handle,
    shutdown: impl std::future::Future<Output = ()>,
) where
    L: Listener<Io = JsonErrors<TcpStream>, Addr = SocketAddr>,
{
    let mut shutdown = pin!(shutdown);
    let stop = CancellationToken::new();
    let connections = TaskTracker::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stop = stop.clone();
        let streams = streams.clone();
        let tracker = connections.clone();
        connections.spawn(async move {
            let sse = tokio::select! {
                sse = sse_conn::opens_sse(io.get_ref()) => sse,
                () = stop.cancelled() => return,
            };
            if sse {
                // Ends with its stream, which the server's stop ends too;
                // tracked, so the shutdown waits for it. A task of its own:
                // this one, sized for hyper's connection, ends here.
                streams.spawn(tracker.track_future(sse_conn::serve(io.into_inner(), peer, app)));
                return;
            }
            let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app));
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            let mut conn = pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::trace!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
}
