//! Node loss, as quorum queues need it: a node that stops answering on the cluster link is
//! reported to every quorum queue here as `NodeDown`, which returns to the queue what that
//! node's consumers held (redelivered, with a delivery count one higher), as RabbitMQ's
//! quorum queues do on a `nodedown`.
//!
//! The cluster crate's node liveness decides (`Cluster::node_events`: one ping per pair of
//! nodes, docs/clustering.md "Node liveness"); this only turns its events into queue commands
//! and keeps the set of down nodes that `online` in `/api/queues` leaves out. A node that
//! restarted (`Restarted`) reports its own consumers' loss when its members start again
//! (`member.rs`), so it is only taken as up here. A node that was only slow gets its
//! consumers' messages redelivered elsewhere while it may still process them: at-least-once,
//! as in RabbitMQ after a partition.
//!
//! **Back after being found down** (paused, partitioned, too slow to answer): the others'
//! `NodeDown` removed this node's consumers from the group, though they are still subscribed
//! here. RabbitMQ's rabbit_fifo.erl keeps such consumers, marked `suspected_down`, when it
//! applies `{down, Pid, noconnection}`, and marks them `up` again when it applies
//! `{nodeup, Node}`. Here each node looks every [`REJOIN_EVERY`] at its own replica: a consumer
//! of this node that the group held once and holds no more checks out again under a new key
//! ([`QuorumMember::rejoin_consumers`]), so that an ack of what the old one was given (the
//! group returned it) cannot settle a new delivery with the same delivery id.

use super::member::QuorumMember;
use super::QuorumRegistry;
use pigeon_cluster::net::{NodeEventKind, NodeState};
use pigeon_cluster::quorum::{ConsumerId, QueueOp};
use pigeon_cluster::Cluster;
use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often a node looks for its consumers that the group dropped.
const REJOIN_EVERY: Duration = Duration::from_secs(1);

pub(super) fn spawn(registry: Weak<QuorumRegistry>, cluster: Cluster) {
    let rejoin = registry.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(REJOIN_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let Some(registry) = rejoin.upgrade() else {
                return;
            };
            for member in registry.all() {
                member.rejoin_consumers();
            }
        }
    });
    let mut events = cluster.node_events();
    // The nodes already down when the registry starts.
    if let Some(registry) = registry.upgrade() {
        let mut down = registry.down.lock();
        for (name, state) in cluster.node_states() {
            if state == NodeState::Down {
                down.insert(name);
            }
        }
    }
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => {
                    // Missed events: take the states as they are now.
                    let Some(registry) = registry.upgrade() else {
                        return;
                    };
                    let mut down = registry.down.lock();
                    down.clear();
                    for (name, state) in cluster.node_states() {
                        if state == NodeState::Down {
                            down.insert(name);
                        }
                    }
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            let Some(registry) = registry.upgrade() else {
                return;
            };
            match event.kind {
                NodeEventKind::Down => {
                    if registry.down.lock().insert(event.name.clone()) {
                        tracing::warn!(node = %event.name, "cluster: node is down; its quorum queue consumers are down");
                        for member in registry.all() {
                            member.push(QueueOp::NodeDown(event.id), None);
                        }
                    }
                }
                NodeEventKind::Up | NodeEventKind::Restarted => {
                    registry.down.lock().remove(&event.name);
                }
            }
        }
    });
}

impl QuorumMember {
    /// This node's consumers that its replica of the group held and holds no more (a
    /// `NodeDown` of this node, decided by the others while it was paused or cut off) check
    /// out again, each under a new key; what waited for them unsent was returned by the group.
    pub(super) fn rejoin_consumers(&self) {
        let Some(qq) = self.local() else {
            return;
        };
        if self.is_outsider() || self.books.lock().consumers.is_empty() {
            return;
        }
        let held: HashSet<ConsumerId> = qq
            .machine()
            .read(|m| m.consumers().into_iter().map(|(id, _)| id).collect());
        let mut books = self.books.lock();
        let mut dropped = Vec::new();
        for (key, local) in books.consumers.iter_mut() {
            if local.attached {
                continue;
            }
            if held.contains(&self.consumer_id(*key)) {
                local.seen = true;
            } else if local.seen {
                dropped.push(*key);
            }
        }
        for key in dropped {
            let Some(mut local) = books.consumers.remove(&key) else {
                continue;
            };
            for m in local.waiting.drain(..) {
                books.outstanding.remove(&m.seq);
            }
            local.seen = false;
            let fresh = self.fresh_key_in(&mut books);
            let prefetch = local.entry.sink.prefetch();
            let priority = local.entry.priority;
            tracing::info!(queue = %self.name, vhost = %self.vhost, "quorum queue: the group dropped a consumer of this node (found down); it checks out again");
            books.consumers.insert(fresh, local);
            // Under the books' lock: a cancel of the consumer comes after this checkout.
            self.push(
                super::priority::checkout(self.consumer_id(fresh), prefetch, priority),
                None,
            );
        }
    }
}
