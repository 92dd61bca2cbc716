//! The answering side: the cluster listener.

use super::frame::{self, Envelope, Request, Response};
use super::BoxFuture;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What answers requests: the node.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. Requests on one connection are handled concurrently.
    fn handle(&self, request: Request) -> BoxFuture<Response>;
}

/// Accepts peers' connections until `shutdown` turns true, then drops every connection.
pub async fn serve(
    listener: TcpListener,
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
                    // TLS goes here: the handshake and the peer certificate check, before framing.
                    let _ = stream.set_nodelay(true);
                    tracing::debug!(%peer, "cluster: peer connected");
                    connections.spawn(connection(stream, handler.clone()));
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

async fn connection(stream: tokio::net::TcpStream, handler: Arc<dyn Handler>) {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let mut tasks = JoinSet::new();
    tasks.spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
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
