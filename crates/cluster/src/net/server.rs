//! The answering side: the cluster listener.

use super::frame::{self, Envelope, Request, Response};
use super::tls::ClusterTls;
use super::BoxFuture;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What answers requests: the node.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Requests on one connection are handled concurrently.
    fn handle(&self, request: Request) -> BoxFuture<Response>;
}

/// How long a peer has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts peers' connections until `shutdown` turns true, then drops every connection. With
/// `tls`, a connection is served only once its TLS handshake succeeded, which includes a client
/// certificate that verifies against the cluster's CA; a peer without one is refused with one
/// log line.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ClusterTls>>,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
) {
    if *shutdown.borrow() {
        return;
    }
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { break },
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tracing::debug!(%peer, "cluster: peer connected");
                    connections.spawn(accept(stream, peer, tls.clone(), handler.clone()));
                }
                Err(e) => {
                    tracing::warn!("cluster listener: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// The TLS handshake, if any, then the connection's requests.
async fn accept(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<Arc<ClusterTls>>,
    handler: Arc<dyn Handler>,
) {
    let Some(tls) = tls else {
        return connection(stream, handler).await;
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => connection(stream, handler).await,
        Ok(Err(e)) => {
            tracing::warn!(%peer, "cluster: refused a connection: TLS handshake failed: {e}");
        }
        Err(_) => {
            tracing::warn!(%peer, "cluster: refused a connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
        }
    }
}

async fn connection<S>(stream: S, handler: Arc<dyn Handler>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
            // TLS buffers records: flush once the queue is empty (a no-op on plain TCP).
            if rx.is_empty() && writer.flush().await.is_err() {
                break;
            }
        }
    });
    loop {
        match frame::read(&mut reader).await {
            Ok(Some(Envelope::Request(id, request))) => {
                let handler = handler.clone();
                let tx = tx.clone();
                tasks.spawn(async move {
                    let response = handler.handle(request).await;
                    match frame::encode(&Envelope::Response(id, response)) {
                        Ok(bytes) => drop(tx.send(bytes)),
                        Err(e) => tracing::warn!("cluster: cannot encode a response: {e}"),
                    }
                });
                // Reap finished request tasks so a long-lived connection does not accumulate them.
                while tasks.try_join_next().is_some() {}
            }
            Ok(Some(Envelope::Response(..))) | Ok(None) => break,
            Err(e) => {
                tracing::debug!("cluster: dropping a peer connection: {e}");
                break;
            }
        }
    }
    // Dropping `tasks` aborts the writer and any request still being handled.
}
