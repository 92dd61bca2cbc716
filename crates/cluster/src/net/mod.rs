//! The node-to-node transport.
//!
//! TCP, one connection from each node to each peer it calls (so two per pair of nodes, one per
//! direction), frames of `[u32 big-endian length][postcard envelope]`. An envelope carries a
//! request id, so many requests (Raft messages of every group, forwarded writes, joins) are in
//! flight on one connection at once and answered out of order. A caller that finds its
//! connection broken reconnects, backing off after each failure.
//!
//! With TLS ([`tls`], `tls_certfile`/`tls_keyfile`/`tls_cacertfile` in `[cluster]`), both
//! ends of every connection present a certificate and verify the other's against the cluster's
//! CA before a frame is read: the outgoing side in `peers`' dial, the listener in
//! [`server::serve`]; the framing code above is the same for both kinds of stream.

pub(crate) mod forward;
pub(crate) mod frame;
pub mod liveness;
pub mod peers;
pub(crate) mod raft;
pub mod server;
pub mod tls;

pub use forward::ForwardHandler;
pub use frame::{Request, Response, RpcKind, WireError, PROTOCOL};
pub use liveness::{NodeEvent, NodeEventKind, NodeState, NodeStates};
pub use peers::Peers;
pub use raft::{GroupEndpoint, GroupNetwork};
pub use server::Handler;
pub use tls::ClusterTls;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for handlers chosen at run time (the node's groups).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
