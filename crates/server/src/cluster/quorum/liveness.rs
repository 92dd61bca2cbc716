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

use super::QuorumRegistry;
use pigeon_cluster::net::{NodeEventKind, NodeState};
use pigeon_cluster::quorum::QueueOp;
use pigeon_cluster::Cluster;
use std::sync::Weak;
use tokio::sync::broadcast::error::RecvError;

pub(super) fn spawn(registry: Weak<QuorumRegistry>, cluster: Cluster) {
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
