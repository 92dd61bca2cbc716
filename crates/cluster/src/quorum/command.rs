//! What a quorum queue's Raft group replicates ([`QueueCommand`]) and what applying one yields
//! ([`QueueResponse`]: a reply to the proposer and the effects the leader carries out).
//!
//! Modelled on RabbitMQ's `rabbit_fifo` (deps/rabbit/src/rabbit_fifo.erl): the same commands
//! (enqueue, checkout, settle, return, discard, purge, consumer and node down), the same effects
//! (deliveries, dead-lettering, publisher notifications) returned rather than performed, so that
//! applying a command is a pure function of the state and the command on every member.

use crate::types::NodeId;
use serde::{Deserialize, Serialize};

/// RabbitMQ 4's default `x-delivery-limit` for quorum queues: a message returned more than 20
/// times is dead-lettered (reason `delivery_limit`).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// What happens when a publish would take the queue past `x-max-length` / `x-max-length-bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Overflow {
    /// `drop-head` (the default): the oldest ready messages are dead-lettered (reason `maxlen`).
    #[default]
    DropHead,
    /// `reject-publish`: the publish is refused (the publisher gets a nack).
    RejectPublish,
}

/// A queue's settings, from its arguments and policies. Identical on every member: the first
/// comes from the declaration (replicated metadata), later ones through
/// [`QueueOp::UpdateConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    /// `x-delivery-limit`: a message returned more often than this is dead-lettered. `None`:
    /// unlimited (RabbitMQ 4 spells it `-1`).
    pub delivery_limit: Option<u32>,
    /// `x-max-length`: the most ready messages.
    pub max_length: Option<u64>,
    /// `x-max-length-bytes`: the most bytes of ready message bodies.
    pub max_length_bytes: Option<u64>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-message-ttl` in milliseconds, for every message (a message's own TTL, when shorter,
    /// wins).
    pub message_ttl: Option<u64>,
    /// `x-single-active-consumer`: one consumer at a time receives; the others wait in line.
    pub single_active_consumer: bool,
    // --- at-least-once dead-lettering (helper dlxalo, `dlx.rs`) ---
    /// `x-dead-letter-strategy` (with a dead-letter exchange). **Not encoded** (postcard
    /// writes fields by position, so a new one would make older snapshots and
    /// `UpdateConfig` entries unreadable): it is a new machine's initial strategy only; the
    /// machine keeps its own in the snapshot's tail (`dlx.rs`), and changes travel as
    /// [`QueueOp::DeadLetterStrategy`]. Applying `UpdateConfig` keeps the machine's.
    #[serde(skip)]
    pub dead_letter_strategy: DeadLetterStrategy,
}

/// How dead letters leave the queue (`x-dead-letter-strategy`; RabbitMQ's
/// `dead_letter_handler`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeadLetterStrategy {
    /// `at-most-once` (the default): [`Effect::DeadLetter`], routed by the leader when it
    /// applies the entry, lost if it fails then.
    #[default]
    AtMostOnce,
    /// `at-least-once`: dead letters stay in the queue until the leader's dead-letter worker
    /// has them confirmed by their targets ([`QueueOp::DeadLetterSettle`]). Effective only
    /// with `x-overflow: reject-publish` (at-most-once otherwise, as in RabbitMQ).
    AtLeastOnce,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            delivery_limit: Some(DEFAULT_DELIVERY_LIMIT),
            max_length: None,
            max_length_bytes: None,
            overflow: Overflow::DropHead,
            message_ttl: None,
            single_active_consumer: false,
            dead_letter_strategy: DeadLetterStrategy::AtMostOnce,
        }
    }
}

/// A message as the queue keeps it: the broker's encoded properties/headers and the body,
/// both opaque here. Only the body counts towards `x-max-length-bytes`, as in RabbitMQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The encoded header (properties, annotations): opaque to the queue.
    pub header: Vec<u8>,
    /// The body.
    pub body: Vec<u8>,
}

/// A publisher as the queue knows it for de-duplication: an id the broker keeps unique in the
/// cluster (a node id and a channel number, say) and the publisher's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublisherId(pub u64);

/// A consumer: the node its channel lives on (so that a node's loss returns its messages) and
/// a key unique on that node. `rabbit_fifo` uses `{Tag, Pid}`; the pid's node is `node` here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConsumerId {
    /// The node the consumer's channel is on.
    pub node: NodeId,
    /// Unique among that node's consumers of this queue.
    pub key: u64,
}

/// A command with the leader's clock at proposal time (milliseconds since the Unix epoch).
/// Time travels in the command so that every member expires the same messages: applying never
/// reads a clock (`rabbit_fifo` takes `system_time` from Ra's command metadata likewise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCommand {
    /// The proposer's wall clock, milliseconds since the epoch. The machine never lets its own
    /// time go backwards (a new leader's clock may be behind the old one's).
    pub at: u64,
    /// What to do.
    pub op: QueueOp,
}

/// What a command does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueOp {
    /// A publish. With `publisher`, a resend of a sequence number already enqueued is answered
    /// [`Reply::Duplicate`] and confirmed again, not enqueued twice.
    Enqueue {
        /// Who publishes and its sequence number, for de-duplication and confirms.
        publisher: Option<(PublisherId, u64)>,
        /// The message.
        message: Message,
        /// The message's own TTL (`expiration` property), milliseconds.
        ttl: Option<u64>,
    },
    /// The publisher is gone: forget its sequence numbers.
    PublisherDown(PublisherId),
    /// A consumer attaches with `prefetch` credit (0: unlimited), or changes its prefetch.
    Checkout {
        /// The consumer.
        consumer: ConsumerId,
        /// The most unsettled deliveries it may hold; 0 for no limit.
        prefetch: u32,
    },
    /// `basic.cancel`: nothing more is delivered; what it holds stays checked out until settled,
    /// returned or the consumer goes down.
    Cancel(ConsumerId),
    /// `basic.ack`: the messages are done with.
    Settle {
        /// The consumer that holds them.
        consumer: ConsumerId,
        /// Its delivery ids.
        ids: Vec<u64>,
    },
    /// `basic.nack`/`basic.reject` with requeue: back to the queue, ahead of messages never
    /// delivered, with the delivery count one higher; past `x-delivery-limit`, dead-lettered.
    Return {
        /// The consumer that holds them.
        consumer: ConsumerId,
        /// Its delivery ids.
        ids: Vec<u64>,
    },
    /// `basic.nack`/`basic.reject` without requeue: dead-lettered (reason `rejected`).
    Discard {
        /// The consumer that holds them.
        consumer: ConsumerId,
        /// Its delivery ids.
        ids: Vec<u64>,
    },
    /// `queue.purge`: the ready messages go (checked-out ones stay).
    Purge,
    /// The consumer's channel is gone: its messages are returned (delivery count + 1).
    ConsumerDown(ConsumerId),
    /// A node is gone: every consumer on it is down.
    NodeDown(NodeId),
    /// Nothing but time passes: expire what is due (the leader proposes one when a
    /// [`Effect::Timer`] fires).
    Tick,
    /// New settings (a policy changed).
    UpdateConfig(QueueConfig),
    // --- quorum queues in the broker (issue 13 item 4) ---
    /// Several operations in one Raft entry, applied in order as if proposed one after the
    /// other (each is followed by the usual dispatch and length check), answered with
    /// [`Reply::Batch`]: a node's broker gathers the publishes, acks and consumer changes that
    /// wait while its previous entry commits, so that one entry (one fsync, one round trip)
    /// carries many.
    Batch(Vec<QueueOp>),
    // --- quorum queue features in the broker: basic.get (issue 13 item 4) ---
    /// `basic.get`: checks out the head message to `consumer`, a consumer attached for that
    /// one message (`rabbit_fifo`'s `{dequeue, Settlement}` checkout); `settled` (no-ack)
    /// settles it at once. Answered [`Reply::Dequeued`] (`dequeue.rs`).
    Dequeue {
        /// The one-message consumer (a new id per get).
        consumer: ConsumerId,
        /// No-ack: settled as it is taken.
        settled: bool,
    },
    // --- quorum queue features: consumer priorities and x-expires (helper quorumrest) ---
    /// `basic.consume` with `x-priority`: [`QueueOp::Checkout`] with the consumer's priority.
    /// Ready messages go to the highest-priority consumers with credit, lower ones only while
    /// those are full; with single active consumer a higher-priority consumer takes over
    /// (`priority.rs`). The broker sends it only for a priority other than 0 (the default),
    /// plain `Checkout` otherwise.
    CheckoutPriority {
        /// The consumer.
        consumer: ConsumerId,
        /// The most unsettled deliveries it may hold; 0 for no limit.
        prefetch: u32,
        /// Its `x-priority`: higher is served first.
        priority: i32,
    },
    /// The queue was used without an operation of its own (a redeclare): `x-expires` counts
    /// from this command's time (`extras.rs`, RabbitMQ's `last_active`).
    Touch,
    // --- at-least-once dead-lettering (helper dlxalo, `dlx.rs`); proposed only for queues
    // that use it, so that the others write only what older nodes read ---
    /// The queue's dead-letter strategy changed (a policy, or a machine restored from a
    /// snapshot older than the strategy). Leaving `at-least-once` hands the dead letters
    /// still waiting to [`Effect::DeadLetter`] (at-most-once).
    DeadLetterStrategy(DeadLetterStrategy),
    /// The leader's dead-letter worker had these dead letters (their ids in the waiting list)
    /// confirmed by their target queues: they leave the queue (RabbitMQ's rabbit_fifo_dlx
    /// `settle`). Unknown ids are ignored (settled already, by a previous leader's worker).
    DeadLetterSettle(Vec<u64>),
}

/// Why a message was dead-lettered: RabbitMQ's `x-first-death-reason` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadLetterReason {
    /// Rejected without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Dropped from the head by `x-max-length(-bytes)` with `drop-head`.
    MaxLen,
    /// Returned more than `x-delivery-limit` times.
    DeliveryLimit,
}

impl DeadLetterReason {
    /// The reason as RabbitMQ names it in `x-death`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Rejected => "rejected",
            DeadLetterReason::Expired => "expired",
            DeadLetterReason::MaxLen => "maxlen",
            DeadLetterReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// One message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The consumer's id for it (what it settles, returns or discards), unique per consumer.
    pub id: u64,
    /// The queue's sequence number of the message (its enqueue order), for the broker's books.
    pub seq: u64,
    /// Whether it was delivered before (AMQP's `redelivered`).
    pub redelivered: bool,
    /// How often it was returned to the queue so far (`x-delivery-count`).
    pub delivery_count: u32,
    /// The message.
    pub message: Message,
}

/// A dead-lettered message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLettered {
    /// The queue's sequence number of the message.
    pub seq: u64,
    /// How often it was returned.
    pub delivery_count: u32,
    /// The message.
    pub message: Message,
}

/// What the leader must do after a command is applied: the state machine performs no I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Send these to the consumer, in order.
    Deliver {
        /// Whom to.
        consumer: ConsumerId,
        /// What.
        deliveries: Vec<Delivery>,
    },
    /// Hand these to the queue's dead-letter exchange, if it has one (else they are dropped).
    DeadLetter {
        /// Why.
        reason: DeadLetterReason,
        /// What.
        messages: Vec<DeadLettered>,
    },
    /// Confirm the publish (`basic.ack` to the publisher).
    PublisherSettled {
        /// Whom to.
        publisher: PublisherId,
        /// Its sequence number.
        seq: u64,
    },
    /// Refuse the publish (`basic.nack`): the queue is full and overflows with `reject-publish`.
    PublisherRejected {
        /// Whom to.
        publisher: PublisherId,
        /// Its sequence number.
        seq: u64,
    },
    /// Propose [`QueueOp::Tick`] at this time (ms since the epoch): the head message expires
    /// then. A later timer replaces an earlier one.
    Timer {
        /// When.
        at: u64,
    },
    // --- at-least-once dead-lettering (helper dlxalo) ---
    /// Dead letters joined the waiting list (`at-least-once`): the leader's dead-letter worker
    /// routes them (from its replica) and settles them once confirmed.
    DeadLettersWaiting,
}

/// The answer to the proposer of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Done (also the answer to Raft's own entries).
    #[default]
    Ok,
    /// Enqueued with this sequence number.
    Enqueued(u64),
    /// A resend of a publish already enqueued: not enqueued again.
    Duplicate,
    /// Refused: the queue is full and overflows with `reject-publish`.
    RejectedFull,
    /// This many ready messages were purged.
    Purged(u64),
    /// The consumer is not known (cancelled and drained, or down): nothing was done.
    UnknownConsumer,
    /// The replies to a [`QueueOp::Batch`]'s operations, in order.
    Batch(Vec<Reply>),
    // --- quorum queue features in the broker: basic.get (issue 13 item 4) ---
    /// The answer to [`QueueOp::Dequeue`]: the message taken (none: the queue had no ready
    /// message) and how many are still ready (`basic.get-ok`'s `message_count`).
    Dequeued {
        /// The message, with delivery id 0 of the dequeue's consumer.
        delivery: Option<Delivery>,
        /// Ready messages left.
        ready: u64,
    },
    /// A dequeue of a single-active-consumer queue, which RabbitMQ refuses
    /// (`{error, {unsupported, single_active_consumer}}`).
    DequeueUnsupported,
}

/// What applying one command gives back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueResponse {
    /// For the proposer.
    pub reply: Reply,
    /// For the leader to carry out, in order.
    pub effects: Vec<Effect>,
}
