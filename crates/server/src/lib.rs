//! Pigeon's network server: listeners and the protocol adapters onto the broker core.
//!
//! `start` binds the listeners and returns a [`ServerHandle`]; every accepted socket gets one task
//! that reads frames and drives the protocol state machine, and one writer that drains the
//! connection's outbound buffer.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;

pub use config::{ServerConfig, UserConfig};

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not bind its address (in use, or not allowed).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// A running server. Dropping it does not stop the server; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    amqp_addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
}

impl ServerHandle {
    /// The address the AMQP listener is bound to (the real port when the config asked for 0).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp_addr
    }

    /// Stops accepting, closes every connection and waits for the listeners to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }

    /// Waits until the server stops (it runs until `shutdown` or a fatal listener error).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds the listeners and starts serving.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let listener = TcpListener::bind(config.amqp_listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.amqp_listen,
            source,
        })?;
    let amqp_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.amqp_listen,
        source,
    })?;
    let (shutdown, _rx) = tokio::sync::watch::channel(false);
    let tasks = tokio::task::JoinSet::new();
    // TODO(owner: lead): accept loop; being written now.
    drop(listener);
    Ok(ServerHandle {
        amqp_addr,
        shutdown,
        tasks,
    })
}
