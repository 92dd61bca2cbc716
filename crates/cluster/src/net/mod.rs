//! The node-to-node transport.
//!
//! TCP, one connection from each node to each peer it calls (so two per pair of nodes, one per
//! direction), frames of `[u32 big-endian length][postcard envelope]`. An envelope carries a
//! request id, so many requests (Raft messages of every group, forwarded writes, joins) are in
//! flight on one connection at once and answered out of order. A caller that finds its
//! connection broken reconnects, backing off after each failure.
//!
//! TLS with mutual certificate authentication (issue 13, item 1) goes in [`peers::dial`] and
//! [`server::serve`]: both hand the socket to generic framing code, so wrapping it in
//! `tokio-rustls` changes those two functions only.

pub(crate) mod forward;
pub(crate) mod frame;
pub mod peers;
pub(crate) mod raft;
pub mod server;

pub use forward::ForwardHandler;
pub use frame::{Request, Response, RpcKind, WireError, PROTOCOL};
pub use peers::Peers;
pub use raft::{GroupEndpoint, GroupNetwork};
pub use server::Handler;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for handlers chosen at run time (the node's groups).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
