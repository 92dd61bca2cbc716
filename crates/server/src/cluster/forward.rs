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
/// How often the peers are probed for liveness (a down home makes its queues unavailable).
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(700);

/// A broker message from one node to another (the body of `Request::Forward`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToNode {
    /// Messages routed on the sender to queues homed here, in publish order.
    Publish(Vec<Forwarded>),
}

/// One forwarded message and the queue it was routed to.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Forwarded {
    pub vhost: String,
    pub queue: String,
    /// The message as a queue log record (`MessageRecordRef::encode`).
    pub record: Vec<u8>,
}

/// The answers (the body of `Response::Forwarded`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromNode {
    /// To `Publish`: for each message, whether its queue took it (and, if it wrote it to its
    /// log, synced it).
    Published(Vec<bool>),
}

/// One message waiting to be forwarded.
struct Outgoing {
    forwarded: Forwarded,
    confirm: Option<Arc<RemoteConfirm>>,
}

/// The outgoing queue to one peer and what wakes its sender.
struct PeerOut {
    node: String,
    queue: Mutex<VecDeque<Outgoing>>,
    wake: Notify,
}

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

    /// This node's name.
    pub(crate) fn me(&self) -> &str {
        &self.me
    }

    /// Whether `node` is believed up (this node always is).
    pub(crate) fn is_up(&self, node: &str) -> bool {
        node == self.me || !self.down.lock().contains(node)
    }

    fn mark(&self, node: &str, up: bool) {
        let mut down = self.down.lock();
        if up {
            if down.remove(node) {
                tracing::info!(%node, "cluster: node is back: its classic queues are available");
            }
        } else if down.insert(node.to_string()) {
            tracing::warn!(%node, "cluster: node is down or unreachable: its classic queues are unavailable");
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
        let out = Outgoing {
            forwarded: Forwarded {
                vhost: queue.vhost_name().to_string(),
                queue: queue.name().to_string(),
                record,
            },
            confirm,
        };
        let peer = self.peer(node);
        peer.queue.lock().push_back(out);
        peer.wake.notify_one();
    }

    fn peer(&self, node: &str) -> Arc<PeerOut> {
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(node) {
            return Arc::clone(p);
        }
        let peer = Arc::new(PeerOut {
            node: node.to_string(),
            queue: Mutex::default(),
            wake: Notify::new(),
        });
        peers.insert(node.to_string(), Arc::clone(&peer));
        self.runtime
            .spawn(send_batches(Arc::downgrade(&peer), self.this.clone()));
        peer
    }

    /// Enqueues a peer's batch in the queues homed here; whether each was taken, and whether
    /// any was written to a queue log (then the answer waits for the store's sync).
    fn enqueue_batch(&self, batch: Vec<Forwarded>) -> (Vec<bool>, bool) {
        let mut stored = false;
        let mut oks = Vec::with_capacity(batch.len());
        for f in batch {
            let ok = (|| {
                let v = self.broker.vhost(&f.vhost)?;
                let q = v.queue(&f.queue).ok()?;
                if q.remote().is_some() {
                    // Not homed here (the sender's metadata is ahead of or behind ours).
                    return None;
                }
                let m = decode(f.record)?;
                match q.enqueue_here(m) {
                    Enqueued::Rejected => None,
                    Enqueued::Stored => {
                        stored = true;
                        Some(())
                    }
                    Enqueued::Accepted => Some(()),
                }
            })()
            .is_some();
            oks.push(ok);
        }
        (oks, stored)
    }
}

/// A forwarded record back to a message (its properties in AMQP 0-9-1's encoding, which every
/// adapter of this broker uses).
fn decode(record: Vec<u8>) -> Option<Message> {
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
                bytes += q[n].forwarded.record.len();
                n += 1;
            }
            q.drain(..n).collect()
        };
        if batch.is_empty() {
            // A `notify_one` made meanwhile left a permit: no wake-up is lost.
            p.wake.notified().await;
            continue;
        }
        let Some(f) = forwarder.upgrade() else { return };
        let (messages, confirms): (Vec<Forwarded>, Vec<Option<Arc<RemoteConfirm>>>) = batch
            .into_iter()
            .map(|o| (o.forwarded, o.confirm))
            .unzip();
        let oks = match f.cluster.get().cloned() {
            None => None,
            Some(cluster) => match postcard::to_stdvec(&ToNode::Publish(messages)) {
                Err(e) => {
                    tracing::warn!(node = %p.node, "cluster: cannot encode forwarded messages: {e}");
                    None
                }
                Ok(body) => match cluster.forward(&p.node, body, FORWARD_TIMEOUT).await {
                    Ok(bytes) => {
                        f.mark(&p.node, true);
                        match postcard::from_bytes::<FromNode>(&bytes) {
                            Ok(FromNode::Published(oks)) if oks.len() == confirms.len() => {
                                Some(oks)
                            }
                            _ => None,
                        }
                    }
                    Err(e) => {
                        if matches!(e, ForwardError::Unreachable { .. }) {
                            f.mark(&p.node, false);
                        }
                        tracing::debug!(node = %p.node, "cluster: forwarded messages lost: {e}");
                        None
                    }
                },
            },
        };
        for (i, c) in confirms.into_iter().enumerate() {
            if let Some(c) = c {
                c.settle(oks.as_ref().is_some_and(|o| o[i]));
            }
        }
    }
}

/// Probes every peer now and then: a home found down makes its queues unavailable (declares
/// and consumes get RabbitMQ's error, publishes to them are dropped and nacked).
async fn probe(forwarder: Weak<Forwarder>) {
    loop {
        tokio::time::sleep(PROBE_EVERY).await;
        let Some(f) = forwarder.upgrade() else { return };
        let Some(cluster) = f.cluster.get().cloned() else {
            continue;
        };
        for node in cluster.member_names() {
            if node == f.me {
                continue;
            }
            let Some(addr) = cluster.member_addr(&node) else {
                continue;
            };
            let up = cluster.probe(&addr, PROBE_TIMEOUT).await;
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
                ToNode::Publish(batch) => {
                    let (mut oks, stored) = f.enqueue_batch(batch);
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
                    FromNode::Published(oks)
                }
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
