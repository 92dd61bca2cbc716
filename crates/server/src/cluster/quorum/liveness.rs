//! Node loss, as quorum queues need it: a node that stops answering on the cluster link is
//! reported to every quorum queue here as `NodeDown`, which returns to the queue what that
//! node's consumers held (redelivered, with a delivery count one higher), as RabbitMQ's
//! quorum queues do on a `nodedown`.
//!
//! A simple probe of our own (a `Hello` to each member every second, down after two missed
//! in a row), kept in this file until the cluster crate's node-level liveness exists. A node
//! that was only slow gets its consumers' messages redelivered elsewhere while it may still
//! process them: at-least-once, as in RabbitMQ after a partition.

use super::QuorumRegistry;
use pigeon_cluster::quorum::QueueOp;
use pigeon_cluster::{node_id, Cluster};
use std::collections::{HashMap, HashSet};
use std::sync::Weak;
use std::time::Duration;

const EVERY: Duration = Duration::from_secs(1);
const PROBE: Duration = Duration::from_millis(500);
const MISSES: u32 = 2;

pub(super) fn spawn(registry: Weak<QuorumRegistry>, cluster: Cluster) {
    tokio::spawn(async move {
        let mut misses: HashMap<String, u32> = HashMap::new();
        let mut reported: HashSet<String> = HashSet::new();
        loop {
            tokio::time::sleep(EVERY).await;
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let me = cluster.name().to_string();
            for m in cluster.status().members {
                if m.name == me {
                    continue;
                }
                if cluster.probe(&m.addr, PROBE).await {
                    misses.remove(&m.name);
                    if reported.remove(&m.name) {
                        registry.down.lock().remove(&m.name);
                    }
                    continue;
                }
                let n = misses.entry(m.name.clone()).or_insert(0);
                *n += 1;
                if *n >= MISSES && reported.insert(m.name.clone()) {
                    tracing::warn!(node = %m.name, "cluster: node does not answer; its quorum queue consumers are down");
                    registry.down.lock().insert(m.name.clone());
                    let down = node_id(&m.name);
                    for member in registry.all() {
                        member.push(QueueOp::NodeDown(down), None);
                    }
                }
            }
        }
    });
}
