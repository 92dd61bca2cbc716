//! MQTT across the cluster (issue 13 item 5, docs/clustering.md "MQTT in a cluster"): the
//! node-to-node side. The sessions' side (what is announced, taken over, installed) is
//! `mqtt/cluster.rs`.
//!
//! **Remote subscriptions.** An MQTT session's queue (`mqtt-session-<client id>`) lives on the
//! node of its connection, bound to the MQTT exchange once per subscription. Each node
//! announces the bindings of its session queues to the other nodes ([`QueueSubs`], in the
//! per-peer batches of `forward.rs`, so in order with everything else it sends them), and each
//! node keeps, for every session queue of another node, a local *proxy*: a non-durable queue
//! `<queue>@<node>` bound with the same patterns, whose [`RemoteHome`] forwards what routing
//! gives it to the real queue (the same `Request::Forward` batches as classic queues' publishes:
//! one batch in flight per peer, so each publisher's messages keep their order). So a publish on
//! any node, MQTT or AMQP, a will included, reaches every node's matching sessions through the
//! exchange's own routing, and the session's node delivers it with MQTT's own matching (QoS,
//! no-local, retain-as-published, subscription identifiers) from the session queue as for a
//! local publish. A session queue that is replicated (a quorum queue, `mqtt_durable_queue_type
//! = quorum`) exists on every node: the other nodes bind their own copy instead of a proxy.
//!
//! An announcement is the queue's whole binding set (an empty one: the queue is gone), so it
//! is idempotent; a node's whole set ([`MqttItem::Sync`]) is sent to every peer at start and
//! to a peer found up again or restarted (node liveness, `Cluster::node_events`), which answers
//! with its own. A peer found down loses its proxies of non-persistent sessions (their messages
//! would be lost with the node anyway); those of persistent sessions stay, and a publish to them
//! is refused as to a classic queue whose home is down.
//!
//! **Retained messages** are set on every node: each retained PUBLISH (or clearing) is sent to
//! every peer with its version ([`MqttItem::RetainedVersion`], `mqtt_retained.rs`: the last
//! change per topic wins on every node, clearings are kept as tombstones); a Sync is followed
//! by the sender's retained messages and tombstones. ([`MqttItem::Retain`], unversioned, is
//! no longer sent.)
//!
//! **Shared subscriptions**: a share group is one queue on one node, proxies elsewhere, and
//! members on other nodes attached there as remote consumers (`mqtt_shared.rs`).
//!
//! **Session takeover** ([`MqttRequest::TakeOver`]): a CONNECT on one node asks every other
//! node to let go of the client id: a connection there gets DISCONNECT 0x8E (MQTT 5) or is
//! closed (3.1.1), and a persistent session's state (subscriptions, queued messages, inbound
//! QoS 2 ids) comes back in the answer and continues on the new node.

use super::forward::{self, Forwarded, Forwarder, Item, Then};
use crate::ServerState;
use parking_lot::Mutex;
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{
    Destination, Message, Outcome, Queue, QueueOptions, RemoteConfirm, RemoteHome, Table,
};
use pigeon_cluster::Cluster;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

mod subs;
mod takeover;
pub(crate) use takeover::take_over;

/// How long a CONNECT waits for the other nodes to let go of its client id (as long as a
/// takeover on one node waits for the previous connection).
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(6);

/// The bindings of one session queue of the sending node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct QueueSubs {
    pub vhost: String,
    pub queue: String,
    /// The MQTT exchange (`mqtt_exchange`).
    pub exchange: String,
    /// The binding patterns; empty: the queue is gone.
    pub patterns: Vec<String>,
    /// A persistent session's queue: a publish to it while its node is down is refused.
    pub durable: bool,
    /// A replicated queue (quorum): every node binds its own copy, no proxy.
    pub replicated: bool,
}

/// An MQTT item of a forwarded batch (`forward::Item::Mqtt`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum MqttItem {
    /// One session queue's bindings changed (or it is gone).
    Subs(QueueSubs),
    /// Every session queue of the sender: what the receiver knows of the sender is replaced.
    /// `reply`: the receiver sends its own back.
    Sync { subs: Vec<QueueSubs>, reply: bool },
    /// A retained message set (`record`, a message record) or cleared (empty).
    Retain {
        vhost: String,
        key: String,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
        /// Only where the receiver has none for that topic (after a Sync).
        fill_only: bool,
    },
    // --- Shared subscriptions and retained messages' versions across nodes (issue 13 item
    // 5, helper mqttshared; `mqtt_shared.rs`, `mqtt_retained.rs`).
    /// A share group's queue, its binding and its owner: the receiver makes its proxy (or,
    /// as the owner, the queue).
    SharedGroup(super::mqtt_shared::SharedGroup),
    /// The owner deleted a share group's queue (its last member left).
    SharedGone { vhost: String, queue: String },
    /// A retained message set or cleared, with its version (last writer wins).
    RetainedVersion(super::mqtt_retained::Retained),
}

/// A request with an answer (`forward::ToNode::Mqtt`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum MqttRequest {
    /// Let go of `client_id`: its connection here closes; unless `clean`, a persistent
    /// session's state is handed over in the answer and the session ends here.
    TakeOver {
        vhost: String,
        client_id: String,
        clean: bool,
    },
}

/// The answer to an [`MqttRequest`] (`forward::FromNode::Mqtt`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum MqttAnswer {
    /// The session handed over, if there was one to hand over.
    Session(Option<SessionState>),
}

/// A persistent session moving to another node.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionState {
    /// Its subscriptions (shared ones stay with their node's group).
    pub subscriptions: Vec<SubState>,
    /// Its queued messages, oldest first (those in flight first, as redeliveries), as message
    /// records.
    pub messages: Vec<serde_bytes::ByteBuf>,
    /// Inbound QoS 2 packet ids not yet released.
    pub inbound_qos2: Vec<u16>,
}

/// One subscription of a moving session.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SubState {
    pub key: String,
    pub filter: String,
    pub pattern: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub id: Option<u32>,
}

/// What one node knows of another's session queue.
pub(super) struct Known {
    /// The local proxy (`None`: a replicated queue, bound directly).
    pub(super) proxy: Option<Arc<Queue>>,
    pub(super) exchange: String,
    pub(super) patterns: BTreeSet<String>,
    durable: bool,
}

/// One node's session queues, by (vhost, queue), as this node knows them.
pub(super) type KnownQueues = HashMap<(String, String), Known>;

/// This node's part of MQTT across the cluster (held by the [`Forwarder`]).
#[derive(Default)]
pub(crate) struct MqttRemote {
    server: OnceLock<Weak<ServerState>>,
    /// By node, then (vhost, queue): the other nodes' session queues.
    pub(super) known: Mutex<HashMap<String, KnownQueues>>,
    /// Persistent sessions' subscriptions as the metadata group has them
    /// (`mqtt_sessions.rs`).
    pub(super) replicated: Mutex<super::mqtt_sessions::Replicated>,
    /// This node's proposals of those, written in order by one task (`mqtt_sessions.rs`).
    pub(super) proposals: OnceLock<super::mqtt_sessions::Proposals>,
    /// Sessions being handed over to another node: their end here is not the session's end.
    pub(super) handing_over: Mutex<BTreeSet<(String, String)>>,
    /// This node's session queues the peers were told of (so that a session that never
    /// subscribed ends without a message to every peer).
    announced: Mutex<BTreeSet<(String, String)>>,
    /// Persistent sessions recovered at start, with their CONNECT count then
    /// (`mqtt_failover.rs`: one no client took since yields to a copy elsewhere).
    pub(super) dormant: Mutex<HashMap<(String, String), u32>>,
    /// Ended sessions' quorum queues being deleted through the group (`mqtt_failover.rs`).
    pub(super) ending: super::mqtt_failover::Ending,
    // Shared subscriptions and retained messages' versions across nodes (helper mqttshared).
    /// The share groups known here (`mqtt_shared.rs`).
    pub(super) shared: super::mqtt_shared::Shared,
    /// The retained messages' versions (`mqtt_retained.rs`).
    pub(super) retained_versions: super::mqtt_retained::Versions,
}

/// The proxy of another node's session queue.
struct MqttHome {
    node: String,
    vhost: String,
    target: String,
    durable: bool,
    forwarder: Weak<Forwarder>,
}

impl RemoteHome for MqttHome {
    fn node(&self) -> &str {
        &self.node
    }

    fn available(&self) -> bool {
        self.forwarder
            .upgrade()
            .is_some_and(|f| f.is_up(&self.node))
    }

    fn forward(&self, _queue: &Arc<Queue>, message: Message, confirm: Option<Arc<RemoteConfirm>>) {
        let f = self.forwarder.upgrade().filter(|f| f.is_up(&self.node));
        let Some(f) = f else {
            // The session's node is down: a persistent session's message is refused, as for a
            // classic queue whose home is down; a clean session is gone with its node.
            if let Some(c) = confirm {
                c.settle(!self.durable);
            }
            return;
        };
        let record = MessageRecordRef::in_queue(&message, &self.target, 0)
            .encode()
            .to_vec();
        // A persistent session's queue confirms once its node has the message (on disk for a
        // QoS 1/2 one); a clean session's queue is not durable and a local publish to it is
        // acknowledged at once: so is a forwarded one.
        let then = if self.durable {
            Then::Confirm(confirm)
        } else {
            if let Some(c) = confirm {
                c.settle(true);
            }
            Then::Nothing
        };
        let item = Item::Publish(Forwarded {
            vhost: self.vhost.clone(),
            queue: self.target.clone(),
            record,
        });
        f.push(&self.node, item, then);
    }

    // Nobody consumes from a proxy (the session consumes its own queue on its own node).
    fn settle(&self, _queue: &Arc<Queue>, _seqs: Vec<u64>, _outcome: Outcome) {}

    fn cancel(&self, _queue: &Arc<Queue>, _owner: u64, _tag: &str) {}
}

/// The name of the proxy of `node`'s queue `queue`.
fn proxy_name(queue: &str, node: &str) -> String {
    format!("{queue}@{node}")
}

/// A forwarded message record back to a message.
pub(crate) fn decode_message(record: Vec<u8>) -> Option<Message> {
    forward::decode(record)
}

/// A message as a record to forward.
pub(crate) fn encode_message(message: &Message, queue: &str) -> Vec<u8> {
    MessageRecordRef::in_queue(message, queue, 0)
        .encode()
        .to_vec()
}

/// Wires MQTT across the cluster once the server state exists: peers' takeover requests are
/// answered, ended sessions announced, this node's subscriptions and retained messages sent to
/// every peer (which answer with theirs), and peers' liveness followed.
pub(crate) fn start(server: &Arc<ServerState>) {
    let Some(cluster) = server.cluster.clone() else {
        return;
    };
    let Some(f) = Forwarder::of(&cluster) else {
        return;
    };
    let _ = f.mqtt.server.set(Arc::downgrade(server));
    super::mqtt_failover::note_dormant(&f, server);
    super::mqtt_sessions::start_proposer(&f, &cluster);
    // Retained messages' tombstones past the bound are collected (mqtt_retained.rs).
    super::mqtt_retained::start_collector(&f, server.config.mqtt_retained_tombstone_grace_ms);
    crate::mqtt::cluster::install_hooks(server);
    let weak = Arc::downgrade(&f);
    let mut events = cluster.node_events();
    let mut states = cluster.watch_node_states();
    tokio::spawn(async move {
        use pigeon_cluster::{NodeEventKind, NodeState};
        use tokio::sync::broadcast::error::RecvError;
        // The members seen up: one that joins (a cluster formed after this node started, a
        // node added) or comes back is sent this node's set; one found down loses its
        // clean sessions' proxies.
        let mut up: BTreeSet<String> = BTreeSet::new();
        let mut first = true;
        loop {
            tokio::select! {
                changed = states.changed(), if !first => {
                    if changed.is_err() {
                        return;
                    }
                }
                event = events.recv() => {
                    let event = match event {
                        Ok(e) => e,
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return,
                    };
                    let Some(f) = weak.upgrade() else { return };
                    // Up and down are the states' (below); a restart is only an event.
                    if event.kind == NodeEventKind::Restarted {
                        f.forget_node(&event.name);
                        f.sync_to(&event.name, true);
                    }
                    continue;
                }
                // The states as they are at start.
                () = std::future::ready(()), if first => first = false,
            }
            let now: Vec<(String, NodeState)> = states
                .borrow_and_update()
                .iter()
                .map(|(n, s)| (n.clone(), *s))
                .collect();
            let Some(f) = weak.upgrade() else { return };
            for (node, state) in now {
                if node == f.me() {
                    continue;
                }
                match state {
                    NodeState::Up => {
                        if up.insert(node.clone()) {
                            f.sync_to(&node, true);
                        }
                    }
                    NodeState::Down => {
                        if up.remove(&node) {
                            f.forget_node(&node);
                            // Its share groups move (`mqtt_shared_move.rs`, helper sharemove).
                            f.shared_node_down(&node);
                        }
                    }
                }
            }
        }
    });
}

impl Forwarder {
    pub(super) fn mqtt_server(&self) -> Option<Arc<ServerState>> {
        self.mqtt.server.get()?.upgrade()
    }

    /// The peers believed up.
    pub(super) fn up_peers(&self) -> Vec<String> {
        self.members()
            .into_iter()
            .filter(|n| n != self.me() && self.is_up(n))
            .collect()
    }

    /// Sends every peer that is up the bindings of one of this node's session queues. The
    /// answer is `done` once each has them (or could not be reached): a SUBACK waits for it,
    /// so that a publish on any node after the SUBACK reaches the new subscription.
    pub(crate) fn announce_subs(&self, subs: QueueSubs) -> Option<Arc<RemoteConfirm>> {
        {
            let key = (subs.vhost.clone(), subs.queue.clone());
            let mut announced = self.mqtt.announced.lock();
            if subs.patterns.is_empty() {
                if !announced.remove(&key) {
                    return None;
                }
            } else {
                announced.insert(key);
            }
        }
        let peers = self.up_peers();
        if peers.is_empty() {
            return None;
        }
        let done = Arc::new(RemoteConfirm::default());
        for node in peers {
            done.add();
            let item = Item::Mqtt(MqttItem::Subs(subs.clone()));
            self.push(&node, item, Then::Confirm(Some(Arc::clone(&done))));
        }
        Some(done)
    }

    /// Sends every peer that is up a retained message set (`Some`) or cleared, versioned
    /// (`mqtt_retained.rs`).
    pub(crate) fn announce_retained(&self, vhost: &str, key: &str, message: Option<&Message>) {
        self.retained_changed(vhost, key, message);
    }

    /// Sends `node` this node's whole set of session queues, then its retained messages.
    fn sync_to(&self, node: &str, reply: bool) {
        let Some(server) = self.mqtt_server() else {
            return;
        };
        let subs = crate::mqtt::cluster::local_subs(&server);
        self.mqtt
            .announced
            .lock()
            .extend(subs.iter().map(|s| (s.vhost.clone(), s.queue.clone())));
        self.push(
            node,
            Item::Mqtt(MqttItem::Sync { subs, reply }),
            Then::Nothing,
        );
        // Shared subscriptions and retained messages' versions (helper mqttshared): the groups
        // known here (members here of groups `node` owns attach there again), then the
        // retained messages and tombstones with their versions.
        let owned_there = self.shared_sync_to(node);
        crate::mqtt::cluster_shared::reattach(&server, &owned_there);
        self.retained_sync_to(node);
    }

    /// `node` is down or restarted: its clean sessions' proxies go (its persistent sessions'
    /// stay: they come back with the node, and meanwhile publishes to them are refused).
    fn forget_node(&self, node: &str) {
        let mut known = self.mqtt.known.lock();
        let Some(queues) = known.get_mut(node) else {
            return;
        };
        let gone: Vec<(String, String)> = queues
            .iter()
            .filter(|(_, k)| !k.durable)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(k) = queues.remove(&key) {
                self.unbind_known(&key.0, &key.1, k);
            }
        }
    }

    /// Removes what this node made for another node's queue.
    pub(super) fn unbind_known(&self, vhost: &str, queue: &str, k: Known) {
        let Some(v) = self.broker.vhost(vhost) else {
            return;
        };
        match k.proxy {
            Some(p) => {
                v.remove_queue(&p);
            }
            None => {
                if let Ok(q) = v.queue(queue) {
                    for pattern in &k.patterns {
                        let dest = Destination::Queue(Arc::clone(&q));
                        let _ = v.unbind(&k.exchange, dest, pattern, Table::new());
                    }
                }
            }
        }
    }

    /// Whether `client_id`'s session is being handed over to another node.
    pub(crate) fn mqtt_handing_over(&self, vhost: &str, client_id: &str) -> bool {
        self.mqtt
            .handing_over
            .lock()
            .contains(&(vhost.to_string(), client_id.to_string()))
    }

    /// The session queue `queue` lives here now (a session moved here): no proxy of it from
    /// another node is kept.
    pub(crate) fn mqtt_owned_here(&self, vhost: &str, queue: &str) {
        let key = (vhost.to_string(), queue.to_string());
        let mut known = self.mqtt.known.lock();
        for queues in known.values_mut() {
            if let Some(k) = queues.remove(&key) {
                self.unbind_known(vhost, queue, k);
            }
        }
    }

    /// Handles one MQTT item of `from`'s batch.
    pub(crate) fn mqtt_item(&self, from: &str, item: MqttItem) -> bool {
        match item {
            MqttItem::Subs(subs) => {
                let mut known = self.mqtt.known.lock();
                // The session moved to `from` (mqtt_failover.rs).
                self.forget_moved(&mut known, from, &subs);
                let queues = known.entry(from.to_string()).or_default();
                let key = (subs.vhost.clone(), subs.queue.clone());
                self.apply_subs(from, queues, subs);
                self.rebind_others(&known, from, &key);
            }
            MqttItem::Sync { subs, reply } => {
                {
                    let mut known = self.mqtt.known.lock();
                    let queues = known.entry(from.to_string()).or_default();
                    let named: BTreeSet<(String, String)> = subs
                        .iter()
                        .map(|s| (s.vhost.clone(), s.queue.clone()))
                        .collect();
                    let stale: Vec<(String, String)> = queues
                        .keys()
                        .filter(|k| !named.contains(*k))
                        .cloned()
                        .collect();
                    for key in &stale {
                        if let Some(k) = queues.remove(key) {
                            self.unbind_known(&key.0, &key.1, k);
                        }
                    }
                    for s in subs {
                        // A session recovered here that moved to `from` (mqtt_failover.rs).
                        self.yield_dormant(from, &s);
                        self.apply_subs(from, queues, s);
                    }
                    for key in named.iter().chain(&stale) {
                        self.rebind_others(&known, from, key);
                    }
                }
                if reply {
                    self.sync_to(from, false);
                }
            }
            MqttItem::Retain {
                vhost,
                key,
                record,
                fill_only,
            } => {
                let Some(v) = self.broker.vhost(&vhost) else {
                    return false;
                };
                if fill_only && v.retained.get(&key).is_some() {
                    return true;
                }
                if record.is_empty() {
                    v.retained.set(&key, None);
                } else if let Some(m) = decode_message(record) {
                    v.retained.set(&key, Some(m));
                }
            }
            // Shared subscriptions and retained messages' versions (helper mqttshared).
            MqttItem::SharedGroup(g) => return self.shared_group_item(from, g),
            MqttItem::SharedGone { vhost, queue } => {
                return self.shared_gone_item(from, &vhost, &queue)
            }
            MqttItem::RetainedVersion(r) => return self.retained_item(r),
        }
        true
    }

    /// Handles a peer's MQTT request.
    pub(crate) async fn mqtt_request(&self, request: MqttRequest) -> MqttAnswer {
        match request {
            MqttRequest::TakeOver {
                vhost,
                client_id,
                clean,
            } => {
                let Some(server) = self.mqtt_server() else {
                    return MqttAnswer::Session(None);
                };
                let key = (vhost.clone(), client_id.clone());
                if !clean {
                    self.mqtt.handing_over.lock().insert(key.clone());
                }
                let state =
                    crate::mqtt::cluster::hand_over(&server, &vhost, &client_id, clean).await;
                self.mqtt.handing_over.lock().remove(&key);
                // A session that ended here: its queue's deletion is committed before the
                // asking node looks at the group (mqtt_failover.rs).
                self.ending_settled(&vhost, &client_id).await;
                MqttAnswer::Session(state)
            }
        }
    }
}
