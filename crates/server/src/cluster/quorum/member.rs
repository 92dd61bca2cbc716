//! One quorum queue on this node: the broker's [`QuorumBackend`] over the queue's Raft group.
//!
//! - **Writes** (publishes, consumer changes, acks) are queued in call order and proposed by one
//!   task per queue and node, which takes everything waiting while the previous entry commits
//!   into one entry (`QueueOp::Batch`): one fsync and one round trip carry many publishes, and
//!   the node's operations keep their order. On a node that does not lead the group, the entry
//!   is forwarded to the leader (`Cluster::write_queue`).
//! - **Deliveries** are effects of applied commands. Every member applies every command, so
//!   this node's member carries out the `Deliver` effects of this node's consumers from its own
//!   replica (it has the bodies): no delivery crosses the cluster link. Followers learn of a
//!   commit with the leader's next replication message, which openraft sends as soon as the
//!   commit index moves (`ReplicateCommitted`). Dead-lettering and timers are the leader's.
//! - A delivery's `seq`, as the channel sees it, is a handle of this node's
//!   (`Books::outstanding`) that maps back to the consumer and its delivery id for the ack.

// At-least-once dead-lettering's worker (helper dlxalo).
mod backend;
mod dlx;
mod effects;
use super::message;
use parking_lot::Mutex;
use pigeon_broker::queue::quorum::{QuorumBackend, QuorumCounts, QuorumPlacement, ReplicaConfirm};
use pigeon_broker::{
    Broker, ConsumerEntry, DeathReason, Delivered, Message, Outcome, Queue, QueuedMessage,
};
use pigeon_cluster::quorum::{
    ConsumerId, DeadLetterReason, DeadLettered, Delivery, Effect, Observer, Overflow, PublisherId,
    QueueConfig, QueueOp, QueueResponse, QuorumQueue, Reply, DEFAULT_DELIVERY_LIMIT,
};
use pigeon_cluster::{Cluster, GroupId, Member, NodeId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

/// The most operations in one entry.
const MAX_BATCH: usize = 1_024;

/// What to do with an operation's reply (`None`: it was not committed).
type Done = Box<dyn FnOnce(Option<&Reply>) + Send>;

struct Pending {
    op: QueueOp,
    done: Option<Done>,
}

/// A consumer of this node.
pub(super) struct Local {
    pub(super) entry: ConsumerEntry,
    /// Deliveries the consumer had no room for yet, in order.
    pub(super) waiting: VecDeque<QueuedMessage>,
    /// Served by a member node's replica (`outsider.rs`), not by a `Checkout` of this node.
    pub(super) attached: bool,
    /// Seen in this node's replica of the group (`liveness.rs`: a consumer the group dropped
    /// with `NodeDown` while this node was only slow checks out again).
    pub(super) seen: bool,
}

#[derive(Default)]
pub(super) struct Books {
    pub(super) consumers: HashMap<u64, Local>,
    /// Handle (a delivery's `seq`) -> (consumer key, delivery id).
    pub(super) outstanding: HashMap<u64, (u64, u64)>,
    next_handle: u64,
    next_key: u64,
}

/// This node's side of one quorum queue.
pub(crate) struct QuorumMember {
    pub(super) vhost: String,
    pub(super) name: String,
    pub(super) group: GroupId,
    pub(super) cluster: Cluster,
    /// Weak: the broker holds the queue, which holds this member (helper quorumone: a strong
    /// reference kept the broker, and its store, alive after a server's shutdown).
    broker: Weak<Broker>,
    me: NodeId,
    /// The group's members as the replicated metadata lists them (`DeclareQueue`'s `node`,
    /// then `SetQueueMembers`; empty when recovered without a record). Changed by
    /// `membership.rs` (quorummembers).
    pub(super) declared: Mutex<Vec<String>>,
    /// This node's member of the group, once started (none on a node outside the group). Not a
    /// `OnceLock`: a member removed (`delete_member`) stops, one added starts (membership.rs).
    pub(super) local: parking_lot::RwLock<Option<QuorumQueue>>,
    /// Known not to be a member (recovered without Raft state for the group).
    outsider: AtomicBool,
    ops: Mutex<Option<mpsc::UnboundedSender<Pending>>>,
    pub(super) books: Mutex<Books>,
    pub(super) queue: Weak<Queue>,
    /// This node's publisher id for the group's de-duplication, and its next sequence number.
    publisher: PublisherId,
    publish_seq: AtomicU64,
    /// Nodes the liveness probe found down (shared by the node's queues).
    down: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Consumer keys of this process start here (a restarted node's keys never collide with
    /// those its previous run left in the queue).
    key_base: u64,
    // --- quorum queue features (basic.get, ...; `ops.rs`) ---
    /// This member, for the answers of operations that outlive a call.
    pub(super) this: Weak<QuorumMember>,
    /// On a node without a member: the member node serving this node's consumers, and the
    /// attachment's epoch (`outsider.rs`).
    pub(super) serving: Mutex<super::outsider::Serving>,
    /// True once this node's member has started or is known not to exist: writes wait for
    /// it rather than being forwarded (a node of one has nowhere to forward them; helper
    /// quorumone).
    settled: tokio::sync::watch::Sender<bool>,
    /// At-least-once dead-lettering (`member/dlx.rs`).
    dlx: dlx::Worker,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The group's settings from the queue's arguments and policy: RabbitMQ 4's quorum queue
/// defaults (a delivery limit of 20; `x-delivery-limit` below 0 for none).
pub(super) fn config_of(queue: &Queue) -> QueueConfig {
    let s = queue.settings();
    // The lower of the argument and the policies' `delivery-limit` (`QueueSettings`), so
    // that a policy changes a running queue's limit too (`ops.rs`).
    let delivery_limit = match queue
        .options()
        .arguments
        .get("x-delivery-limit")
        .and_then(|v| v.as_i64())
    {
        Some(n) if n < 0 => None,
        _ => Some(s.delivery_limit.unwrap_or(DEFAULT_DELIVERY_LIMIT)),
    };
    QueueConfig {
        delivery_limit,
        max_length: s.max_length.map(|n| n as u64),
        max_length_bytes: s.max_length_bytes.map(|n| n as u64),
        overflow: match s.overflow {
            pigeon_broker::Overflow::DropHead => Overflow::DropHead,
            _ => Overflow::RejectPublish,
        },
        message_ttl: s.message_ttl,
        single_active_consumer: s.single_active_consumer,
        dead_letter_strategy: dlx::strategy(queue, &s),
    }
}

impl QuorumMember {
    /// This node's side of `queue`, whose group has `declared` members (empty: recovered, the
    /// group's own state tells). Starts this node's member if it is one.
    // The node's handles and the queue's placement; `restarted` added by quorummembers.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        cluster: &Cluster,
        broker: &Arc<Broker>,
        queue: &Arc<Queue>,
        vhost: &str,
        declared: Vec<String>,
        runtime: &tokio::runtime::Handle,
        down: &Arc<Mutex<std::collections::HashSet<String>>>,
        restarted: bool,
    ) -> Arc<QuorumMember> {
        let (tx, rx) = mpsc::unbounded_channel();
        let me = cluster.node_id();
        let nonce = unix_ms();
        let member = Arc::new_cyclic(|this| QuorumMember {
            this: this.clone(),
            serving: Mutex::default(),
            vhost: vhost.to_string(),
            name: queue.name().to_string(),
            group: pigeon_cluster::quorum::queue_group(vhost, queue.name()),
            cluster: cluster.clone(),
            broker: Arc::downgrade(broker),
            me,
            outsider: AtomicBool::new(false),
            local: parking_lot::RwLock::new(None),
            ops: Mutex::new(Some(tx)),
            books: Mutex::new(Books::default()),
            queue: Arc::downgrade(queue),
            publisher: PublisherId(me ^ nonce.rotate_left(32)),
            publish_seq: AtomicU64::new(0),
            key_base: nonce << 20,
            down: Arc::clone(down),
            declared: Mutex::new(declared),
            settled: tokio::sync::watch::Sender::new(false),
            dlx: dlx::Worker::default(),
        });
        runtime.spawn(Arc::clone(&member).propose_loop(rx));
        // Membership at restart (quorummembers): a node the metadata lists always starts its
        // member, even one that crashed before the group reached it (it catches up from the
        // leader); without a record, the group's own state tells.
        let recovering = member.declared.lock().is_empty();
        if recovering || member.declared.lock().iter().any(|n| n == cluster.name()) {
            let config = config_of(queue);
            runtime.spawn(Arc::clone(&member).start(config, recovering, restarted));
        } else {
            member.outsider.store(true, Ordering::Relaxed);
            member.settled.send_replace(true);
        }
        member
    }

    /// Starts this node's member; the first listed node forms the group if nothing did
    /// (`initialize` on a node whose log holds the group's state does nothing). `restarted`:
    /// the node started again, so what its consumers held goes back to the queue.
    pub(super) async fn start(
        self: Arc<Self>,
        config: QueueConfig,
        recovering: bool,
        restarted: bool,
    ) {
        let (tx, rx) = mpsc::unbounded_channel::<QueueResponse>();
        let observer: Observer = Arc::new(move |r: &QueueResponse| {
            if !r.effects.is_empty() {
                let _ = tx.send(r.clone());
            }
        });
        let qq = match QuorumQueue::start_observed(
            &self.cluster,
            self.group,
            config,
            Some(observer),
        )
        .await
        {
            Ok(qq) => qq,
            Err(e) => {
                tracing::error!(queue = %self.name, vhost = %self.vhost, error = %e, "quorum queue: cannot start this node's member");
                self.settled.send_replace(true);
                return;
            }
        };
        let initialized = qq.raft().is_initialized().await.unwrap_or(false);
        let alone = self.cluster.status().members.len() == 1;
        if recovering && !initialized && alone {
            // A node of one (no `[cluster]`, or a cluster of one) whose group never formed
            // (stopped between the declare and the group's first entry): this node is the
            // only member there can be, so it forms the group now (helper quorumone).
            let me = Member {
                name: self.cluster.name().to_string(),
                addr: self.cluster.status().members[0].addr.clone(),
            };
            if let Err(e) = qq.initialize(&[me]).await {
                tracing::warn!(queue = %self.name, error = %e, "quorum queue: forming the group failed");
            }
        } else if recovering && !initialized {
            // Never a member here (or never reached by the group): writes go to the members.
            qq.shutdown().await;
            self.outsider.store(true, Ordering::Relaxed);
            self.settled.send_replace(true);
            return;
        }
        self.outsider.store(false, Ordering::Relaxed);
        let declared = self.declared.lock().clone();
        if !initialized && declared.first().map(String::as_str) == Some(self.cluster.name()) {
            let known = self.cluster.status().members;
            let members: Vec<Member> = declared
                .iter()
                .filter_map(|n| known.iter().find(|m| &m.name == n))
                .map(|m| Member {
                    name: m.name.clone(),
                    addr: m.addr.clone(),
                })
                .collect();
            if let Err(e) = qq.initialize(&members).await {
                tracing::warn!(queue = %self.name, error = %e, "quorum queue: forming the group failed");
            }
        }
        *self.local.write() = Some(qq);
        self.settled.send_replace(true);
        tokio::spawn(Arc::clone(&self).effects_loop(rx));
        self.dlx_started();
        if recovering || restarted {
            // What this node's consumers held before it stopped goes back to the queue.
            self.push(QueueOp::NodeDown(self.me), None);
        }
    }

    /// Stops this node's member (the queue was deleted); its log and snapshot go too, so that
    /// a queue declared again under the same name starts empty (`QuorumQueue::destroy`).
    pub(super) fn stop(&self) {
        if self.ops.lock().take().is_none() {
            return; // stopped already (the broker's deletion and the registry's both stop it)
        }
        if let Some(qq) = self.local() {
            drop(qq.destroy());
        }
    }

    /// Stops this node's member without deleting anything (the server is shutting down;
    /// helper quorumone).
    pub(super) async fn close(&self) {
        self.ops.lock().take();
        let qq = self.local.write().take();
        if let Some(qq) = qq {
            qq.shutdown().await;
        }
    }

    // Membership changes (quorummembers, membership.rs).
    /// This node's name.
    pub(super) fn cluster_name(&self) -> String {
        self.cluster.name().to_string()
    }

    /// The broker's queue, while it exists.
    pub(super) fn queue_arc(&self) -> Option<Arc<Queue>> {
        self.queue.upgrade()
    }

    /// This node has no member of the group any more.
    pub(super) fn mark_outsider(&self) {
        self.outsider.store(true, Ordering::Relaxed);
    }
    // End of membership changes.

    /// The group's leader, as this node knows it.
    pub(crate) fn leader(&self) -> Option<String> {
        self.local().and_then(|qq| qq.leader_name())
    }

    /// This node's member of the group, if it runs one.
    pub(super) fn local(&self) -> Option<QuorumQueue> {
        self.local.read().clone()
    }

    /// The group's members (this node's view), or the declared ones.
    pub(crate) fn members(&self) -> Vec<String> {
        if let Some(qq) = self.local() {
            let m = qq.raft().metrics().borrow().clone();
            let mut names: Vec<String> = m
                .membership_config
                .membership()
                .nodes()
                .map(|(_, n)| n.name.clone())
                .collect();
            names.sort();
            if !names.is_empty() {
                return names;
            }
        }
        self.declared.lock().clone()
    }

    fn is_leader(&self) -> bool {
        self.local().is_some_and(|qq| qq.is_leader())
    }

    /// Proposes `op` after every operation queued before it.
    pub(super) fn push(&self, op: QueueOp, done: Option<Done>) {
        let sent = match self.ops.lock().as_ref() {
            Some(tx) => tx.send(Pending { op, done }).map_err(|e| e.0.done),
            None => Err(done),
        };
        if let Err(Some(done)) = sent {
            done(None);
        }
    }

    /// Where writes go when this node has no member: the declared members, or every other node.
    pub(super) fn candidates(&self) -> Vec<String> {
        let declared = self.declared.lock().clone();
        if !declared.is_empty() {
            return declared;
        }
        let me = self.cluster.name().to_string();
        self.cluster
            .status()
            .members
            .into_iter()
            .map(|m| m.name)
            .filter(|n| *n != me)
            .collect()
    }

    async fn propose_loop(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Pending>) {
        // This node's member first (or the knowledge that there is none here).
        let _ = self.settled.subscribe().wait_for(|s| *s).await;
        let mut batch: Vec<Pending> = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            let (mut ops, dones): (Vec<QueueOp>, Vec<Option<Done>>) =
                batch.drain(..).map(|p| (p.op, p.done)).unzip();
            let op = if ops.len() == 1 {
                ops.remove(0)
            } else {
                QueueOp::Batch(ops)
            };
            let candidates = self.candidates();
            let local = self.local();
            let result = self
                .cluster
                .write_queue(self.group, local.as_ref(), &candidates, &op)
                .await;
            match result {
                Ok(response) => {
                    let replies = match response.reply {
                        Reply::Batch(replies) => replies,
                        one => vec![one],
                    };
                    for (i, done) in dones.into_iter().enumerate() {
                        if let Some(done) = done {
                            done(replies.get(i));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(queue = %self.name, vhost = %self.vhost, error = %e, "quorum queue: a write was not committed");
                    for done in dones.into_iter().flatten() {
                        done(None);
                    }
                }
            }
        }
    }
}

// --- quorum queue features (basic.get, ...; `ops.rs`) ---
impl QuorumMember {
    /// A new consumer key of this node (basic.get's one-message consumers).
    pub(super) fn fresh_key(&self) -> u64 {
        self.fresh_key_in(&mut self.books.lock())
    }

    /// [`Self::fresh_key`] with the books locked already.
    pub(super) fn fresh_key_in(&self, books: &mut Books) -> u64 {
        books.next_key += 1;
        self.key_base + books.next_key
    }

    /// A handle (a delivery's `seq` on this node) for delivery `id` of consumer `key`, which
    /// acks, returns and rejects find it by.
    pub(super) fn track(&self, key: u64, id: u64) -> u64 {
        let mut books = self.books.lock();
        books.next_handle += 1;
        let mut handle = books.next_handle;
        if self.is_outsider() {
            handle |= super::outsider::OWN_HANDLES;
        }
        books.outstanding.insert(handle, (key, id));
        handle
    }

    /// Whether this node has no member of the group (`outsider.rs`).
    pub(super) fn is_outsider(&self) -> bool {
        self.outsider.load(Ordering::Relaxed)
    }
}
