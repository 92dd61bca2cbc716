//! Quorum queues in the broker (`x-queue-type: quorum`, issue 13 item 4): each queue is a Raft
//! group of its own (`pigeon_cluster::quorum`), and the broker's `Queue` a front whose
//! replicated half ([`QuorumBackend`](pigeon_broker::queue::quorum::QuorumBackend)) is this
//! node's [`QuorumMember`].
//!
//! - **Declare**: the declaring node chooses the members (`membership::place`: the
//!   `x-quorum-initial-group-size`, 3 by default, capped by the number of nodes, one per node,
//!   itself first) and writes them in the `DeclareQueue` command's `node` field, comma-separated;
//!   every node applies the declare (`apply.rs`) and [`QuorumRegistry::placed`] attaches a
//!   member to the queue there, started on the chosen nodes; the first forms the group.
//! - **At start**, the quorum queues the broker restored from its store are attached again;
//!   a node whose log holds the group's state is a member, the others forward.
//! - **Node loss** (`liveness.rs`): a node that stops answering on the cluster link is reported
//!   to every group here as `NodeDown`, which returns what its consumers held.

mod liveness;
mod member;
// Member management, membership at restart, leadership moves (quorummembers).
mod leadership;
pub(crate) mod membership;
mod message;
mod ops;
mod outsider;
// Quorum queues on a node without `[cluster]` (helper quorumone).
pub(crate) mod single;
// x-expires and consumer priorities (helper quorumrest).
pub(crate) mod expiry;
mod priority;

pub(crate) use member::QuorumMember;
pub(crate) use membership::place;
pub(crate) use outsider::{attach_refused, member_here, serving_lost};

use parking_lot::Mutex;
use pigeon_broker::Broker;
use pigeon_cluster::Cluster;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// `x-quorum-initial-group-size`'s default (RabbitMQ's `quorum_cluster_size`).
pub(crate) const DEFAULT_GROUP_SIZE: usize = 3;

/// This node's quorum queues.
pub(crate) struct QuorumRegistry {
    broker: Arc<Broker>,
    runtime: tokio::runtime::Handle,
    cluster: OnceLock<Cluster>,
    queues: Mutex<HashMap<(String, String), Arc<QuorumMember>>>,
    /// Nodes the liveness probe finds down.
    down: Arc<Mutex<HashSet<String>>>,
    /// Declares applied before the node's handle existed (the log replayed at start).
    early: Mutex<Vec<(String, String, Vec<String>)>>,
    /// Where the queues' members are recorded (membership.rs), once set.
    store: OnceLock<Arc<pigeon_store::Store>>,
}

impl QuorumRegistry {
    /// A registry; quorum queues start once [`Self::set_cluster`] is called.
    pub(crate) fn new(broker: &Arc<Broker>) -> Arc<QuorumRegistry> {
        Arc::new(QuorumRegistry {
            broker: Arc::clone(broker),
            runtime: tokio::runtime::Handle::current(),
            cluster: OnceLock::new(),
            queues: Mutex::new(HashMap::new()),
            down: Arc::new(Mutex::new(HashSet::new())),
            early: Mutex::new(Vec::new()),
            store: OnceLock::new(),
        })
    }

    /// The node is up: quorum queues may be declared, those restored at start are attached,
    /// the declares applied meanwhile placed, and node liveness watched.
    pub(crate) fn set_cluster(self: &Arc<Self>, cluster: Cluster) {
        let _ = self.cluster.set(cluster.clone());
        pigeon_broker::queue::quorum::enable();
        let early: Vec<_> = std::mem::take(&mut *self.early.lock());
        for (vhost, name, members) in early {
            self.place_now(&cluster, &vhost, &name, members, true);
        }
        // The members recorded in the store (membership.rs): a listed node starts its member.
        let recorded = self.recorded_members();
        for v in self.broker.vhosts() {
            for q in v.queue_list() {
                if q.is_quorum() && q.quorum().is_none() {
                    let key = (v.name().to_string(), q.name().to_string());
                    let members = recorded.get(&key).cloned().unwrap_or_default();
                    self.place_now(&cluster, v.name(), q.name(), members, true);
                }
            }
        }
        liveness::spawn(Arc::downgrade(self), cluster);
    }

    /// A quorum queue's declare was applied here (`members`: the `DeclareQueue` command's
    /// `node` field). Called on the metadata group's applying thread.
    pub(crate) fn placed(self: &Arc<Self>, vhost: &str, name: &str, members: &str) {
        let members: Vec<String> = members
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        let cluster = {
            let mut early = self.early.lock();
            match self.cluster.get() {
                Some(c) => c.clone(),
                None => {
                    self.record_members(vhost, name, &members);
                    early.push((vhost.to_string(), name.to_string(), members));
                    return;
                }
            }
        };
        self.record_members(vhost, name, &members);
        self.place_now(&cluster, vhost, name, members, false);
    }

    fn place_now(
        &self,
        cluster: &Cluster,
        vhost: &str,
        name: &str,
        members: Vec<String>,
        restarted: bool,
    ) {
        let key = (vhost.to_string(), name.to_string());
        let mut queues = self.queues.lock();
        if queues.contains_key(&key) {
            return;
        }
        let Some(queue) = self.broker.vhost(vhost).and_then(|v| v.queue(name).ok()) else {
            return;
        };
        if !queue.is_quorum() {
            return;
        }
        tracing::info!(queue = %name, vhost = %vhost, members = %members.join(","), "quorum queue placed");
        let _guard = self.runtime.enter();
        let member = QuorumMember::new(
            cluster,
            &self.broker,
            &queue,
            vhost,
            members,
            &self.runtime,
            &self.down,
            // Placed at start or during the log's replay at start: the node restarted.
            restarted,
        );
        queue.set_quorum(member.clone());
        queues.insert(key, member);
    }

    /// A quorum queue was deleted: this node's member stops.
    pub(crate) fn removed(&self, vhost: &str, name: &str) {
        self.forget_members(vhost, name);
        let gone = self
            .queues
            .lock()
            .remove(&(vhost.to_string(), name.to_string()));
        if let Some(member) = gone {
            let _guard = self.runtime.enter();
            member.stop();
        }
    }

    fn all(&self) -> Vec<Arc<QuorumMember>> {
        self.queues.lock().values().cloned().collect()
    }
}
