//! The HTTP connections: an accept loop with a connection limit, a header read timeout, and a
//! shutdown that gives open connections a deadline.
//!
//! * At most `max_connections` connections are served at once. Beyond it the loop stops
//!   accepting: new connections wait in the kernel's listen backlog (and are served as others
//!   close) rather than being refused; a client that waits longer than it likes gives up on its
//!   own. Nothing is read from a connection that is not yet accepted, so waiting ones cost no
//!   memory of this process.
//! * A client must send a request's headers within `header_timeout` (HTTP/1's head: the request
//!   line and every header); one that sends them slowly (slow-loris) or not at all is
//!   disconnected. An idle kept-alive connection is closed after the same time.
//! * The body's deadline (`body_timeout`) is kept by the router's middleware.
//! * On shutdown the listener is closed (new connections are refused), every open connection
//!   finishes the request it is in and is then closed; those still open after `drain` are cut.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::ServeSettings;

/// The most one connection buffers of its request (headers, and body not yet read).
const CONNECTION_BUFFER: usize = 64 * 1024;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub drain: Duration,
}

impl Limits {
    pub fn of(settings: &ServeSettings) -> Limits {
        Limits {
            max_connections: settings.max_connections,
            header_timeout: settings.header_timeout,
            drain: settings.drain,
        }
    }
}

/// Serves `router` on `listener` until `stop`, then drains the open connections for at most
/// `limits.drain`.
pub(crate) async fn serve(listener: TcpListener, router: axum::Router, limits: Limits, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let closing = CancellationToken::new();
    let mut open = JoinSet::new();
    loop {
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while open.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let closing = closing.clone();
        open.spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // What one connection may buffer of what its client sends (headers included):
                // hyper's default lets a fast sender fill ~400 KiB per connection before the
                // handler reads, which `max_connections` times is beyond any budget.
                .max_buf_size(CONNECTION_BUFFER)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                () = closing.cancelled() => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    closing.cancel();
    let still_open = open.len();
    if still_open == 0 {
        return;
    }
    let drained = tokio::time::timeout(limits.drain, async { while open.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = open.len(),
            drain = %humantime::format_duration(limits.drain),
            "connections still open after the drain deadline are closed"
        );
        open.abort_all();
        while open.join_next().await.is_some() {}
    }
}
