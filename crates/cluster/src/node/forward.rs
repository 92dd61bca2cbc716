//! Classic queues across nodes (issue 13 item 3): the broker's messages to and from peers, by
//! node name, over the node's connections (see `net/forward.rs`).

use super::{Cluster, NodeInner};
use crate::net::{ForwardHandler, Request, Response, WireError};
use std::sync::Arc;
use std::time::Duration;

/// Why a broker message to a peer got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    /// The node is not a member this node knows of.
    #[error("no member named '{0}'")]
    UnknownNode(String),
    /// The node did not answer: down, unreachable, or too slow.
    #[error("node '{node}' is unreachable: {reason}")]
    Unreachable {
        /// Its name.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node answered with an error (its broker refused, or is not ready).
    #[error("node '{node}' refused: {reason}")]
    Refused {
        /// Its name.
        node: String,
        /// Why.
        reason: String,
    },
}

/// Answers a `Request::Forward` through the broker's handler.
pub(super) async fn handle(inner: &Arc<NodeInner>, from: String, body: Vec<u8>) -> Response {
    let Some(handler) = inner.forward.get().cloned() else {
        return Response::Error(WireError::Other(format!(
            "node {} is starting: its broker does not take forwarded messages yet",
            inner.me.name
        )));
    };
    match handler.handle(from, body).await {
        Ok(bytes) => Response::Forwarded(bytes),
        Err(e) => Response::Error(WireError::Other(e)),
    }
}

impl Cluster {
    /// Sets what answers the broker messages peers send (once; later calls are ignored).
    pub fn set_forward_handler(&self, handler: Arc<dyn ForwardHandler>) {
        let _ = self.inner.forward.set(handler);
    }

    /// What answers the broker messages peers send, once set.
    pub fn forward_handler(&self) -> Option<Arc<dyn ForwardHandler>> {
        self.inner.forward.get().cloned()
    }

    /// The cluster address of the member named `node`, from the membership this node knows.
    pub fn member_addr(&self, node: &str) -> Option<String> {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let found = membership
            .nodes()
            .find(|(_, n)| n.name == node)
            .map(|(_, n)| n.addr.clone());
        found
    }

    /// The names of every member (voters and learners), this node's included.
    pub fn member_names(&self) -> Vec<String> {
        let m = self.inner.raft.metrics().borrow().clone();
        let mut names: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| n.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Sends the broker message `body` to the node named `node` and waits up to `timeout` for
    /// its answer. Messages are multiplexed on the node's one connection to that peer.
    pub async fn forward(
        &self,
        node: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ForwardError> {
        let addr = self
            .member_addr(node)
            .ok_or_else(|| ForwardError::UnknownNode(node.to_string()))?;
        let request = Request::Forward {
            from: self.inner.me.name.clone(),
            body,
        };
        match self.inner.peers.call(&addr, request, timeout).await {
            Ok(Response::Forwarded(bytes)) => Ok(bytes),
            Ok(Response::Error(e)) => Err(ForwardError::Refused {
                node: node.to_string(),
                reason: match e {
                    WireError::Other(text) => text,
                    other => format!("{other:?}"),
                },
            }),
            Ok(other) => Err(ForwardError::Refused {
                node: node.to_string(),
                reason: format!("unexpected answer {other:?}"),
            }),
            Err(e) => Err(ForwardError::Unreachable {
                node: node.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
