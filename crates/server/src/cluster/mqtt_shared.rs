//! MQTT shared subscriptions across the cluster (issue 13 item 5, docs/clustering.md "MQTT in
//! a cluster", "Shared subscriptions"): the node-to-node side. The sessions' side is
//! `mqtt/cluster_shared.rs`.
//!
//! On one node a share group `$share/g/f` is one queue, `mqtt-shared-<g>-<f>`, bound to the
//! MQTT exchange with `f`'s pattern, with one consumer per member session: the queue's
//! round-robin gives each message to one member, and what a member leaves unacknowledged goes
//! back to the queue for the others. In a cluster the group stays **one queue, on one node**
//! (its *owner*), so that those semantics are the single-node code's:
//!
//! - The owner is picked when a node first meets the group (a member subscribes there and no
//!   queue of that name exists): the cluster member that node liveness reports up with the
//!   highest rendezvous hash of the group's vhost and queue name (the same answer on every
//!   node that sees the same members up). From then on the group's queue (or proxy) on a node
//!   says where it is; it moves when its owner is down (`mqtt_shared_move.rs`).
//! - Every other node keeps a *proxy* of it: a non-durable queue of the same name, bound with
//!   the same pattern, whose [`SharedHome`] forwards what routing gives it to the owner (the
//!   per-peer batches of `forward.rs`, as for session queues). So a publish on any node reaches
//!   the group once.
//! - A member on another node is a consumer of its node's proxy, attached at the owner as a
//!   remote consumer (`remote_consumer.rs`, as an AMQP consumer of a classic queue homed
//!   elsewhere), with the MQTT receive maximum as its prefetch: the owner's queue delivers to
//!   local and remote members alike, round-robin; acknowledgements go back by the owner's
//!   sequence numbers, and a member that leaves (or whose node goes down) gives back what it
//!   held, which the queue gives to another member.
//! - A node announces the group ([`SharedGroup`]) to every peer that is up when one of its
//!   sessions joins it (the SUBACK waits, as for a session's own subscriptions), and to a peer
//!   at each Sync; a node that receives it makes its proxy (or, if it is the owner, the queue).
//!   The owner announces it again to everyone whenever it (re)creates the queue. The group's
//!   queue is auto-delete, as on one node: when its last member anywhere leaves, the owner
//!   deletes it and tells the others ([`MqttItem::SharedGone`]), which drop their proxy unless
//!   a member of theirs joined meanwhile (then their announcement recreates the queue).

use super::forward::{Forwarded, Forwarder, Item, Then};
use super::mqtt::MqttItem;
use parking_lot::Mutex;
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{
    Destination, Message, Outcome, Queue, QueueOptions, RemoteConfirm, RemoteHome, Table, VHost,
    Value,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// The prefix of share groups' queues (`mqtt/handlers.rs`).
pub(crate) const PREFIX: &str = "mqtt-shared-";

/// A share group's queue, its binding and its owner (`MqttItem::SharedGroup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SharedGroup {
    pub vhost: String,
    /// `mqtt-shared-<group>-<filter>`.
    pub queue: String,
    /// The MQTT exchange.
    pub exchange: String,
    /// The binding pattern (the filter without `$share/<group>/`).
    pub pattern: String,
    /// The node that holds the queue.
    pub owner: String,
    /// The queue's `x-max-length` (`mqtt_max_queued_messages`).
    pub max_length: u64,
    /// Sent by the owner, which has just made the queue (after a move): the receiver's
    /// members attach again (an `Attach` that came before the queue was refused;
    /// `mqtt_shared_move.rs`).
    pub created: bool,
}

/// A group's queue (or proxy) here and what was announced of it.
type Known = (Arc<Queue>, SharedGroup);

/// The groups this node knows, by (vhost, queue): those it owns and those it has a proxy of.
#[derive(Default)]
pub(crate) struct Shared {
    pub(super) groups: Mutex<HashMap<(String, String), Known>>,
}

/// The proxy of a share group's queue owned by another node.
struct SharedHome {
    node: String,
    vhost: String,
    queue: String,
    forwarder: Weak<Forwarder>,
}

impl RemoteHome for SharedHome {
    fn node(&self) -> &str {
        &self.node
    }

    fn available(&self) -> bool {
        self.forwarder
            .upgrade()
            .is_some_and(|f| f.is_up(&self.node))
    }

    fn forward(&self, _queue: &Arc<Queue>, message: Message, confirm: Option<Arc<RemoteConfirm>>) {
        // The group's queue is not durable: a publish to it is acknowledged at once, as on one
        // node; while its owner is down the message is lost for the group (as with the owner).
        if let Some(c) = confirm {
            c.settle(true);
        }
        let Some(f) = self.forwarder.upgrade().filter(|f| f.is_up(&self.node)) else {
            return;
        };
        let record = MessageRecordRef::in_queue(&message, &self.queue, 0)
            .encode()
            .to_vec();
        let item = Item::Publish(Forwarded {
            vhost: self.vhost.clone(),
            queue: self.queue.clone(),
            record,
        });
        f.push(&self.node, item, Then::Nothing);
    }

    fn settle(&self, queue: &Arc<Queue>, seqs: Vec<u64>, outcome: Outcome) {
        if let Some(f) = self.forwarder.upgrade() {
            f.settle_remote(queue, &self.node, seqs, outcome);
        }
    }

    fn cancel(&self, queue: &Arc<Queue>, owner: u64, tag: &str) {
        if let Some(f) = self.forwarder.upgrade() {
            f.cancel_consumer(queue, owner, tag);
        }
    }
}

/// FNV-1a: a hash that every node computes alike (std's hasher promises no such thing).
pub(super) fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The group's queue options: auto-delete with the session queues' length limit, as on one
/// node (`mqtt/handlers.rs`).
pub(super) fn group_options(max_length: u64) -> QueueOptions {
    QueueOptions {
        auto_delete: true,
        arguments: Table(vec![(
            "x-max-length".to_string(),
            Value::Int(i64::try_from(max_length).unwrap_or(i64::MAX)),
        )]),
        ..QueueOptions::default()
    }
}

impl Forwarder {
    /// The owner of a new group: the member liveness reports up with the highest rendezvous
    /// hash (`mqtt_shared_move.rs`' `live_owner`).
    fn shared_owner(&self, vhost: &str, queue: &str) -> String {
        self.live_owner(vhost, queue)
    }

    /// The queue a session here joining the group `g` (owner not yet decided) consumes from:
    /// `None` when it is this node's own queue (made and bound by the single-node code), the
    /// proxy of the owner's otherwise. The owner is asked to make sure the queue exists
    /// (before the member's attachment, in the same batches).
    pub(crate) fn shared_join(&self, v: &VHost, g: SharedGroup) -> Option<Arc<Queue>> {
        let existing = v.queue(&g.queue).ok();
        let owner = match &existing {
            Some(q) => q.remote()?.node().to_string(),
            None => self.shared_owner(&g.vhost, &g.queue),
        };
        if owner == self.me() {
            return None;
        }
        let g = SharedGroup { owner, ..g };
        let proxy = match existing {
            Some(q) => q,
            None => self.shared_proxy(v, &g)?,
        };
        self.push(
            &g.owner,
            Item::Mqtt(MqttItem::SharedGroup(g.clone())),
            Then::Nothing,
        );
        Some(proxy)
    }

    /// Makes (or finds) the proxy of `g`'s queue, bound.
    pub(super) fn shared_proxy(&self, v: &VHost, g: &SharedGroup) -> Option<Arc<Queue>> {
        let q = match v.queue(&g.queue) {
            Ok(q) => q,
            Err(_) => {
                let options = QueueOptions::default();
                let q = match v.declare_queue(&g.queue, false, options, 0) {
                    Ok(d) => d.queue,
                    Err(e) => {
                        tracing::warn!(queue = %g.queue, "cluster: cannot make the proxy of a shared subscription group: {e}");
                        return None;
                    }
                };
                if q.remote().is_none() {
                    q.set_remote(Arc::new(SharedHome {
                        node: g.owner.clone(),
                        vhost: g.vhost.clone(),
                        queue: g.queue.clone(),
                        forwarder: self.this.clone(),
                    }));
                }
                q
            }
        };
        self.shared_bind(v, &q, g);
        Some(q)
    }

    pub(super) fn shared_bind(&self, v: &VHost, q: &Arc<Queue>, g: &SharedGroup) {
        let dest = Destination::Queue(Arc::clone(q));
        if let Err(e) = v.bind(&g.exchange, dest, &g.pattern, Table::new()) {
            tracing::warn!(error = %e, "cluster: cannot bind a shared subscription group");
        }
        let known = SharedGroup {
            created: false,
            ..g.clone()
        };
        self.mqtt
            .shared
            .groups
            .lock()
            .insert((g.vhost.clone(), g.queue.clone()), (Arc::clone(q), known));
    }

    /// Tells every peer that is up of `g` (a session here joined it). `Some`: done once each
    /// has its proxy (a SUBACK waits for it).
    pub(crate) fn shared_announce(&self, v: &VHost, g: SharedGroup) -> Option<Arc<RemoteConfirm>> {
        if let Ok(q) = v.queue(&g.queue) {
            self.mqtt
                .shared
                .groups
                .lock()
                .insert((g.vhost.clone(), g.queue.clone()), (q, g.clone()));
        }
        let peers = self.up_peers();
        if peers.is_empty() {
            return None;
        }
        let done = Arc::new(RemoteConfirm::default());
        for node in peers {
            done.add();
            let item = Item::Mqtt(MqttItem::SharedGroup(g.clone()));
            self.push(&node, item, Then::Confirm(Some(Arc::clone(&done))));
        }
        Some(done)
    }

    /// A peer's announcement of a group: this node makes its proxy, or, as the owner, the
    /// queue (and then tells every other peer, so that a group recreated after its deletion
    /// or moved here is routed to from everywhere again). An announcement naming another owner
    /// than the one known here is a claim (`mqtt_shared_move.rs`).
    pub(crate) fn shared_group_item(&self, from: &str, g: SharedGroup) -> bool {
        let Some(v) = self.broker.vhost(&g.vhost) else {
            return false;
        };
        let existing = v.queue(&g.queue).ok();
        match existing {
            Some(q) => {
                let holder = q.remote().map_or(self.me(), |h| h.node()).to_string();
                if holder != g.owner {
                    self.shared_claim(from, &q, &holder, g);
                    return true;
                }
                let created = g.created && from == holder && holder != self.me();
                self.shared_bind(&v, &q, &g);
                if created {
                    // The owner made the queue after a move: the members here attach again.
                    if let Some(server) = self.mqtt_server() {
                        crate::mqtt::cluster_shared::reattach(&server, &[q]);
                    }
                }
            }
            None => {
                // A group whose owner is down here is placed among the nodes that are up.
                let owner = if self.live(&g.owner) {
                    g.owner.clone()
                } else {
                    self.live_owner(&g.vhost, &g.queue)
                };
                let g = SharedGroup { owner, ..g };
                if g.owner != self.me() {
                    return self.shared_proxy(&v, &g).is_some();
                }
                let q = match v.declare_queue(&g.queue, false, group_options(g.max_length), 0) {
                    Ok(d) => d.queue,
                    Err(e) => {
                        tracing::warn!(queue = %g.queue, "cluster: cannot make a shared subscription group's queue: {e}");
                        return false;
                    }
                };
                self.shared_bind(&v, &q, &g);
                let created = SharedGroup { created: true, ..g };
                for node in self.up_peers().into_iter().filter(|n| n != from) {
                    let item = Item::Mqtt(MqttItem::SharedGroup(created.clone()));
                    self.push(&node, item, Then::Nothing);
                }
            }
        }
        true
    }

    /// The owner deleted a group (its last member left): the proxy goes, unless a member here
    /// uses it (it joined meanwhile: its announcement makes the owner recreate the queue).
    pub(crate) fn shared_gone_item(&self, from: &str, vhost: &str, queue: &str) -> bool {
        let Some(v) = self.broker.vhost(vhost) else {
            return true;
        };
        let Ok(q) = v.queue(queue) else {
            return true;
        };
        let proxy_of_sender = q.remote().is_some_and(|h| h.node() == from);
        if proxy_of_sender && q.consumer_count() == 0 {
            v.remove_queue(&q);
            self.mqtt
                .shared
                .groups
                .lock()
                .remove(&(vhost.to_string(), queue.to_string()));
        }
        true
    }

    /// The groups owned here whose queue is gone (auto-deleted when their last member left)
    /// are announced gone to every peer that is up.
    pub(crate) fn shared_sweep(&self) {
        let gone: Vec<(String, String)> = {
            let mut groups = self.mqtt.shared.groups.lock();
            let keys: Vec<(String, String)> = groups
                .iter()
                .filter(|((vhost, name), (q, _))| {
                    let current = self.broker.vhost(vhost).and_then(|v| v.queue(name).ok());
                    !current.is_some_and(|c| Arc::ptr_eq(&c, q))
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter(|k| groups.remove(k).is_some_and(|(q, _)| q.remote().is_none()))
                .collect()
        };
        if gone.is_empty() {
            return;
        }
        let peers = self.up_peers();
        for (vhost, queue) in gone {
            for node in &peers {
                let item = Item::Mqtt(MqttItem::SharedGone {
                    vhost: vhost.clone(),
                    queue: queue.clone(),
                });
                self.push(node, item, Then::Nothing);
            }
        }
    }

    /// A consumer of `queue` on another node was removed here and it was the queue's last:
    /// a share group's queue is auto-deleted, as when its last local member leaves.
    pub(crate) fn shared_last_consumer_left(&self, queue: &Arc<Queue>) {
        if !queue.name().starts_with(PREFIX) || queue.options().durable {
            return;
        }
        tracing::info!(
            queue = queue.name(),
            "cluster: a shared subscription group's last member left: its queue is deleted"
        );
        if let Some(v) = self.broker.vhost(queue.vhost_name()) {
            v.remove_queue(queue);
        }
        self.shared_sweep();
    }

    /// Sends `node` every group this node knows (after a Sync); the proxies of groups it owns
    /// are returned, for their members here to attach again (it may have restarted).
    pub(crate) fn shared_sync_to(&self, node: &str) -> Vec<Arc<Queue>> {
        let groups: Vec<Known> = self.mqtt.shared.groups.lock().values().cloned().collect();
        let mut owned_there = Vec::new();
        for (q, g) in groups {
            if q.remote().is_some_and(|h| h.node() == node) {
                owned_there.push(Arc::clone(&q));
            }
            self.push(node, Item::Mqtt(MqttItem::SharedGroup(g)), Then::Nothing);
        }
        owned_there
    }
}

#[cfg(test)]
mod tests {
    use super::fnv;

    #[test]
    fn the_rendezvous_hash_is_stable_and_separates_its_parts() {
        assert_eq!(fnv(&["a", "b"]), fnv(&["a", "b"]));
        assert_ne!(fnv(&["ab", ""]), fnv(&["a", "b"]));
    }
}
