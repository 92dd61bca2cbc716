//! Classic queues across nodes (issue 13 item 3, docs/clustering.md "Classic queues in a
//! cluster"): every durable classic queue has a home node, which alone holds its messages;
//! on the other nodes the queue is a remote proxy ([`pigeon_broker::RemoteHome`]) and what
//! routing sends it there is forwarded to the home over the cluster link.
//!
//! **Batches.** Each node keeps one outgoing queue per peer and one task that sends it: the
//! task takes everything waiting (up to [`MAX_BATCH`] messages or [`MAX_BATCH_BYTES`]) as one
//! `Request::Forward`, waits for the answer, then takes the next batch. So there is never a
//! timer: an idle link sends a lone message at once, and under load the messages that arrive
//! while a batch is in flight (the home's fsync included) go together in the next one, as the
//! store's group commit does. One batch in flight per peer also keeps every publisher's
//! messages in order at the home.
//!
//! **Confirms.** The routing result travels with each message (vhost and queue: the home
//! enqueues it there and does not route again). The home answers once the batch is in its
//! queues and, if any was written to a queue log, once its store has synced it (the same
//! group commit as a local publish); then the publisher's [`pigeon_broker::RemoteConfirm`]
//! is settled, and the publisher confirms once every owning node (this one's store included)
//! has. A refusal at the home (length limit with reject-publish, queue gone) is a nack.
//!
//! **Home down.** A message for a queue whose home is down (or that cannot be reached) is
//! dropped for that queue and a publisher that asked for confirms gets a nack: RabbitMQ's
//! classic queue rejects the publishes pending at a queue process that went down
//! (rabbit_classic_queue `handle_event({down, Pid, Info})`: a message with no queue left
//! pending and none that confirmed is `rejected`), and its `deliver` to a dead process is
//! lost. Whether it is routable is decided here, from the local metadata: the queue exists,
//! so a mandatory message is not returned.

use super::homes::Home;
use bytes::Bytes;
use parking_lot::Mutex;
use pigeon_broker::record::MessageRecord;
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{Broker, Enqueued, Message, Properties, Queue, RemoteConfirm};
use pigeon_cluster::net::{BoxFuture, ForwardHandler};
use pigeon_cluster::{Cluster, ForwardError};
use pigeon_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Messages per forwarded batch at most.
pub(crate) const MAX_BATCH: usize = 1024;
/// Bytes of message records per batch at most (frames are limited to 64 MiB).
pub(crate) const MAX_BATCH_BYTES: usize = 4 << 20;
/// How long a batch may wait for its answer (the home's fsync included).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How often node liveness's states are looked at besides their changes (a down home makes
/// its queues unavailable).
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// A broker message from one node to another (the body of `Request::Forward`): a batch of
/// items, handled in order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToNode {
    /// The items, in the order they were queued for the peer.
    Batch(Vec<Item>),
    // Classic queues through another node than their home (metafinish, remote_queue.rs).
    /// A question about a queue homed on the receiver (basic.get, queue.purge, its counts).
    Query(super::remote_queue::Query),
    // --- MQTT across the cluster (issue 13 item 5, helper mqttcluster; `mqtt.rs`).
    /// A request with an answer of its own (a session takeover), outside the batches.
    Mqtt(super::mqtt::MqttRequest),
}

/// One item of a batch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Item {
    /// A message routed on the sender to a queue homed here.
    Publish(Forwarded),
    /// Consumers on another node of queues homed on the receiver (`remote_consumer.rs`).
    Consumer(super::remote_consumer::ConsumerItem),
    // Classic queues through another node than their home (metafinish, remote_queue.rs).
    /// Nothing: its answer tells the sender that everything queued before it reached the
    /// peer (a question then sees the publishes made before it).
    Flush,
    // --- MQTT across the cluster (issue 13 item 5, helper mqttcluster; `mqtt.rs`).
    /// A session queue's subscriptions, a node's whole set of them, a retained message.
    Mqtt(super::mqtt::MqttItem),
}

/// One forwarded message and the queue it was routed to.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Forwarded {
    pub vhost: String,
    pub queue: String,
    /// The message as a queue log record (`MessageRecordRef::encode`), as bytes.
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// The answers (the body of `Response::Forwarded`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromNode {
    /// For each item, whether it was done (a message taken by its queue and, if written to
    /// its log, synced; a delivery taken by its consumer).
    Done(Vec<bool>),
    // Classic queues through another node than their home (metafinish, remote_queue.rs).
    /// To a `ToNode::Query`.
    Answer(super::remote_queue::Answer),
    // --- MQTT across the cluster (issue 13 item 5, helper mqttcluster; `mqtt.rs`).
    /// The answer to `ToNode::Mqtt`.
    Mqtt(super::mqtt::MqttAnswer),
}

/// What to do with an item's answer.
pub(crate) enum Then {
    /// Nothing.
    Nothing,
    /// Settle a publisher's confirm.
    Confirm(Option<Arc<RemoteConfirm>>),
    /// A delivery to a remote consumer: given back to the queue if not taken.
    Delivered(Arc<super::remote_consumer::RemoteSink>, u64),
    /// Tell a waiting question whether its `Item::Flush` reached the peer.
    Flushed(tokio::sync::oneshot::Sender<bool>),
}

/// One item waiting to be sent, and what its answer settles.
pub(crate) struct Outgoing {
    pub item: Item,
    pub then: Then,
}

impl Outgoing {
    fn size(&self) -> usize {
        match &self.item {
            Item::Publish(f) => f.record.len(),
            Item::Consumer(c) => c.size(),
            Item::Flush => 0,
            // MQTT across the cluster (`mqtt.rs`): small, but a Sync or a retained message
            // can be large; counted as one record's worth.
            Item::Mqtt(_) => 1024,
        }
    }
}

impl Then {
    /// The peer answered `ok` (false also when it could not be reached).
    fn answered(self, ok: bool) {
        match self {
            Then::Nothing => {}
            Then::Confirm(c) => {
                if let Some(c) = c {
                    c.settle(ok);
                }
            }
            Then::Delivered(sink, seq) => {
                if !ok {
                    sink.give_back(seq);
                }
            }
            Then::Flushed(tx) => {
                let _ = tx.send(ok);
            }
        }
    }
}

/// The outgoing queue to one peer and what wakes its sender.
struct PeerOut {
    node: String,
    queue: Mutex<VecDeque<Outgoing>>,
    /// Bytes of the items in `queue` (bounded forwarding, metafinish: `Forwarder::waiting_for`).
    bytes: std::sync::atomic::AtomicUsize,
    wake: Notify,
}

/// Bytes that count as one message in a peer's backlog (`Forwarder::waiting_for`).
const BACKLOG_UNIT: usize = 4096;

/// This node's side of classic queues across nodes: the outgoing batches, the answers to
/// peers' batches, the peers' liveness. Reached from a `Cluster` through
/// [`Forwarder::of`].
pub(crate) struct Forwarder {
    pub(super) me: String,
    pub(super) this: Weak<Forwarder>,
    pub(super) broker: Arc<Broker>,
    pub(super) store: Arc<Store>,
    cluster: OnceLock<Cluster>,
    peers: Mutex<HashMap<String, Arc<PeerOut>>>,
    /// Nodes found down (by a failed batch or probe), until a probe answers again.
    down: Mutex<HashSet<String>>,
    /// Consumers of queues homed elsewhere and consumers of queues homed here on other nodes
    /// (`remote_consumer.rs`).
    pub(super) consumers: super::remote_consumer::Consumers,
    /// MQTT across the cluster: the other nodes' session queues known here (`mqtt.rs`).
    pub(super) mqtt: super::mqtt::MqttRemote,
    runtime: tokio::runtime::Handle,
}

impl Forwarder {
    /// A forwarder for the node `me` (its cluster set later, once started).
    pub(crate) fn new(me: String, broker: Arc<Broker>, store: Arc<Store>) -> Arc<Forwarder> {
        Arc::new_cyclic(|this| Forwarder {
            me,
            this: this.clone(),
            broker,
            store,
            cluster: OnceLock::new(),
            peers: Mutex::default(),
            down: Mutex::default(),
            consumers: Default::default(),
            mqtt: Default::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// The forwarder of a started node.
    pub(crate) fn of(cluster: &Cluster) -> Option<Arc<Forwarder>> {
        let handler = cluster.forward_handler()?;
        let me = handler.as_any().downcast_ref::<Answerer>()?;
        me.0.upgrade()
    }

    /// Wires the started node: peers' batches are answered, peers probed.
    pub(crate) fn attach(self: &Arc<Self>, cluster: &Cluster) {
        let _ = self.cluster.set(cluster.clone());
        cluster.set_forward_handler(Arc::new(Answerer(Arc::downgrade(self))));
        let this = Arc::downgrade(self);
        self.runtime.spawn(probe(this));
    }

    /// The started node.
    pub(super) fn cluster(&self) -> Option<&Cluster> {
        self.cluster.get()
    }

    /// This node's name.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// Whether `node` is believed up (this node always is).
    pub(crate) fn is_up(&self, node: &str) -> bool {
        node == self.me || !self.down.lock().contains(node)
    }

    fn mark(&self, node: &str, up: bool) {
        let went_down = {
            let mut down = self.down.lock();
            if up {
                if down.remove(node) {
                    tracing::info!(%node, "cluster: node is back: its classic queues are available");
                }
                false
            } else if down.insert(node.to_string()) {
                tracing::warn!(%node, "cluster: node is down or unreachable: its classic queues are unavailable");
                true
            } else {
                false
            }
        };
        if went_down {
            self.node_down(node);
        }
    }

    /// The members of the cluster.
    pub(crate) fn members(&self) -> Vec<String> {
        self.cluster
            .get()
            .map_or_else(|| vec![self.me.clone()], Cluster::member_names)
    }

    /// Queues `message` (routed to `queue`) for its home `node`.
    pub(crate) fn send(
        &self,
        node: &str,
        queue: &Queue,
        message: &Message,
        confirm: Option<Arc<RemoteConfirm>>,
    ) {
        if !self.is_up(node) {
            // rabbit_classic_queue: a delivery to a queue whose process is down is lost, and
            // a publish pending there is rejected.
            if let Some(c) = confirm {
                c.settle(false);
            }
            return;
        }
        let record = MessageRecordRef::in_queue(message, queue.name(), 0)
            .encode()
            .to_vec();
        let item = Item::Publish(Forwarded {
            vhost: queue.vhost_name().to_string(),
            queue: queue.name().to_string(),
            record,
        });
        self.push(node, item, Then::Confirm(confirm));
    }

    /// Queues `item` for `node`'s next batch.
    pub(crate) fn push(&self, node: &str, item: Item, then: Then) {
        let peer = self.peer(node);
        let outgoing = Outgoing { item, then };
        peer.bytes
            .fetch_add(outgoing.size(), std::sync::atomic::Ordering::Relaxed);
        peer.queue.lock().push_back(outgoing);
        peer.wake.notify_one();
    }

    /// What waits for `node`, in messages or, when larger, bytes in 4 KiB units: the backlog
    /// that holds back the publishers to its queues (publisher flow control, `flow.rs`, through
    /// the proxies' `Queue::flow_view`), so the outgoing queue stays bounded without dropping
    /// anything: a publisher without confirms that outruns the link stops being read.
    pub(crate) fn waiting_for(&self, node: &str) -> usize {
        let Some(peer) = self.peers.lock().get(node).cloned() else {
            return 0;
        };
        let items = peer.queue.lock().len();
        let bytes = peer.bytes.load(std::sync::atomic::Ordering::Relaxed);
        items.max(bytes / BACKLOG_UNIT)
    }

    /// How many items wait for `node` (remote consumers without a prefetch stop at a batch).
    pub(crate) fn backlog(&self, node: &str) -> usize {
        self.peers
            .lock()
            .get(node)
            .map_or(0, |p| p.queue.lock().len())
    }

    fn peer(&self, node: &str) -> Arc<PeerOut> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(node) {
            return Arc::clone(p);
        }
        let peer = Arc::new(PeerOut {
            node: node.to_string(),
            queue: Mutex::default(),
            bytes: Default::default(),
            wake: Notify::new(),
        });
        peers.insert(node.to_string(), Arc::clone(&peer));
        self.runtime
            .spawn(send_batches(Arc::downgrade(&peer), self.this.clone()));
        peer
    }

    /// Handles a peer's batch in order: messages into the queues homed here, consumer items
    /// (`remote_consumer.rs`). Whether each was done, and whether any message was written to a
    /// queue log (then the answer waits for the store's sync).
    fn handle_batch(&self, from: &str, batch: Vec<Item>) -> (Vec<bool>, bool) {
        let mut stored = false;
        let mut oks = Vec::with_capacity(batch.len());
        for item in batch {
            let ok = match item {
                Item::Publish(f) => match self.enqueue(f) {
                    Some(Enqueued::Stored) => {
                        stored = true;
                        true
                    }
                    Some(Enqueued::Accepted) => true,
                    Some(Enqueued::Rejected) | None => false,
                },
                Item::Consumer(c) => self.consumer_item(from, c),
                Item::Flush => true,
                // MQTT across the cluster (`mqtt.rs`).
                Item::Mqtt(m) => self.mqtt_item(from, m),
            };
            oks.push(ok);
        }
        (oks, stored)
    }

    fn enqueue(&self, f: Forwarded) -> Option<Enqueued> {
        let v = self.broker.vhost(&f.vhost)?;
        let q = v.queue(&f.queue).ok()?;
        if q.remote().is_some() {
            // Not homed here (the sender's metadata is ahead of or behind ours).
            return None;
        }
        let m = decode(f.record)?;
        Some(q.enqueue_here(m))
    }
}

/// A forwarded record back to a message (its properties in AMQP 0-9-1's encoding, which every
/// adapter of this broker uses).
pub(super) fn decode(record: Vec<u8>) -> Option<Message> {
    let r = MessageRecord::decode(Bytes::from(record))?;
    let exchange = std::str::from_utf8(&r.exchange).ok()?;
    let key = std::str::from_utf8(&r.routing_key).ok()?;
    Some(Message::new(
        exchange,
        key,
        Properties::new(r.properties, &crate::amqp::AMQP_CODEC),
        r.body,
        0,
    ))
}

/// The sender of one peer's batches: one in flight at a time (see the module's comment).
async fn send_batches(peer: Weak<PeerOut>, forwarder: Weak<Forwarder>) {
    loop {
        let Some(p) = peer.upgrade() else { return };
        let batch: Vec<Outgoing> = {
            let mut q = p.queue.lock();
            let mut bytes = 0;
            let mut n = 0;
            while n < q.len() && n < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                bytes += q[n].size();
                n += 1;
            }
            p.bytes
                .fetch_sub(bytes, std::sync::atomic::Ordering::Relaxed);
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            // A `notify_one` made meanwhile left a permit: no wake-up is lost.
            p.wake.notified().await;
            continue;
        }
        let Some(f) = forwarder.upgrade() else { return };
        let (items, thens): (Vec<Item>, Vec<Then>) =
            batch.into_iter().map(|o| (o.item, o.then)).unzip();
        let count = items.len();
        let oks = match f.cluster.get().cloned() {
            None => None,
            Some(cluster) => match postcard::to_stdvec(&ToNode::Batch(items)) {
                Err(e) => {
                    tracing::warn!(node = %p.node, "cluster: cannot encode forwarded messages: {e}");
                    None
                }
                Ok(body) => match cluster.forward(&p.node, body, FORWARD_TIMEOUT).await {
                    Ok(bytes) => {
                        f.mark(&p.node, true);
                        match postcard::from_bytes::<FromNode>(&bytes) {
                            Ok(FromNode::Done(oks)) if oks.len() == count => Some(oks),
                            _ => None,
                        }
                    }
                    Err(e) => {
                        if matches!(e, ForwardError::Unreachable { .. }) {
                            f.mark(&p.node, false);
                        }
                        tracing::debug!(node = %p.node, "cluster: forwarded batch lost: {e}");
                        None
                    }
                },
            },
        };
        for (i, then) in thens.into_iter().enumerate() {
            let ok = oks.as_ref().is_some_and(|o| o[i]);
            then.answered(ok);
        }
    }
}

/// Follows node liveness (`Cluster::node_states`, the cluster crate's one ping per pair of
/// nodes; docs/clustering.md "Node liveness"): a home found down makes its queues unavailable
/// (declares and consumes get RabbitMQ's error, publishes to them are dropped and nacked), and
/// one up again (also after a failed batch marked it down) available. Looked at on each change
/// and every [`PROBE_EVERY`].
async fn probe(forwarder: Weak<Forwarder>) {
    let mut watch: Option<tokio::sync::watch::Receiver<pigeon_cluster::NodeStates>> = None;
    loop {
        match watch.as_mut() {
            Some(w) => {
                let _ = tokio::time::timeout(PROBE_EVERY, w.changed()).await;
            }
            None => tokio::time::sleep(PROBE_EVERY).await,
        }
        let Some(f) = forwarder.upgrade() else { return };
        let Some(cluster) = f.cluster.get().cloned() else {
            continue;
        };
        if watch.is_none() {
            watch = Some(cluster.watch_node_states());
        }
        let states = cluster.node_states();
        for node in cluster.member_names() {
            if node == f.me {
                continue;
            }
            let up = states.get(&node) != Some(&pigeon_cluster::NodeState::Down);
            f.mark(&node, up);
        }
    }
}

/// The node's answerer of peers' broker messages.
struct Answerer(Weak<Forwarder>);

impl ForwardHandler for Answerer {
    fn handle(&self, from: String, body: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>> {
        let forwarder = self.0.upgrade();
        Box::pin(async move {
            let Some(f) = forwarder else {
                return Err("the broker is stopping".to_string());
            };
            let message: ToNode = postcard::from_bytes(&body)
                .map_err(|e| format!("undecodable message from {from}: {e}"))?;
            let answer = match message {
                ToNode::Batch(batch) => {
                    let (mut oks, stored) = f.handle_batch(&from, batch);
                    if stored {
                        // Confirmed after the home's fsync, as a local publish is.
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        f.store.on_synced(
                            f.store.current_epoch(),
                            Box::new(move |r| {
                                let _ = tx.send(r.is_ok());
                            }),
                        );
                        if !rx.await.unwrap_or(false) {
                            oks.iter_mut().for_each(|o| *o = false);
                        }
                    }
                    FromNode::Done(oks)
                }
                ToNode::Query(q) => FromNode::Answer(f.answer(&from, q)),
                // MQTT across the cluster (`mqtt.rs`): a session takeover.
                ToNode::Mqtt(request) => FromNode::Mqtt(f.mqtt_request(request).await),
            };
            postcard::to_stdvec(&answer).map_err(|e| e.to_string())
        })
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The remote proxy of a queue homed on `node` (set on the queue by `homes.rs`).
pub(crate) fn home(forwarder: &Arc<Forwarder>, node: &str) -> Arc<Home> {
    Arc::new(Home {
        node: node.to_string(),
        forwarder: Arc::downgrade(forwarder),
    })
}
