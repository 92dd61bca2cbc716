//! A share group moving to another owner (issue 13 item 5, docs/clustering.md "MQTT in a
//! cluster", "Shared subscriptions"): the group's queue lives on one node (`mqtt_shared.rs`);
//! when node liveness reports that node down, the group moves to the rendezvous winner among
//! the nodes that are up, which makes the queue, and the members on the other nodes attach
//! there.
//!
//! - **Owner down.** Every node that knows the group (it has a proxy of it) reacts to
//!   liveness's `Down` of the owner alike: the new owner is the live member with the highest
//!   rendezvous hash, computed from liveness's states (the same answer on every node that sees
//!   the same nodes up). The new owner replaces its proxy with the queue; every other node
//!   replaces its proxy with one of the new owner's, asks the new owner to make the queue (its
//!   `SharedGroup`, before the members' `Attach`, in the same batches) and attaches its members
//!   there. What the old owner held is lost with it (the queue is not durable, as on one node).
//! - **Claims.** A node told of another owner than the one it knows (a `SharedGroup` naming
//!   another node) settles it with one rule, the same on every node: an owner that is down
//!   loses; between two that are up, the higher rendezvous hash wins. The node moves to the
//!   winner if that is not its owner, and, when it is itself the winner, tells the sender.
//! - **Members that attached too early** (at a node that did not make the queue yet, which
//!   refuses their `Attach`) attach again when the new owner announces the queue it made
//!   (`SharedGroup::created`).
//! - **The old owner back.** A restarted owner has no queue: the others' Sync tells it the
//!   group's owner, and it keeps a proxy (the group does not move back). An owner that was only
//!   cut off still has its queue: the claims meet at the Sync and the higher hash wins (the
//!   old owner, which was the winner among all nodes); the loser hands the messages ready in
//!   its queue to the winner (forwarded as publishes, in order) and its members attach there.
//!   What a member held unacknowledged at the loser when it moved is acknowledged there if the
//!   member acknowledges it, and lost if it gives it back (the loser's queue is gone).

use super::forward::{Forwarded, Forwarder, Item, Then};
use super::mqtt::MqttItem;
use super::mqtt_shared::{fnv, group_options, SharedGroup};
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{Queue, VHost};
use pigeon_cluster::NodeState;
use std::sync::Arc;
use std::time::Duration;

/// How often a node waits for a peer it lost to answer again (`shared_peer_lost`).
const REJOIN_POLL: Duration = Duration::from_millis(250);

/// A node's rank for a group: its rendezvous hash, then its name.
pub(super) fn rank(node: &str, vhost: &str, queue: &str) -> (u64, String) {
    (fnv(&[node, vhost, queue]), node.to_string())
}

impl Forwarder {
    /// Whether liveness reports `node` up (this node always is). Liveness's view, not the
    /// forwarder's (which also marks a node down for a batch that failed, as when its link is
    /// still being set up while the cluster forms): nodes that disagree on the owner would
    /// otherwise keep disagreeing.
    pub(super) fn live(&self, node: &str) -> bool {
        if node == self.me() {
            return true;
        }
        self.cluster()
            .is_some_and(|c| c.node_states().get(node) != Some(&NodeState::Down))
    }

    /// The group's owner among the members liveness reports up.
    pub(super) fn live_owner(&self, vhost: &str, queue: &str) -> String {
        self.members()
            .into_iter()
            .filter(|n| self.live(n))
            .max_by_key(|n| rank(n, vhost, queue))
            .unwrap_or_else(|| self.me().to_string())
    }

    /// Liveness reports `node` down: the groups it owned move to the new rendezvous winner.
    pub(crate) fn shared_node_down(&self, node: &str) {
        let owned_there: Vec<(Arc<Queue>, SharedGroup)> = self
            .mqtt
            .shared
            .groups
            .lock()
            .values()
            .filter(|(q, _)| q.remote().is_some_and(|h| h.node() == node))
            .cloned()
            .collect();
        for (q, g) in owned_there {
            let owner = self.live_owner(&g.vhost, &g.queue);
            if owner == node {
                // Liveness says it is up again already.
                continue;
            }
            tracing::info!(queue = %g.queue, from = %node, to = %owner, "cluster: a shared subscription group moves to another owner, its owner is down");
            self.shared_move(&q, SharedGroup { owner, ..g });
        }
    }

    /// This node found `node` down or unreachable and is about to drop the remote consumers
    /// between them (`remote_consumer.rs`' `node_down`): its members here of groups `node`
    /// owns are cancelled, and `node`'s members of the groups owned here removed (a group
    /// whose only members were there is deleted). Without a change of liveness (a failed
    /// batch alone) no Sync follows, so once `node` answers again the members here attach
    /// again, and a group owned here is made again if it went and `node` is told to attach
    /// its members again. A group that moved meanwhile is left alone; a loss that liveness
    /// reports (`Down`) is left to the Sync at the node's return.
    pub(crate) fn shared_peer_lost(&self, node: &str) {
        let watched: Vec<(Arc<Queue>, SharedGroup)> = self
            .mqtt
            .shared
            .groups
            .lock()
            .values()
            .filter(|(q, _)| q.remote().is_none_or(|h| h.node() == node))
            .cloned()
            .collect();
        if watched.is_empty() {
            return;
        }
        let weak = self.this.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REJOIN_POLL).await;
                let Some(f) = weak.upgrade() else { return };
                let reported = f
                    .cluster()
                    .is_some_and(|c| c.node_states().get(&node) == Some(&NodeState::Down));
                if reported {
                    // Liveness's: its return brings a Sync, which attaches the members again
                    // (and the move, if it owned groups).
                    return;
                }
                if f.is_up(&node) {
                    f.shared_peer_back(&node, watched);
                    return;
                }
            }
        });
    }

    /// `node` answers again after [`Self::shared_peer_lost`]: see there.
    fn shared_peer_back(&self, node: &str, watched: Vec<(Arc<Queue>, SharedGroup)>) {
        let mut theirs = Vec::new();
        for (q, g) in watched {
            let Some(v) = self.broker.vhost(&g.vhost) else {
                continue;
            };
            let current = v.queue(&g.queue).ok();
            if q.remote().is_some() {
                // Owned there: it makes the queue again if it went, then ours attach.
                if current.is_some_and(|c| Arc::ptr_eq(&c, &q)) {
                    self.push(node, Item::Mqtt(MqttItem::SharedGroup(g)), Then::Nothing);
                    theirs.push(q);
                }
                continue;
            }
            match current {
                Some(c) if c.remote().is_some() => continue, // moved away meanwhile
                Some(_) => {}
                None => {
                    // Deleted when `node`'s members were dropped: made again for them.
                    if !self.shared_group_item(self.me(), g.clone()) {
                        continue;
                    }
                }
            }
            let g = SharedGroup { created: true, ..g };
            self.push(node, Item::Mqtt(MqttItem::SharedGroup(g)), Then::Nothing);
        }
        if let Some(server) = self.mqtt_server() {
            crate::mqtt::cluster_shared::reattach(&server, &theirs);
        }
    }

    /// A peer's `SharedGroup` names `g.owner` while this node knows `q` held by `holder`:
    /// the claim rule (see the module's comment).
    pub(super) fn shared_claim(&self, from: &str, q: &Arc<Queue>, holder: &str, g: SharedGroup) {
        let (holder_live, claimed_live) = (self.live(holder), self.live(&g.owner));
        let winner = match (holder_live, claimed_live) {
            (true, true) => [holder.to_string(), g.owner.clone()]
                .into_iter()
                .max_by_key(|n| rank(n, &g.vhost, &g.queue))
                .unwrap_or_else(|| holder.to_string()),
            (false, true) => g.owner.clone(),
            _ => holder.to_string(),
        };
        tracing::debug!(queue = %g.queue, %from, %holder, claimed = %g.owner, %winner, "cluster: a shared subscription group's owner claimed");
        if winner != holder {
            tracing::info!(queue = %g.queue, from = %holder, to = %winner, "cluster: a shared subscription group moves to the owner another node names");
            self.shared_move(
                q,
                SharedGroup {
                    owner: winner.clone(),
                    ..g.clone()
                },
            );
        }
        // Both up here, decided by the hash: the sender, if it sees them up too, decides alike
        // when told. (Not when decided by liveness: two nodes whose views differ would send
        // each other their claims until liveness agrees.)
        if holder_live && claimed_live && winner != g.owner && from != self.me() && self.live(from)
        {
            let mine = SharedGroup {
                owner: winner,
                created: false,
                ..g
            };
            self.push(from, Item::Mqtt(MqttItem::SharedGroup(mine)), Then::Nothing);
        }
    }

    /// Moves the group known here as `old` (a proxy, or this node's queue) to `g.owner`.
    fn shared_move(&self, old: &Arc<Queue>, g: SharedGroup) {
        let Some(v) = self.broker.vhost(&g.vhost) else {
            return;
        };
        // This node's queue: what is ready in it goes to the new owner.
        let mut handed = Vec::new();
        if old.remote().is_none() {
            while let Some((m, _)) = old.get(true) {
                handed.push(m.message);
            }
        }
        self.mqtt
            .shared
            .groups
            .lock()
            .remove(&(g.vhost.clone(), g.queue.clone()));
        let server = self.mqtt_server();
        let members = server
            .as_ref()
            .map(|s| crate::mqtt::cluster_shared::detach_members(s, old))
            .unwrap_or_default();
        v.remove_queue(old);
        let Some(new) = self.shared_queue_for(&v, &g) else {
            return;
        };
        if g.owner != self.me() {
            for m in handed {
                let record = MessageRecordRef::in_queue(&m, &g.queue, 0)
                    .encode()
                    .to_vec();
                let item = Item::Publish(Forwarded {
                    vhost: g.vhost.clone(),
                    queue: g.queue.clone(),
                    record,
                });
                self.push(&g.owner, item, Then::Nothing);
            }
        }
        if let Some(s) = &server {
            crate::mqtt::cluster_shared::adopt_members(s, &members, &new);
        }
        // Everyone else learns the new owner (a node that made the queue: its members there
        // attach again if theirs were refused).
        let announced = SharedGroup {
            created: g.owner == self.me(),
            ..g.clone()
        };
        for node in self.up_peers().into_iter().filter(|n| *n != g.owner) {
            let item = Item::Mqtt(MqttItem::SharedGroup(announced.clone()));
            self.push(&node, item, Then::Nothing);
        }
    }

    /// The group's queue here after a move: the queue itself on its owner, a proxy of the
    /// owner's elsewhere (the owner asked to make it, ahead of the members' `Attach`).
    fn shared_queue_for(&self, v: &VHost, g: &SharedGroup) -> Option<Arc<Queue>> {
        if g.owner != self.me() {
            let proxy = self.shared_proxy(v, g)?;
            let ask = SharedGroup {
                created: false,
                ..g.clone()
            };
            self.push(
                &g.owner,
                Item::Mqtt(MqttItem::SharedGroup(ask)),
                Then::Nothing,
            );
            return Some(proxy);
        }
        match v.declare_queue(&g.queue, false, group_options(g.max_length), 0) {
            Ok(d) => {
                self.shared_bind(v, &d.queue, g);
                Some(d.queue)
            }
            Err(e) => {
                tracing::warn!(queue = %g.queue, "cluster: cannot make a shared subscription group's queue: {e}");
                None
            }
        }
    }
}
