//! Classic queues across nodes (issue 13 item 3): the seam through which the broker's own
//! messages (forwarded publishes, a remote consumer's attach, deliveries, acks) cross the
//! cluster links. The cluster carries them as opaque bytes over the node's one multiplexed
//! connection per peer (`Request::Forward` / `Response::Forwarded`); what they mean is the
//! broker's (server/src/cluster/forward.rs).

use super::BoxFuture;

/// What answers the broker messages peers send this node: the broker.
pub trait ForwardHandler: Send + Sync + 'static {
    /// Answers one message from the node named `from`; an `Err` reaches the caller as
    /// [`crate::ClusterError::Forward`]. Messages on one connection are handled concurrently:
    /// a caller that needs them in order sends one at a time.
    fn handle(&self, from: String, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>>;
    /// The handler itself, for the broker to find its own type again
    /// ([`crate::Cluster::forward_handler`]).
    fn as_any(&self) -> &dyn std::any::Any;
}
