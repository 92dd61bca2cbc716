//! Quorum queues (`x-queue-type: quorum`, RabbitMQ's `rabbit_quorum_queue`): the queue's state
//! is a replicated state machine in a Raft group of its own, which the broker does not know:
//! the server implements [`QuorumBackend`] over the cluster crate's group
//! (`server/src/cluster/quorum/`) and attaches it to the queue ([`Queue::set_quorum`]). The
//! broker's `Queue` is then a front: publishes, consumers, acks, purges and deletions go to the
//! backend, and its own ready list stays empty.
//!
//! A publish to a quorum queue is confirmed once a majority of the group has it on disk: the
//! router hands each quorum queue a part of a [`ReplicaConfirm`], which the publisher's confirm
//! waits for beside the store's epoch.

use super::{Enqueued, Queue};
use crate::consumer::ConsumerEntry;
use crate::error::{BrokerError, Result};
use crate::message::Message;
use crate::value::Table;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Arguments a quorum queue accepts (rabbit_quorum_queue `capabilities/0`'s
/// `queue_arguments`); RabbitMQ refuses the other `x-` arguments for this queue type.
const QUORUM_ARGS: &[&str] = &[
    "x-queue-type",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-leader-locator",
    "x-quorum-initial-group-size",
    "x-quorum-target-group-size",
    "x-delivery-limit",
    "x-message-ttl",
];

/// Set once a node has started quorum queues in this process. No longer gates anything: a
/// broker with a data directory accepts quorum queues, clustered or not (helper quorumone).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Records that quorum queues run in this process (kept for callers; declares are not gated).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether quorum queues can be declared in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The refusal of a quorum queue by a broker without a data directory (no store: nowhere for
/// its Raft log), with RabbitMQ's code for a refused argument (helper quorumone).
pub fn needs_a_data_directory(queue: &str, vhost: &str) -> BrokerError {
    BrokerError::PreconditionFailed(format!(
        "invalid arg 'x-queue-type' for queue '{queue}' in vhost '{vhost}': queue type \
         'quorum' needs a data directory (data_dir), where its Raft log is kept; declare a \
         classic queue on a node without one"
    ))
}

/// Whether `arguments` declare a quorum queue.
pub fn is_quorum_declaration(arguments: &Table) -> bool {
    super::typed::declares(arguments, "quorum")
}

/// RabbitMQ's declare checks for a quorum queue (rabbit_quorum_queue `declare`, with
/// rabbit_queue_type_util's `check_auto_delete`, `check_exclusive`, `check_non_durable`, and
/// the per-type argument check), in its order; then `x-overflow: reject-publish-dlx`, which
/// quorum queues refuse ("invalid arg 'x-overflow' with value 'reject-publish-dlx' for ...").
pub fn check_declaration(
    name: &str,
    vhost: &str,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    arguments: &Table,
) -> Result<()> {
    let rs = super::typed::check_common(
        name,
        vhost,
        (durable, exclusive, auto_delete),
        arguments,
        QUORUM_ARGS,
        "rabbit_quorum_queue",
    )?;
    if arguments.get_str("x-overflow") == Some("reject-publish-dlx") {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg 'x-overflow' with value 'reject-publish-dlx' for {rs}"
        )));
    }
    if let Some(v) = arguments.get("x-quorum-initial-group-size") {
        if v.as_i64().is_none_or(|n| n < 1) {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid arg 'x-quorum-initial-group-size' for {rs}"
            )));
        }
    }
    Ok(())
}

/// The size of a quorum queue as its backend knows it (this node's replica).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuorumCounts {
    /// Ready messages.
    pub ready: u32,
    /// Their body bytes.
    pub ready_bytes: u64,
    /// Delivered, not yet settled.
    pub unacked: u32,
    /// Consumers (on every node).
    pub consumers: u32,
    /// Dead-lettered with `at-least-once`, not yet confirmed by their targets (RabbitMQ's
    /// `messages_dlx`).
    pub dlx: u32,
    /// Their body bytes (`message_bytes_dlx`).
    pub dlx_bytes: u64,
}

/// A quorum queue's replicated half, implemented by the server over its Raft group. Every
/// method returns at once: what must be replicated is proposed in the background, in the
/// order of the calls. Called with no queue lock held.
pub trait QuorumBackend: Send + Sync {
    /// Enqueues `message`; `confirm` gets one part finished once the group committed it
    /// (refused when the queue is full with `reject-publish`, or the write failed).
    fn enqueue(&self, queue: &Queue, message: Message, confirm: &Arc<ReplicaConfirm>);
    /// Whether a consumer may attach on this node (a node with no member of the group cannot
    /// serve one yet): the error to refuse it with.
    fn check_consume(&self, queue: &Queue) -> Result<()>;
    /// Attaches a consumer (`Checkout` with its prefetch); deliveries reach its sink once the
    /// group committed the attachment. Each delivery's `seq` is this node's handle for it.
    fn add_consumer(&self, queue: &Arc<Queue>, consumer: ConsumerEntry);
    /// Detaches the consumer `tag` of `owner` (`Cancel`); true if it was attached here.
    fn remove_consumer(&self, owner: u64, tag: &str) -> bool;
    /// Acks the deliveries with these `seq`s (`Settle`).
    fn settle(&self, seqs: &[u64]);
    /// Gives them back (`Return`): redelivered with a delivery count one higher.
    fn requeue(&self, seqs: &[u64]);
    /// Rejects them without requeue (`Discard`): dead-lettered.
    fn reject(&self, seqs: &[u64]);
    /// A consumer's credit came back: deliveries held for lack of room go out.
    fn dispatch(&self, queue: &Arc<Queue>);
    /// `queue.purge`: the ready messages go; returns how many this node's replica had.
    fn purge(&self) -> u32;
    /// The queue is deleted: its consumers here, to be told.
    fn delete(&self) -> Vec<ConsumerEntry>;
    /// The queue's size.
    fn counts(&self) -> QuorumCounts;
    /// Where the group runs, as the management API shows it.
    fn placement(&self) -> QuorumPlacement;

    // --- quorum queue features: basic.get, purge's count, policies (`quorum_ops.rs`) ---
    /// `basic.get`: one message checked out through the group (`QueueOp::Dequeue`), handed
    /// to `done` with the ready messages left; acked, given back or rejected by its `seq`
    /// like a consumer's delivery. `done` returning false gives it back.
    fn get(&self, queue: &Arc<Queue>, no_ack: bool, done: super::quorum_ops::GetDone) {
        let _ = (queue, no_ack);
        done(Err(BrokerError::NotImplemented(
            "basic.get not supported by this quorum queue".into(),
        )
        .into()));
    }
    /// `queue.purge`, answered with the number of messages the group purged once committed.
    fn purge_committed(&self, done: super::quorum_ops::PurgeDone) {
        done(Ok(self.purge()));
    }
    /// The queue's settings changed (a policy was set, changed or cleared): the group's
    /// configuration follows (`QueueOp::UpdateConfig`).
    fn settings_changed(&self, queue: &Queue) {
        let _ = queue;
    }
    /// On a node without a member of the group: the member node whose replica serves this
    /// node's consumers (their deliveries cross the cluster link). `None`: served here.
    fn serving_node(&self) -> Option<String> {
        None
    }

    // --- quorum queue features: x-expires (helper quorumrest) ---
    /// The queue was redeclared (it has an `x-expires`): the group records the use
    /// (`QueueOp::Touch`), so that the queue's expiry counts from now on every member.
    fn touched(&self) {}
}

/// A quorum queue's group as RabbitMQ's management API shows it (rabbit_quorum_queue
/// `format/1`: `leader`, `members`, `online`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuorumPlacement {
    /// The leader's node name, if one is known here.
    pub leader: Option<String>,
    /// The members' node names.
    pub members: Vec<String>,
    /// Those whose node answers.
    pub online: Vec<String>,
}

/// A publish's confirm waiting for the quorum queues it reached: one part per queue plus the
/// router's own, finished once every queue answered. Refused if any part was.
pub struct ReplicaConfirm {
    parts: AtomicUsize,
    refused: AtomicBool,
    waker: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl ReplicaConfirm {
    /// A confirm with the router's part open.
    pub fn new() -> Arc<ReplicaConfirm> {
        Arc::new(ReplicaConfirm {
            parts: AtomicUsize::new(1),
            refused: AtomicBool::new(false),
            waker: Mutex::new(None),
        })
    }

    /// Opens one more part (a queue the message is handed to).
    pub fn add_part(&self) {
        self.parts.fetch_add(1, Ordering::AcqRel);
    }

    /// Finishes one part: `ok` false refuses the whole publish (nack).
    pub fn finish(&self, ok: bool) {
        if !ok {
            self.refused.store(true, Ordering::Release);
        }
        if self.parts.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.waker.lock().take();
            if let Some(wake) = waker {
                wake();
            }
        }
    }

    /// `Some(ack)` once every part finished; `None` while one is open.
    pub fn outcome(&self) -> Option<bool> {
        (self.parts.load(Ordering::Acquire) == 0).then(|| !self.refused.load(Ordering::Acquire))
    }

    /// Runs `wake` once every part finished (at once if they have).
    pub fn on_done(&self, wake: Box<dyn FnOnce() + Send>) {
        let mut slot = self.waker.lock();
        if self.parts.load(Ordering::Acquire) == 0 {
            drop(slot);
            wake();
        } else {
            *slot = Some(wake);
        }
    }
}

impl Queue {
    /// Whether this is a quorum queue (`x-queue-type: quorum` in a broker with a data
    /// directory, clustered or not: a node without `[cluster]` runs its quorum queues as a
    /// cluster of one, server `cluster/quorum/single.rs`).
    pub fn is_quorum(&self) -> bool {
        self.quorum_declared
    }

    /// Attaches the replicated half of a quorum queue (once; later calls are ignored).
    pub fn set_quorum(&self, backend: Arc<dyn QuorumBackend>) {
        let _ = self.quorum.set(backend);
        // Redeliveries carry `x-delivery-count`, as RabbitMQ's quorum queues' do.
        self.counts_deliveries.store(true, Ordering::Relaxed);
    }

    /// The replicated half of a quorum queue, once attached.
    pub fn quorum(&self) -> Option<&Arc<dyn QuorumBackend>> {
        self.quorum.get()
    }

    /// Enqueues into a quorum queue, confirmed through `confirm`.
    pub fn enqueue_replicated(&self, message: Message, confirm: &Arc<ReplicaConfirm>) -> Enqueued {
        let Some(backend) = self.quorum.get() else {
            tracing::warn!(queue = %self.name, "quorum queue not started on this node: publish refused");
            return Enqueued::Rejected;
        };
        self.state.lock().counters.publish += 1;
        confirm.add_part();
        backend.enqueue(self, message, confirm);
        Enqueued::Accepted
    }
}
