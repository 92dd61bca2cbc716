//! HTTPS for the HTTP listeners: the management API (RabbitMQ's `management.ssl.*`, port
//! 15671) and the Prometheus endpoint (`prometheus.ssl.*`, port 15691), with the same TLS
//! context as AMQPS and MQTTS (a reloaded certificate applies to their next handshakes too).
//!
//! [`TlsListener`] is an [`axum::serve::Listener`] that yields connections whose handshake is
//! done, so that the very app served over plain HTTP is served over TLS by `axum::serve`
//! (graceful shutdown and the peer address included). As on the protocol listeners, each
//! handshake runs on its own task, bounded by the handshake timeout: a client that stalls in
//! it holds up no other.

use super::TlsContext;
use crate::listen::Bound;
use crate::ServerState;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Connections that completed a handshake and wait for the HTTP server to take them.
const READY_BACKLOG: usize = 64;

/// A bound socket whose connections come out of the TLS handshake.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `bound` (until shutdown) and handshaking with `tls`.
    pub(crate) fn start(bound: Bound, tls: Arc<TlsContext>, state: &Arc<ServerState>) -> Self {
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let local = bound.addr;
        tokio::spawn(accept(bound, tls, Arc::clone(state), tx));
        TlsListener { ready, local }
    }
}

async fn accept(
    bound: Bound,
    tls: Arc<TlsContext>,
    state: Arc<ServerState>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let Bound { kind, listener, .. } = bound;
    let mut shutdown = state.shutdown.clone();
    let timeout = state.config.handshake_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = kind.name(), "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let acceptor = tls.acceptor();
        let ready = ready.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // The server is gone when this fails: the connection just closes.
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(%peer, listener = kind.name(), error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::info!(%peer, listener = kind.name(), timeout_s = timeout.as_secs(), "TLS handshake timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task stopped (shutdown): nothing more comes, and the server's
            // graceful shutdown ends the serve loop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
