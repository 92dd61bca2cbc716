//! Consumers on a node without a member of the queue's group (a fourth node when the group has
//! three): RabbitMQ serves them (a quorum queue consumer's channel talks to the leader wherever
//! it is); Pigeon attaches them to a member node's replica through the classic queues' remote
//! consumer machinery (`cluster/remote_consumer.rs`).
//!
//! The consumer is registered here (so the channel, `basic.cancel` and the queue's deletion
//! see it) without a `Checkout` of this node (no replica here would ever carry out its
//! deliveries), and attached ([`QuorumMember::outsider_attach`]) at the **serving node**, a
//! member chosen once and kept while it is up, where it is a consumer like that node's own
//! (`Checkout` with the consumer's prefetch, a `RemoteSink`), its deliveries sent over the
//! cluster link with that node's handles. They wait in the consumer's books here, as a member
//! node's own deliveries do, until the consumer has room. Acks, nacks and rejects of those
//! handles go back to the serving node, which settles them in the group. `basic.get` handles of
//! this node are kept apart (`OWN_HANDLES`), so that the two never mix.
//!
//! **The serving node goes down** (or is removed from the group): the consumers here attach at
//! another member that is up ([`serving_lost`]), as RabbitMQ's consumer carries on with the
//! group's new leader; their channel sees nothing. What the lost node's attachment held is
//! returned by the group (`NodeDown`, redelivered elsewhere or to the same consumer); each
//! attachment has an **epoch**, carried in the handles it delivered, so that a late ack of the
//! old attachment's handle is ignored rather than sent to the new serving node, where the same
//! number names another message. Only when no member is up are the consumers cancelled
//! (`basic.cancel` to a client that announced `consumer_cancel_notify`), as for a classic queue
//! whose home went down.
//!
//! **This node stops being a member** (`delete_member`, `shrink`; [`QuorumMember::moved_out`]):
//! its consumers are cancelled in the group (what they hold can still be acked there) and
//! attached at a serving node as above.

use super::member::QuorumMember;
use crate::cluster::forward::Forwarder;
use crate::cluster::remote_consumer::LocalConsumer;
use pigeon_broker::{BrokerError, Outcome, QueuedMessage};
use pigeon_cluster::quorum::QueueOp;
use pigeon_cluster::Cluster;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The handles of this node's own deliveries (basic.get) on a node without a member have
/// this bit set; the serving node's handles never do (they count from 1).
pub(super) const OWN_HANDLES: u64 = 1 << 62;
/// A serving node's handle, as the consumer here sees it, carries its attachment's epoch in
/// these bits (a node's own handles count from 1 and stay far below: 2^40 deliveries).
const EPOCH_SHIFT: u32 = 40;
const EPOCH_MASK: u64 = (1 << 22) - 1;
/// How long a node that refused to serve this node's consumers is not asked again.
const REFUSAL_KEPT: Duration = Duration::from_secs(10);

/// The member node serving this node's consumers, and its attachment's epoch (0: none yet).
#[derive(Default)]
pub(crate) struct Serving {
    node: Option<String>,
    epoch: u64,
    /// Nodes that refused an attachment, and when (no member there: this node recovered the
    /// queue without its list of members and tries every other node).
    refused: Vec<(String, Instant)>,
}

fn epoch_of(handle: u64) -> u64 {
    (handle >> EPOCH_SHIFT) & EPOCH_MASK
}

/// Whether `handle` names a serving node's delivery (as opposed to this node's own).
pub(super) fn is_remote(handle: u64) -> bool {
    handle & OWN_HANDLES == 0 && epoch_of(handle) != 0
}

impl QuorumMember {
    /// The member node that serves this node's consumers: the one chosen before while it is
    /// up, else the first member (declared, or known to the cluster) that is up.
    pub(super) fn serving(&self) -> Option<String> {
        self.serving_epoch().map(|(node, _)| node)
    }

    /// [`Self::serving`] and its epoch, which changes with the node.
    fn serving_epoch(&self) -> Option<(String, u64)> {
        let forwarder = Forwarder::of(&self.cluster)?;
        let mut serving = self.serving.lock();
        if let Some(node) = serving.node.as_ref().filter(|n| forwarder.is_up(n)) {
            return Some((node.clone(), serving.epoch));
        }
        let me = self.cluster.name().to_string();
        let up: Vec<String> = self
            .candidates()
            .into_iter()
            .filter(|n| *n != me && forwarder.is_up(n))
            .collect();
        // A refusal counts for a while (a member node may have been starting).
        serving
            .refused
            .retain(|(_, at)| at.elapsed() < REFUSAL_KEPT);
        let next = up
            .into_iter()
            .find(|n| !serving.refused.iter().any(|(r, _)| r == n));
        if next.is_some() {
            serving.epoch = serving.epoch % EPOCH_MASK + 1;
        }
        serving.node.clone_from(&next);
        next.map(|n| (n, serving.epoch))
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

    /// Attaches this node's consumer `key` at the serving node; cancels it if no member is up.
    pub(super) fn outsider_attach(&self, key: u64) {
        let (Some(forwarder), Some(queue)) = (Forwarder::of(&self.cluster), self.queue.upgrade())
        else {
            return;
        };
        let serving = self.serving_epoch();
        let entry = {
            let mut books = self.books.lock();
            let Some(local) = books.consumers.get_mut(&key) else {
                return;
            };
            local.attached = true;
            // What an earlier attachment sent and the consumer has not seen: the group took it
            // back when that node went down.
            let epoch = serving.as_ref().map_or(0, |s| s.1);
            local
                .waiting
                .retain(|m| !is_remote(m.seq) || epoch_of(m.seq) == epoch);
            local.entry.clone()
        };
        let Some((node, epoch)) = serving else {
            tracing::warn!(queue = %self.name, vhost = %self.vhost, "quorum queue: no member is up to serve a consumer of this node; cancelled");
            entry.sink.cancelled();
            queue.remove_consumer(entry.owner, &entry.tag);
            return;
        };
        let member = self.this.clone();
        let sink = Arc::clone(&entry.sink);
        let consumer = LocalConsumer {
            proxy: Arc::clone(&queue),
            home: node,
            owner: entry.owner,
            tag: entry.tag.to_string(),
            deliver: Box::new(move |_, message| {
                member
                    .upgrade()
                    .is_some_and(|m| m.outsider_deliver(key, epoch, message))
            }),
            cancelled: Box::new(move || sink.cancelled()),
        };
        // Acknowledged always: a no-ack consumer's deliveries are acked here as they are sent
        // (`drain`), so the serving node's window is the consumer's prefetch either way.
        forwarder.attach_consumer(consumer, &entry, entry.sink.prefetch(), false);
    }

    /// A delivery of the serving node (attachment `epoch`) to consumer `key`: waits in its
    /// books until it has room. False if the attachment is an old one or the consumer is
    /// gone (the serving node gives the message back).
    fn outsider_deliver(&self, key: u64, epoch: u64, mut message: QueuedMessage) -> bool {
        if self.serving.lock().epoch != epoch {
            return false;
        }
        message.seq |= epoch << EPOCH_SHIFT;
        {
            let mut books = self.books.lock();
            match books.consumers.get_mut(&key) {
                Some(local) => local.waiting.push_back(message),
                None => return false,
            }
        }
        if let Some(queue) = self.queue.upgrade() {
            self.drain(&queue);
        }
        true
    }

    /// The consumer `tag` of `owner` was removed here: cancelled at the serving node.
    pub(super) fn outsider_cancel(&self, owner: u64, tag: &str) {
        let (Some(forwarder), Some(queue)) = (Forwarder::of(&self.cluster), self.queue.upgrade())
        else {
            return;
        };
        forwarder.cancel_consumer(&queue, owner, tag);
    }

    /// Sends the settlements of the serving node's deliveries back to it (those of an earlier
    /// attachment are dropped: the group returned them); returns this node's own handles
    /// (all of them on a member node, without allocating).
    pub(super) fn settle_remote<'a>(&self, seqs: &'a [u64], outcome: Outcome) -> Cow<'a, [u64]> {
        if !seqs.iter().any(|s| is_remote(*s)) {
            return Cow::Borrowed(seqs);
        }
        let (theirs, own): (Vec<u64>, Vec<u64>) = seqs.iter().partition(|s| is_remote(**s));
        let (node, epoch) = {
            let serving = self.serving.lock();
            (serving.node.clone(), serving.epoch)
        };
        let theirs: Vec<u64> = theirs
            .into_iter()
            .filter(|s| epoch_of(*s) == epoch)
            .map(|s| s & !(EPOCH_MASK << EPOCH_SHIFT))
            .collect();
        if let (Some(node), Some(forwarder), Some(queue)) =
            (node, Forwarder::of(&self.cluster), self.queue.upgrade())
        {
            forwarder.settle_remote(&queue, &node, theirs, outcome);
        }
        Cow::Owned(own)
    }

    /// The serving node went down: this node's attached consumers attach at another member.
    fn reattach(&self) {
        let keys: Vec<u64> = {
            let books = self.books.lock();
            books
                .consumers
                .iter()
                .filter(|(_, c)| c.attached)
                .map(|(k, _)| *k)
                .collect()
        };
        if !keys.is_empty() {
            tracing::info!(queue = %self.name, vhost = %self.vhost, consumers = keys.len(), "quorum queue: serving node lost; consumers attach at another member");
        }
        for key in keys {
            self.outsider_attach(key);
        }
    }

    /// This node is no member of the group any more (`membership.rs`): its consumers are
    /// cancelled in the group (what they hold may still be acked there; what waits here unsent
    /// goes back) and served by a member node from now on.
    pub(super) fn moved_out(&self) {
        let moved: Vec<(u64, Vec<u64>)> = {
            let mut books = self.books.lock();
            books
                .consumers
                .iter_mut()
                .filter(|(_, c)| !c.attached)
                .map(|(k, c)| (*k, c.waiting.drain(..).map(|m| m.seq).collect()))
                .collect()
        };
        for (key, unsent) in moved {
            self.push(QueueOp::Cancel(self.consumer_id(key)), None);
            self.settle_with(&unsent, |consumer, ids| QueueOp::Return { consumer, ids });
            self.outsider_attach(key);
        }
    }
}

/// Whether this node runs a member of `queue`'s group (a consumer of another node may attach
/// here).
pub(crate) fn member_here(cluster: &Cluster, queue: &pigeon_broker::Queue) -> bool {
    super::membership::registry(cluster)
        .and_then(|r| r.member(queue.vhost_name(), queue.name()))
        .is_some_and(|m| !m.is_outsider() && m.local().is_some())
}

/// `node` refused to serve the consumer `tag` of `owner` on `queue` (it has no member): the
/// consumer attaches at another node, and `node` is not asked again.
pub(crate) fn attach_refused(
    cluster: &Cluster,
    queue: &pigeon_broker::Queue,
    node: &str,
    owner: u64,
    tag: &str,
) {
    let member = super::membership::registry(cluster)
        .and_then(|r| r.member(queue.vhost_name(), queue.name()));
    let Some(member) = member else {
        return;
    };
    {
        let mut serving = member.serving.lock();
        tracing::info!(queue = %member.name, %node, "quorum queue: a node without a member refused to serve a consumer; another is asked");
        serving.refused.retain(|(n, _)| n != node);
        serving.refused.push((node.to_string(), Instant::now()));
        if serving.node.as_deref() == Some(node) {
            serving.node = None;
        }
    }
    let key = member
        .books
        .lock()
        .consumers
        .iter()
        .find(|(_, c)| c.entry.owner == owner && &*c.entry.tag == tag)
        .map(|(k, _)| *k);
    if let Some(key) = key {
        member.outsider_attach(key);
    }
}

/// The node serving `queue`'s consumers here is down (`remote_consumer.rs`): they attach at
/// another member.
pub(crate) fn serving_lost(cluster: &Cluster, queue: &pigeon_broker::Queue) {
    let member = super::membership::registry(cluster)
        .and_then(|r| r.member(queue.vhost_name(), queue.name()));
    if let Some(member) = member {
        member.reattach();
    }
}
