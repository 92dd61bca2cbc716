//! `x-expires` (and the policy's `expires`) on quorum queues (helper quorumrest): a queue
//! unused for that long is deleted, once, for the whole cluster.
//!
//! As RabbitMQ's quorum queues do it (deps/rabbit/src/rabbit_fifo.erl `tick/2` and
//! `is_expired/2`, rabbit_quorum_queue `spawn_deleter/1`): the group's state machine keeps the
//! queue's last activity (a consumer attached or leaving, a `basic.get`, a redeclare: cluster
//! crate, `quorum/extras.rs`), the same on every member; the member that leads the group looks
//! at it on a timer (RabbitMQ's tick, every 5 s there, every second here) and, when no consumer
//! is attached and the last activity is older than the queue's `expires`, deletes the queue:
//!
//! - **in a cluster** through the metadata group (`MetaCommand::DeleteQueue`, as a client's
//!   `queue.delete`), so that every node drops it once the deletion commits, in the same order
//!   as every other change; a node cut off from the majority deletes nothing;
//! - **on a node without `[cluster]`** through the broker, as a client's `queue.delete` there.
//!
//! Only the leader decides: a follower's replica may lag, and two deciders would delete twice
//! (harmless, the second deletion finds nothing, but noisy). A member that has just become
//! leader, or a queue it has just seen, counts from that moment at the earliest (`since`): a
//! group with no command yet has no last activity, and a new leader never deletes earlier than
//! the queue's `expires` after it took over. As in RabbitMQ, a consumer attaching between the
//! decision and the deletion's commit does not stop it (the consumer is then cancelled).

use super::{QuorumMember, QuorumRegistry};
use pigeon_cluster::{Cluster, MetaCommand};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the leaders look (RabbitMQ's quorum queue tick is 5 s).
const EVERY: Duration = Duration::from_secs(1);

/// How an expired queue is deleted.
#[derive(Clone)]
pub(crate) enum Deleter {
    /// Through the cluster's metadata group.
    Cluster(Cluster),
    /// Through the broker: a node without `[cluster]`, whose metadata is its own.
    Local,
}

type Key = (String, String);

/// Starts the node's expiry timer for the queues of `registry`; it ends with the registry.
pub(crate) fn spawn(registry: &Arc<QuorumRegistry>, deleter: Deleter) {
    let weak = Arc::downgrade(registry);
    registry.runtime.spawn(run(weak, deleter));
}

async fn run(registry: Weak<QuorumRegistry>, deleter: Deleter) {
    // Per queue led here with an `expires`: since when (ms since the epoch) it has been
    // watched here.
    let mut watched: HashMap<Key, u64> = HashMap::new();
    let deleting: Arc<parking_lot::Mutex<HashSet<Key>>> = Arc::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let now = now_ms();
        let mut seen = HashSet::new();
        for member in registry.all() {
            let Some(expires) = expires(&registry, &member) else {
                continue;
            };
            let key = (member.vhost.clone(), member.name.clone());
            let Some(unused) = leader_sees_unused(&member, expires, now, &mut watched, &key) else {
                continue;
            };
            seen.insert(key.clone());
            if unused && deleting.lock().insert(key.clone()) {
                delete(&registry, &deleter, key, Arc::clone(&deleting));
            }
        }
        watched.retain(|k, _| seen.contains(k));
    }
}

/// The queue's effective `expires` (argument or policy), if it has one and is still the
/// broker's (a queue deleted on a node without `[cluster]` leaves its member in the registry).
fn expires(registry: &QuorumRegistry, member: &QuorumMember) -> Option<u64> {
    let queue = member.queue_arc()?;
    let current = registry
        .broker
        .vhost(&member.vhost)?
        .queue(&member.name)
        .ok()?;
    if !Arc::ptr_eq(&queue, &current) {
        return None;
    }
    queue.settings().expires
}

/// `None` if this node does not lead the group; else whether the queue has been unused for
/// `expires` ms by the group's state, and for that long since this node watches it.
fn leader_sees_unused(
    member: &QuorumMember,
    expires: u64,
    now: u64,
    watched: &mut HashMap<Key, u64>,
    key: &Key,
) -> Option<bool> {
    let local = member.local()?;
    if !local.is_leader() {
        watched.remove(key);
        return None;
    }
    let since = *watched.entry(key.clone()).or_insert(now);
    Some(local.machine().read(|m| m.unused_for(expires, now, since)))
}

fn delete(
    registry: &Arc<QuorumRegistry>,
    deleter: &Deleter,
    (vhost, name): Key,
    deleting: Arc<parking_lot::Mutex<HashSet<Key>>>,
) {
    tracing::info!(queue = %name, vhost = %vhost, "quorum queue expired (x-expires): deleting it");
    match deleter {
        Deleter::Cluster(cluster) => {
            let cluster = cluster.clone();
            registry.runtime.spawn(async move {
                let command = MetaCommand::DeleteQueue {
                    vhost: vhost.clone(),
                    name: name.clone(),
                };
                if let Err(e) = crate::cluster::write(&cluster, command).await {
                    // Still there: the next tick tries again if it is still unused.
                    tracing::warn!(queue = %name, vhost = %vhost, error = %e, "quorum queue expired but its deletion was not committed");
                }
                deleting.lock().remove(&(vhost, name));
            });
        }
        Deleter::Local => {
            if let Some(v) = registry.broker.vhost(&vhost) {
                if let Err(e) = v.delete_queue(&name, false, false, 0) {
                    tracing::warn!(queue = %name, vhost = %vhost, error = %e, "quorum queue expired but was not deleted");
                }
            }
            deleting.lock().remove(&(vhost, name));
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
