//! Classic queues' home nodes (issue 13 item 3): which node holds a durable classic queue's
//! messages, where a new one is placed, and the proxy a queue homed elsewhere gets.
//!
//! The home is decided by the node that proposes the `queue.declare` (`MetaCommand::
//! DeclareQueue`'s `node`), so that every node applies the same one: the declaring client's
//! node, or by `x-queue-leader-locator` (argument, or policy key `queue-leader-locator`, the
//! policy winning as in RabbitMQ's rabbit_queue_location): `client-local` (the default) or
//! `balanced` (the running member with the fewest queues; RabbitMQ's 3.x `min-masters` and
//! `random` are taken as `balanced`). A node keeps the homes that are not itself in its
//! metadata store (table `queue_home`, written in the same transaction as the applied
//! command), so that after a restart its queues know their homes before the log replays.

use super::forward::{self, Forwarder};
use pigeon_broker::{Message, Outcome, Queue, RemoteConfirm, RemoteHome, Table, VHost};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

/// The metadata store's table of queues homed on another node: `vhost NUL name` -> node.
const TABLE: &str = "queue_home";

fn key(vhost: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(vhost.len() + name.len() + 1);
    k.extend_from_slice(vhost.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The proxy of a queue homed on another node.
pub(crate) struct Home {
    pub(super) node: String,
    pub(super) forwarder: Weak<Forwarder>,
}

impl RemoteHome for Home {
    fn node(&self) -> &str {
        &self.node
    }

    fn available(&self) -> bool {
        self.forwarder
            .upgrade()
            .is_some_and(|f| f.is_up(&self.node))
    }

    fn forward(&self, queue: &Arc<Queue>, message: Message, confirm: Option<Arc<RemoteConfirm>>) {
        match self.forwarder.upgrade() {
            Some(f) => f.send(&self.node, queue, &message, confirm),
            None => {
                if let Some(c) = confirm {
                    c.settle(false);
                }
            }
        }
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

    fn backlog(&self) -> usize {
        self.forwarder
            .upgrade()
            .map_or(0, |f| f.waiting_for(&self.node))
    }
}

impl Forwarder {
    /// A durable queue was declared through the log with home `node` (empty: as before, this
    /// node or what it knew): queues homed elsewhere get their proxy, recorded in the store
    /// (within the applying batch's transaction).
    pub(crate) fn declared(self: &Arc<Self>, vhost: &VHost, name: &str, node: &str) {
        if node.is_empty() || node == self.me {
            return;
        }
        let Ok(q) = vhost.queue(name) else { return };
        // Streams are single-node for now; a quorum queue's `node` lists its members, and
        // every member holds its messages (cluster/quorum): neither gets a proxy.
        if q.is_stream() || q.is_quorum() {
            return;
        }
        if q.remote().is_none() {
            q.set_remote(forward::home(self, node));
        }
        if let Err(e) = self
            .store
            .meta_put(TABLE, &key(vhost.name(), name), node.as_bytes())
        {
            tracing::error!(
                queue = name,
                "cluster: cannot record the queue's home node: {e}"
            );
        }
    }

    /// A durable queue was deleted through the log.
    pub(crate) fn deleted(&self, vhost: &str, name: &str) {
        if let Err(e) = self.store.meta_delete(TABLE, &key(vhost, name)) {
            tracing::error!(
                queue = name,
                "cluster: cannot forget the queue's home node: {e}"
            );
        }
    }

    /// At start: the recovered queues homed elsewhere get their proxy.
    pub(crate) fn recover(self: &Arc<Self>) {
        let entries = match self.store.meta_scan(TABLE) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cluster: cannot read the queues' home nodes: {e}");
                return;
            }
        };
        for (k, node) in entries {
            let mut parts = k.splitn(2, |b| *b == 0);
            let (Some(v), Some(q), Ok(node)) =
                (parts.next(), parts.next(), String::from_utf8(node))
            else {
                continue;
            };
            let (Ok(v), Ok(q)) = (std::str::from_utf8(v), std::str::from_utf8(q)) else {
                continue;
            };
            if let Some(vhost) = self.broker.vhost(v) {
                if let Ok(queue) = vhost.queue(q) {
                    if queue.remote().is_none() && node != self.me {
                        queue.set_remote(forward::home(self, &node));
                    }
                }
            }
        }
    }

    /// The home of a new durable classic queue declared through this node.
    pub(crate) fn place(&self, vhost: &VHost, name: &str, arguments: &Table) -> String {
        let policy = vhost.queue_policies(name).effective;
        let locator = policy
            .get_str("queue-leader-locator")
            .or_else(|| arguments.get_str("x-queue-leader-locator"))
            .or_else(|| policy.get_str("queue-master-locator"))
            .or_else(|| arguments.get_str("x-queue-master-locator"))
            .unwrap_or("client-local");
        if !matches!(locator, "balanced" | "min-masters" | "random") {
            return self.me.clone();
        }
        // Balanced: the running member with the fewest queues (ties: by name).
        let mut count: BTreeMap<String, usize> = self
            .members()
            .into_iter()
            .filter(|n| self.is_up(n))
            .map(|n| (n, 0))
            .collect();
        count.entry(self.me.clone()).or_insert(0);
        for v in self.broker.vhosts() {
            for q in v.queue_list() {
                let home = q.remote().map_or(self.me.as_str(), |h| h.node());
                if let Some(c) = count.get_mut(home) {
                    *c += 1;
                }
            }
        }
        count
            .into_iter()
            .min_by_key(|(_, c)| *c)
            .map_or_else(|| self.me.clone(), |(n, _)| n)
    }
}

/// The home of `queue` when it is another node (None on its home, and on a single node).
pub(crate) fn home_of(queue: &Queue) -> Option<&str> {
    queue.remote().map(|h| h.node())
}
