//! Serving a router over plain HTTP/1.1 or HTTPS, with a clean shutdown.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// A running accept loop. Dropping it stops the server too; [`Server::shutdown`] also waits until
/// the port is released.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    /// Connections accepted since start: how many a client opened.
    accepted: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) async fn start(
        addr: SocketAddr,
        router: Router,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let acceptor = tls.map(TlsAcceptor::from);
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, router, acceptor, accepted.clone(), stopped));
        Ok(Server {
            addr,
            accepted,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The bound address, with an unspecified IP (`0.0.0.0`, `::`) replaced by loopback so that
    /// it can be dialled.
    pub(crate) fn addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }

    /// Connections accepted since the server started.
    pub(crate) fn accepted_connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may already be gone (runtime shutting down); nothing is left to stop then.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    acceptor: Option<TlsAcceptor>,
    opened: Arc<AtomicUsize>,
    mut stopped: oneshot::Receiver<()>,
) {
    // Connections live in this set so that stopping the loop also closes every open connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    opened.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, router.clone(), acceptor.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve_connection(stream: TcpStream, router: Router, acceptor: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(router);
    let http = hyper::server::conn::http1::Builder::new();
    // Connection errors (a client hanging up, a failed TLS handshake from a client that does not
    // trust the CA) concern that client only.
    match acceptor {
        None => {
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        }
        Some(acceptor) => {
            if let Ok(stream) = acceptor.accept(stream).await {
                let _ = http.serve_connection(TokioIo::new(stream), service).await;
            }
        }
    }
}
