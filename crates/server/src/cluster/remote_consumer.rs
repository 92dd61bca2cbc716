//! Consumers on one node of a classic queue homed on another (issue 13 item 3,
//! docs/clustering.md "Classic queues in a cluster").
//!
//! A `basic.consume` on node B of a queue homed on A registers the consumer on B's proxy of
//! the queue (so that B's channel, `consumer_count` and a deletion see it, as for a local
//! queue) and sends A an `Attach` with the consumer's prefetch. A adds a [`RemoteSink`] to the
//! real queue: the queue delivers to it as to any consumer, within the prefetch, and each
//! delivery goes to B in the per-peer batches (`forward.rs`); B hands it to the consumer with
//! B's own delivery tag (the message keeps A's sequence number). Acks, nacks and rejects on B
//! reach the proxy's `settle`/`requeue`/`reject`, which send them back to A in the same
//! batches; A settles them in the queue and delivers more. Cancelling the consumer on B (or
//! closing its channel or connection, which first gives its unacknowledged messages back)
//! cancels it on A.
//!
//! **Node down.** When A finds B down, it removes B's consumers and gives every message they
//! held back to the queue (redelivered), as RabbitMQ does for the consumers of a channel whose
//! node went down. When B finds A down, it cancels its consumers of A's queues as RabbitMQ's
//! channel does when a queue's node goes down (rabbit_channel
//! `handle_consuming_queue_down_or_eol`: `basic.cancel` to a client that announced
//! `consumer_cancel_notify`, the consumer silently dropped otherwise); their unacknowledged
//! messages are redelivered by A, and a later ack of one of them is ignored.
//!
//! `basic.get`, `queue.purge` and the counts of a queue homed elsewhere are questions to its
//! home (`remote_queue.rs`). Not done: the channel's global prefetch is applied on B only.

use super::forward::{self, Forwarder, Item, Then};
use parking_lot::Mutex;
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{ConsumerEntry, ConsumerSink, Delivered, Outcome, Queue, QueuedMessage};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// Consumer owner ids of remote consumers on the home node: far above channel and session
/// ids, which count from 1.
const OWNER_BASE: u64 = 1 << 62;

/// The consumer items of a batch.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ConsumerItem {
    /// To the home: attach the sender's consumer `id` to a queue homed here.
    Attach {
        id: u64,
        vhost: String,
        queue: String,
        prefetch: u32,
        no_ack: bool,
        exclusive: bool,
        priority: i32,
    },
    /// To the home: the sender's consumer `id` is gone.
    Cancel { id: u64 },
    /// To the home: the sender's consumers settled these deliveries (the home's sequence
    /// numbers).
    Settle {
        vhost: String,
        queue: String,
        seqs: Vec<u64>,
        outcome: WireOutcome,
    },
    /// From the home: a delivery to consumer `id`.
    Deliver {
        id: u64,
        seq: u64,
        redelivered: bool,
        delivery_count: u32,
        #[serde(with = "serde_bytes")]
        record: Vec<u8>,
    },
    /// From the home: the sender's consumer `id` was not attached (a quorum queue with no
    /// member on the home: its consumers here attach at another member, `quorum/outsider.rs`).
    /// Added with the quorum consumers' re-attachment: a node older than it cannot read it.
    Refused { id: u64 },
}

/// [`Outcome`] on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum WireOutcome {
    Ack,
    Requeue,
    Reject,
}

impl ConsumerItem {
    pub(super) fn size(&self) -> usize {
        match self {
            ConsumerItem::Deliver { record, .. } => record.len(),
            ConsumerItem::Settle { seqs, .. } => seqs.len() * 8,
            _ => 64,
        }
    }
}

/// How a delivery from the home reaches a consumer here (its proxy queue, the message).
pub(crate) type DeliverFn = Box<dyn Fn(&Arc<Queue>, QueuedMessage) -> bool + Send + Sync>;

/// A consumer on this node of a queue homed elsewhere.
pub(crate) struct LocalConsumer {
    pub proxy: Arc<Queue>,
    pub home: String,
    pub owner: u64,
    pub tag: String,
    /// Hands a delivery to the consumer (false: it cannot take it, its channel is closed).
    pub deliver: DeliverFn,
    /// Tells the consumer it was cancelled by the broker.
    pub cancelled: Box<dyn Fn() + Send + Sync>,
}

/// Both sides' consumers.
#[derive(Default)]
pub(crate) struct Consumers {
    /// On the home: other nodes' consumers, by (node, id).
    sinks: Mutex<HashMap<(String, u64), Arc<RemoteSink>>>,
    /// On the consumer's node: its consumers of queues homed elsewhere, by id.
    local: Mutex<HashMap<u64, Arc<LocalConsumer>>>,
    next: AtomicU64,
}

/// On the home node: a consumer on another node, as the queue sees it.
pub(crate) struct RemoteSink {
    this: Weak<RemoteSink>,
    node: String,
    id: u64,
    queue: Arc<Queue>,
    prefetch: u32,
    no_ack: bool,
    owner: u64,
    tag: Arc<str>,
    /// Delivered and not settled yet, by the queue's sequence number.
    held: Mutex<HashMap<u64, QueuedMessage>>,
    forwarder: Weak<Forwarder>,
    cancelled: AtomicBool,
}

impl ConsumerSink for RemoteSink {
    // A quorum queue's `Checkout` takes the consumer's prefetch (consumers on a node without
    // a member of the group, `cluster/quorum/outsider.rs`).
    fn prefetch(&self) -> u32 {
        if self.no_ack {
            0
        } else {
            self.prefetch
        }
    }

    fn try_reserve(&self) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        if self.no_ack || self.prefetch == 0 {
            // No window: at most a batch waiting for the peer.
            return self
                .forwarder
                .upgrade()
                .is_some_and(|f| f.backlog(&self.node) < forward::MAX_BATCH);
        }
        self.held.lock().len() < self.prefetch as usize
    }

    fn deliver(&self, queue: &Arc<Queue>, message: QueuedMessage) -> Delivered {
        let Some(f) = self.forwarder.upgrade() else {
            return Delivered::Settled;
        };
        let record = MessageRecordRef::in_queue(&message.message, queue.name(), 0)
            .encode()
            .to_vec();
        let item = Item::Consumer(ConsumerItem::Deliver {
            id: self.id,
            seq: message.seq,
            redelivered: message.redelivered,
            delivery_count: message.delivery_count,
            record,
        });
        if self.no_ack {
            f.push(&self.node, item, Then::Nothing);
            return Delivered::Settled;
        }
        let seq = message.seq;
        self.held.lock().insert(seq, message);
        let then = match self.this.upgrade() {
            Some(me) => Then::Delivered(me, seq),
            None => Then::Nothing,
        };
        f.push(&self.node, item, then);
        Delivered::Pending
    }

    fn cancelled(&self) {
        // The queue was deleted: the proxies on the other nodes are deleted with it (the
        // metadata log) and cancel their consumers there.
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

impl RemoteSink {
    /// A delivery the consumer's node did not take goes back to the queue.
    pub(crate) fn give_back(&self, seq: u64) {
        let m = self.held.lock().remove(&seq);
        if let Some(m) = m {
            self.queue.requeue([m]);
        }
    }

    fn take(&self, seqs: &[u64]) -> Vec<QueuedMessage> {
        let mut held = self.held.lock();
        seqs.iter().filter_map(|s| held.remove(s)).collect()
    }

    /// The consumer is gone (its node is down): removed, what it held back in the queue.
    fn drop_all(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        let last = self.queue.remove_consumer(self.owner, &self.tag) == Some(true);
        let held: Vec<QueuedMessage> = self.held.lock().drain().map(|(_, m)| m).collect();
        if !held.is_empty() {
            let mut held = held;
            held.sort_by_key(|m| m.seq);
            self.queue.requeue(held);
        }
        if last {
            // An MQTT share group's last member (`mqtt_shared.rs`).
            if let Some(f) = self.forwarder.upgrade() {
                f.shared_last_consumer_left(&self.queue);
            }
        }
    }
}

impl Forwarder {
    /// A consumer on this node of `proxy`, a queue homed elsewhere: attached at its home.
    pub(crate) fn attach_consumer(
        &self,
        consumer: LocalConsumer,
        entry: &ConsumerEntry,
        prefetch: u32,
        no_ack: bool,
    ) {
        let id = self.consumers.next.fetch_add(1, Ordering::Relaxed) + 1;
        let item = Item::Consumer(ConsumerItem::Attach {
            id,
            vhost: consumer.proxy.vhost_name().to_string(),
            queue: consumer.proxy.name().to_string(),
            prefetch,
            no_ack,
            exclusive: entry.exclusive,
            priority: entry.priority,
        });
        let home = consumer.home.clone();
        self.consumers.local.lock().insert(id, Arc::new(consumer));
        self.push(&home, item, Then::Nothing);
    }

    /// This node's consumers of `proxy` attach again at its home under new ids, each new
    /// `Attach` sent before the old id's `Cancel` (in one batch, in order), so the home's queue
    /// never passes through zero consumers (a share group's queue is auto-delete:
    /// `mqtt_shared.rs`). For a home that restarted or dropped them the `Cancel`s find nothing.
    /// Returns the (owner, tag) of the consumers attached again. (Helper sharemove.)
    pub(crate) fn reattach_consumers(
        &self,
        proxy: &Arc<Queue>,
        prefetch: u32,
    ) -> Vec<(u64, String)> {
        let moved: Vec<(u64, u64, Arc<LocalConsumer>)> = {
            let mut local = self.consumers.local.lock();
            let ids: Vec<u64> = local
                .iter()
                .filter(|(_, c)| Arc::ptr_eq(&c.proxy, proxy))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|old| {
                    let c = local.remove(&old)?;
                    let new = self.consumers.next.fetch_add(1, Ordering::Relaxed) + 1;
                    local.insert(new, Arc::clone(&c));
                    Some((old, new, c))
                })
                .collect()
        };
        let mut done = Vec::with_capacity(moved.len());
        for (old, new, c) in moved {
            let attach = Item::Consumer(ConsumerItem::Attach {
                id: new,
                vhost: proxy.vhost_name().to_string(),
                queue: proxy.name().to_string(),
                prefetch,
                no_ack: false,
                exclusive: false,
                priority: 0,
            });
            self.push(&c.home, attach, Then::Nothing);
            let cancel = Item::Consumer(ConsumerItem::Cancel { id: old });
            self.push(&c.home, cancel, Then::Nothing);
            done.push((c.owner, c.tag.clone()));
        }
        done
    }

    /// This node's consumer `tag` of `owner` on a proxy was removed: cancelled at the home.
    pub(crate) fn cancel_consumer(&self, queue: &Arc<Queue>, owner: u64, tag: &str) {
        let found = {
            let mut local = self.consumers.local.lock();
            let id = local
                .iter()
                .find(|(_, c)| c.owner == owner && c.tag == tag && Arc::ptr_eq(&c.proxy, queue))
                .map(|(id, _)| *id);
            id.and_then(|id| local.remove(&id).map(|c| (id, c)))
        };
        if let Some((id, c)) = found {
            self.push(
                &c.home,
                Item::Consumer(ConsumerItem::Cancel { id }),
                Then::Nothing,
            );
        }
    }

    /// Settlements of deliveries from a queue homed elsewhere, sent back to its home.
    pub(crate) fn settle_remote(
        &self,
        queue: &Arc<Queue>,
        home: &str,
        seqs: Vec<u64>,
        outcome: Outcome,
    ) {
        if seqs.is_empty() {
            return;
        }
        let outcome = match outcome {
            Outcome::Ack => WireOutcome::Ack,
            Outcome::Requeue => WireOutcome::Requeue,
            Outcome::Reject => WireOutcome::Reject,
        };
        let item = Item::Consumer(ConsumerItem::Settle {
            vhost: queue.vhost_name().to_string(),
            queue: queue.name().to_string(),
            seqs,
            outcome,
        });
        self.push(home, item, Then::Nothing);
    }

    /// On the home: `message`, taken from `queue` by a `basic.get` (with acknowledgement) of
    /// a client on node `from`, held until that node settles it (by its sequence number, as a
    /// remote consumer's deliveries) or goes down (then given back). Not a consumer of the
    /// queue: a sink of its own, removed once settled.
    pub(super) fn hold_for_get(&self, from: &str, queue: &Arc<Queue>, message: QueuedMessage) {
        let id = (1 << 63) + self.consumers.next.fetch_add(1, Ordering::Relaxed) + 1;
        let seq = message.seq;
        let sink = Arc::new_cyclic(|this| RemoteSink {
            this: this.clone(),
            node: from.to_string(),
            id,
            queue: Arc::clone(queue),
            prefetch: 0,
            no_ack: false,
            owner: OWNER_BASE + id,
            tag: Arc::from(format!("{from}/get/{id}").as_str()),
            held: Mutex::new(HashMap::from([(seq, message)])),
            forwarder: self.this.clone(),
            cancelled: AtomicBool::new(true),
        });
        self.consumers
            .sinks
            .lock()
            .insert((from.to_string(), id), sink);
    }

    /// Handles one consumer item of a peer's batch; whether it was done.
    pub(super) fn consumer_item(&self, from: &str, item: ConsumerItem) -> bool {
        match item {
            ConsumerItem::Attach {
                id,
                vhost,
                queue,
                prefetch,
                no_ack,
                exclusive,
                priority,
            } => {
                let Some(q) = self
                    .broker
                    .vhost(&vhost)
                    .and_then(|v| v.queue(&queue).ok())
                    .filter(|q| q.remote().is_none())
                else {
                    return false;
                };
                if let Some(cluster) = self.cluster().filter(|_| q.is_quorum()) {
                    if !super::quorum::member_here(cluster, &q) {
                        // No replica here to serve it (never relayed: two nodes without a
                        // member would attach at each other).
                        self.push(
                            from,
                            Item::Consumer(ConsumerItem::Refused { id }),
                            Then::Nothing,
                        );
                        return false;
                    }
                }
                let n = self.consumers.next.fetch_add(1, Ordering::Relaxed) + 1;
                let sink = Arc::new_cyclic(|this| RemoteSink {
                    this: this.clone(),
                    node: from.to_string(),
                    id,
                    queue: Arc::clone(&q),
                    prefetch,
                    no_ack,
                    owner: OWNER_BASE + n,
                    tag: Arc::from(format!("{from}/{id}").as_str()),
                    held: Mutex::default(),
                    forwarder: self.this.clone(),
                    cancelled: AtomicBool::new(false),
                });
                self.consumers
                    .sinks
                    .lock()
                    .insert((from.to_string(), id), Arc::clone(&sink));
                let entry = ConsumerEntry {
                    tag: Arc::clone(&sink.tag),
                    owner: sink.owner,
                    exclusive,
                    priority,
                    sink: Arc::clone(&sink) as _,
                };
                if let Err(e) = q.add_consumer(entry, || {}) {
                    tracing::debug!(queue, "cluster: a remote consumer was refused: {e}");
                    self.consumers.sinks.lock().remove(&(from.to_string(), id));
                    return false;
                }
                true
            }
            ConsumerItem::Cancel { id } => {
                let key = (from.to_string(), id);
                let sink = self.consumers.sinks.lock().get(&key).cloned();
                if let Some(s) = sink {
                    s.cancelled.store(true, Ordering::Relaxed);
                    if s.queue.remove_consumer(s.owner, &s.tag) == Some(true) {
                        // Its last consumer: an MQTT share group's queue goes (`mqtt_shared.rs`).
                        self.shared_last_consumer_left(&s.queue);
                    }
                    // What it holds may still be acked (basic.cancel keeps unacked messages).
                    if s.held.lock().is_empty() {
                        self.consumers.sinks.lock().remove(&key);
                    }
                }
                true
            }
            ConsumerItem::Settle {
                vhost,
                queue,
                seqs,
                outcome,
            } => {
                let Some(q) = self.broker.vhost(&vhost).and_then(|v| v.queue(&queue).ok()) else {
                    return false;
                };
                let sinks: Vec<Arc<RemoteSink>> = self
                    .consumers
                    .sinks
                    .lock()
                    .iter()
                    .filter(|((node, _), s)| node == from && Arc::ptr_eq(&s.queue, &q))
                    .map(|(_, s)| Arc::clone(s))
                    .collect();
                let mut taken = Vec::new();
                for s in &sinks {
                    taken.extend(s.take(&seqs));
                    if s.cancelled.load(Ordering::Relaxed) && s.held.lock().is_empty() {
                        self.consumers.sinks.lock().remove(&(s.node.clone(), s.id));
                    }
                }
                match outcome {
                    WireOutcome::Ack => q.settle(taken.iter()),
                    WireOutcome::Requeue => q.requeue(taken),
                    WireOutcome::Reject => q.reject(taken),
                }
                q.dispatch();
                true
            }
            ConsumerItem::Refused { id } => {
                let c = self.consumers.local.lock().remove(&id);
                match (c, self.cluster()) {
                    (Some(c), Some(cluster)) if c.proxy.is_quorum() => {
                        super::quorum::attach_refused(cluster, &c.proxy, from, c.owner, &c.tag);
                    }
                    (Some(c), _) => {
                        // Not sent for classic queues; kept as it was.
                        self.consumers.local.lock().insert(id, c);
                    }
                    _ => {}
                }
                true
            }
            ConsumerItem::Deliver {
                id,
                seq,
                redelivered,
                delivery_count,
                record,
            } => {
                let Some(c) = self.consumers.local.lock().get(&id).cloned() else {
                    // An attachment this node left (its serving node was found down, and has
                    // come back): the home removes it, and gives the message back.
                    self.push(
                        from,
                        Item::Consumer(ConsumerItem::Cancel { id }),
                        Then::Nothing,
                    );
                    return false;
                };
                let Some(message) = forward::decode(record) else {
                    return false;
                };
                let taken = (c.deliver)(
                    &c.proxy,
                    QueuedMessage {
                        message,
                        seq,
                        redelivered,
                        expires_at: None,
                        delivery_count,
                        persisted: false,
                    },
                );
                if !taken && c.proxy.is_quorum() {
                    // A quorum consumer's attachment it replaced (`quorum/outsider.rs`): the
                    // home stops delivering to it.
                    self.consumers.local.lock().remove(&id);
                    self.push(
                        from,
                        Item::Consumer(ConsumerItem::Cancel { id }),
                        Then::Nothing,
                    );
                }
                taken
            }
        }
    }

    /// `node` went down: its consumers of queues homed here are removed (what they held is
    /// redelivered), and this node's consumers of queues homed there are cancelled.
    pub(super) fn node_down(&self, node: &str) {
        // MQTT share groups' members attach again once `node` answers (`mqtt_shared_move.rs`,
        // helper sharemove): noted before the groups lose their remote consumers.
        self.shared_peer_lost(node);
        let gone: Vec<Arc<RemoteSink>> = {
            let mut sinks = self.consumers.sinks.lock();
            let keys: Vec<(String, u64)> =
                sinks.keys().filter(|(n, _)| n == node).cloned().collect();
            keys.iter().filter_map(|k| sinks.remove(k)).collect()
        };
        for s in gone {
            s.drop_all();
        }
        let cancelled: Vec<Arc<LocalConsumer>> = {
            let mut local = self.consumers.local.lock();
            let ids: Vec<u64> = local
                .iter()
                .filter(|(_, c)| c.home == node)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| local.remove(id)).collect()
        };
        // A quorum queue's consumers attach at another member of its group
        // (`quorum/outsider.rs`), as RabbitMQ's carry on with the group's new leader.
        let mut served: Vec<Arc<Queue>> = Vec::new();
        for c in cancelled {
            if c.proxy.is_quorum() {
                if !served.iter().any(|q| Arc::ptr_eq(q, &c.proxy)) {
                    served.push(Arc::clone(&c.proxy));
                }
                continue;
            }
            (c.cancelled)();
            c.proxy.remove_consumer(c.owner, &c.tag);
        }
        if let Some(cluster) = self.cluster() {
            for q in served {
                super::quorum::serving_lost(cluster, &q);
            }
        }
    }
}
