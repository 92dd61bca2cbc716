//! Consumers on a node without a member of the queue's group (a fourth node when the group has
//! three): RabbitMQ serves them (a quorum queue consumer's channel talks to the leader wherever
//! it is); Pigeon attaches them to a member node's replica through the classic queues' remote
//! consumer machinery (`cluster/remote_consumer.rs`).
//!
//! The consumer is registered here (so the channel, `basic.cancel` and the queue's deletion
//! see it) without a `Checkout` of this node (no replica here would ever carry out its
//! deliveries); the channel attaches it (`amqp/remote.rs` `attach_at`) to the **serving node**,
//! a member chosen once and kept while it is up, where it is a consumer like that node's own
//! (`Checkout` with the consumer's prefetch, a `RemoteSink`), its deliveries sent over the
//! cluster link with that node's handles. Acks, nacks and rejects of those handles go back to
//! the serving node, which settles them in the group. `basic.get` handles of this node are
//! kept apart (`OWN_HANDLES`), so that the two never mix.
//!
//! When the serving node goes down, its consumers here are cancelled (`basic.cancel` to a
//! client that announced `consumer_cancel_notify`), as for a classic queue homed there; what
//! they held is returned by the group (`NodeDown`). RabbitMQ's consumer would carry on with the
//! new leader: a client re-consuming gets another serving node.

use super::member::QuorumMember;
use crate::cluster::forward::Forwarder;
use pigeon_broker::{BrokerError, Outcome};
use std::borrow::Cow;
use std::sync::Arc;

/// The handles of this node's own deliveries (basic.get) on a node without a member have
/// this bit set; the serving node's handles never do (they count from 1).
pub(super) const OWN_HANDLES: u64 = 1 << 62;

impl QuorumMember {
    /// The member node that serves this node's consumers: the one chosen before while it is
    /// up, else the first member (declared, or known to the cluster) that is up.
    pub(super) fn serving(&self) -> Option<String> {
        let forwarder = Forwarder::of(&self.cluster)?;
        let mut serving = self.serving.lock();
        if let Some(node) = serving.as_ref().filter(|n| forwarder.is_up(n)) {
            return Some(node.clone());
        }
        let me = self.cluster.name().to_string();
        let next = self
            .candidates()
            .into_iter()
            .find(|n| *n != me && forwarder.is_up(n));
        serving.clone_from(&next);
        next
    }

    /// Whether a consumer may attach here: on a node without a member, if a member is up.
    pub(super) fn outsider_check(&self, queue: &str) -> pigeon_broker::Result<()> {
        match self.serving() {
            Some(_) => Ok(()),
            None => Err(BrokerError::NotFound(format!(
                "no member of quorum queue '{queue}' in vhost '{}' is reachable from node {}",
                self.vhost,
                self.cluster.name()
            ))),
        }
    }

    /// The consumer `tag` of `owner` was removed here: cancelled at the serving node.
    pub(super) fn outsider_cancel(&self, owner: u64, tag: &str) {
        let (Some(forwarder), Some(queue)) = (Forwarder::of(&self.cluster), self.queue.upgrade())
        else {
            return;
        };
        forwarder.cancel_consumer(&queue, owner, tag);
    }

    /// Sends the settlements of the serving node's deliveries back to it; returns this node's
    /// own handles (all of them on a member node, without allocating).
    pub(super) fn settle_remote<'a>(&self, seqs: &'a [u64], outcome: Outcome) -> Cow<'a, [u64]> {
        if !self.is_outsider() {
            return Cow::Borrowed(seqs);
        }
        let (own, theirs): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|s| **s & OWN_HANDLES != 0);
        let serving = self.serving.lock().clone();
        if let (Some(node), Some(forwarder), Some(queue)) =
            (serving, Forwarder::of(&self.cluster), self.queue.upgrade())
        {
            forwarder.settle_remote(&queue, &node, theirs, outcome);
        }
        Cow::Owned(own)
    }
}

/// `queue`'s serving node if this node has no member of its group (`None`: consumers here are
/// served by this node's replica, or the queue is not a quorum queue).
pub(crate) fn serving_node(queue: &Arc<pigeon_broker::Queue>) -> Option<String> {
    queue.quorum().and_then(|q| q.serving_node())
}
