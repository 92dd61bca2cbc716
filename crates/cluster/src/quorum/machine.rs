//! The quorum queue's state machine: a FIFO of messages, the consumers that hold some of them,
//! and the rules of RabbitMQ's quorum queues (delivery limit, length limits, TTL, single active
//! consumer). Deterministic: the state after a command depends only on the state before and the
//! command (time comes in the command; every map is ordered), so every member of the group holds
//! the same queue. It does no I/O: what is to be done is returned as [`Effect`]s.
//!
//! The consumers' half (checkout, settle, return, discard, dispatch) is in `consumers.rs`.

use super::command::{
    DeadLetterReason, DeadLettered, Effect, Message, Overflow, PublisherId, QueueCommand,
    QueueConfig, QueueOp, QueueResponse, Reply,
};
use super::consumers::Consumer;
use super::ConsumerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// A message in the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The queue's sequence number: enqueue order, unique for the queue's life.
    pub(crate) seq: u64,
    pub(crate) message: Message,
    /// When it expires (ms since the epoch), if it has a TTL.
    pub(crate) expiry: Option<u64>,
    /// How often it was returned (RabbitMQ 4's `acquired_count`, what the limit counts).
    pub(crate) delivery_count: u32,
}

impl Stored {
    pub(crate) fn size(&self) -> u64 {
        self.message.body.len() as u64
    }

    pub(crate) fn dead(self) -> DeadLettered {
        DeadLettered {
            seq: self.seq,
            delivery_count: self.delivery_count,
            message: self.message,
        }
    }
}

/// Sizes of the queue, as the management API shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages waiting for a consumer (`messages_ready`).
    pub ready: u64,
    /// Bytes of their bodies.
    pub ready_bytes: u64,
    /// Messages delivered and not yet settled (`messages_unacknowledged`).
    pub checked_out: u64,
    /// Consumers attached and not cancelled (waiting single active consumers included).
    pub consumers: u64,
    /// Dead letters waiting for at-least-once dead-lettering (`messages_dlx`; `dlx.rs`).
    pub dead_lettering: u64,
    /// Their body bytes (`message_bytes_dlx`).
    pub dead_lettering_bytes: u64,
}

/// The effects of one command as they are gathered: dead letters in order, deliveries per
/// consumer (in consumer order, each consumer's in delivery order), publisher notifications.
#[derive(Default)]
pub(crate) struct Gathered {
    pub(crate) dead: Vec<(DeadLetterReason, DeadLettered)>,
    pub(crate) deliveries: BTreeMap<ConsumerId, Vec<super::Delivery>>,
    pub(crate) publisher: Vec<Effect>,
    /// Dead letters joined the at-least-once waiting list (`dlx.rs`).
    pub(crate) dlx_waiting: bool,
}

impl Gathered {
    pub(crate) fn dead_letter(&mut self, reason: DeadLetterReason, message: Stored) {
        self.dead.push((reason, message.dead()));
    }

    fn into_effects(self, timer: Option<u64>) -> Vec<Effect> {
        let mut effects = Vec::new();
        // Consecutive dead letters of one reason travel together.
        for (reason, message) in self.dead {
            match effects.last_mut() {
                Some(Effect::DeadLetter {
                    reason: last,
                    messages,
                }) if *last == reason => messages.push(message),
                _ => effects.push(Effect::DeadLetter {
                    reason,
                    messages: vec![message],
                }),
            }
        }
        for (consumer, deliveries) in self.deliveries {
            effects.push(Effect::Deliver {
                consumer,
                deliveries,
            });
        }
        effects.extend(self.publisher);
        if self.dlx_waiting {
            effects.push(Effect::DeadLettersWaiting);
        }
        if let Some(at) = timer {
            effects.push(Effect::Timer { at });
        }
        effects
    }
}

/// One quorum queue's state. Every member of the queue's group holds an identical one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMachine {
    pub(crate) config: QueueConfig,
    /// The latest command time seen: never goes backwards.
    pub(crate) now: u64,
    pub(crate) next_seq: u64,
    /// Returned messages: delivered before those never delivered (as `rabbit_fifo`'s `returns`).
    pub(crate) returns: VecDeque<Stored>,
    /// Messages never delivered, in enqueue order.
    pub(crate) ready: VecDeque<Stored>,
    /// Body bytes of `returns` and `ready`.
    pub(crate) ready_bytes: u64,
    pub(crate) consumers: BTreeMap<ConsumerId, Consumer>,
    /// Consumers with credit, in the order they are served (round robin).
    pub(crate) service: VecDeque<ConsumerId>,
    /// Single active consumer: the consumers waiting for their turn, in arrival order.
    pub(crate) waiting: VecDeque<ConsumerId>,
    /// The last sequence number enqueued per publisher (de-duplication of resends).
    pub(crate) publishers: BTreeMap<PublisherId, u64>,
    /// The expiry the last [`Effect::Timer`] asked for.
    pub(crate) timer: Option<u64>,
    // --- consumer priorities, last activity (helper quorumrest) ---
    /// Encoded after the machine in snapshots, not within it (`extras.rs`).
    #[serde(skip)]
    pub(crate) extras: super::extras::Extras,
    // --- at-least-once dead-lettering (helper dlxalo) ---
    /// Encoded after the extras in snapshots (`dlx.rs`).
    #[serde(skip)]
    pub(crate) dlx: super::dlx::Dlx,
}

impl QueueMachine {
    /// An empty queue with these settings.
    pub fn new(config: QueueConfig) -> QueueMachine {
        QueueMachine {
            now: 0,
            next_seq: 1,
            returns: VecDeque::new(),
            ready: VecDeque::new(),
            ready_bytes: 0,
            consumers: BTreeMap::new(),
            service: VecDeque::new(),
            waiting: VecDeque::new(),
            publishers: BTreeMap::new(),
            timer: None,
            extras: Default::default(),
            dlx: super::dlx::Dlx {
                strategy: config.dead_letter_strategy,
                ..Default::default()
            },
            config,
        }
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Applies one command. The same state and command give the same state and response on
    /// every member.
    pub fn apply(&mut self, command: QueueCommand) -> QueueResponse {
        self.now = self.now.max(command.at);
        let mut fx = Gathered::default();
        let (used, was_in_use) = (Self::op_uses_queue(&command.op), self.in_use());
        let reply = self.apply_op(command.op, &mut fx);
        // An empty batch's expiries (each operation keeps its own, `apply_op`).
        self.keep_dead_letters(&mut fx);
        self.after_command(used, was_in_use);
        let next = self.next_expiry();
        let timer = if next != self.timer { next } else { None };
        self.timer = next;
        QueueResponse {
            reply,
            effects: fx.into_effects(timer),
        }
    }

    /// Applies one operation (a batch's one by one), gathering its effects.
    fn apply_op(&mut self, op: QueueOp, fx: &mut Gathered) -> Reply {
        // Time moved: what reached its expiry at the head goes first (rabbit_fifo expires at the
        // head only, before every checkout).
        self.expire_head(fx);
        // With at-least-once they wait in the queue (and count towards its limits) before the
        // operation runs (`dlx.rs`).
        self.keep_dead_letters(fx);
        let reply = match op {
            QueueOp::Enqueue {
                publisher,
                message,
                ttl,
            } => self.enqueue(publisher, message, ttl, fx),
            QueueOp::PublisherDown(publisher) => {
                self.publishers.remove(&publisher);
                Reply::Ok
            }
            QueueOp::Checkout { consumer, prefetch } => self.checkout(consumer, prefetch),
            QueueOp::Cancel(consumer) => self.cancel(consumer),
            QueueOp::Settle { consumer, ids } => self.settle(consumer, &ids),
            QueueOp::Return { consumer, ids } => self.return_ids(consumer, &ids, fx),
            QueueOp::Discard { consumer, ids } => self.discard(consumer, &ids, fx),
            QueueOp::Purge => Reply::Purged(self.purge()),
            QueueOp::ConsumerDown(consumer) => self.consumer_down(consumer, fx),
            QueueOp::NodeDown(node) => {
                let gone: Vec<ConsumerId> = self
                    .consumers
                    .keys()
                    .filter(|c| c.node == node)
                    .copied()
                    .collect();
                for consumer in gone {
                    self.consumer_down(consumer, fx);
                }
                Reply::Ok
            }
            QueueOp::Tick => Reply::Ok,
            QueueOp::UpdateConfig(config) => {
                // The strategy is not encoded in the command (`QueueConfig`): the machine's
                // stays, whatever the proposer's copy held.
                let was = self.at_least_once();
                let strategy = self.config.dead_letter_strategy;
                self.config = config;
                self.config.dead_letter_strategy = strategy;
                self.left_at_least_once(was, fx);
                Reply::Ok
            }
            QueueOp::Batch(ops) => {
                return Reply::Batch(ops.into_iter().map(|op| self.apply_op(op, fx)).collect())
            }
            // basic.get (`dequeue.rs`).
            QueueOp::Dequeue { consumer, settled } => self.dequeue(consumer, settled),
            // Consumer priorities and the last activity (helper quorumrest: `priority.rs`,
            // `extras.rs`).
            QueueOp::CheckoutPriority {
                consumer,
                prefetch,
                priority,
            } => self.checkout_priority(consumer, prefetch, priority),
            QueueOp::Touch => Reply::Ok,
            // At-least-once dead-lettering (helper dlxalo, `dlx.rs`).
            QueueOp::DeadLetterStrategy(strategy) => {
                self.set_dead_letter_strategy(strategy, fx);
                Reply::Ok
            }
            QueueOp::DeadLetterSettle(ids) => {
                self.settle_dead_letters(&ids);
                Reply::Ok
            }
        };
        // Consumers first, then the length limit over what is left (rabbit_fifo's `checkout`
        // then `evaluate_limit`): a publish to a full queue with a consumer waiting drops nothing,
        // and messages returned past the limit push the oldest out.
        self.dispatch(fx);
        self.enforce_length(fx);
        self.keep_dead_letters(fx);
        reply
    }

    fn enqueue(
        &mut self,
        publisher: Option<(PublisherId, u64)>,
        message: Message,
        ttl: Option<u64>,
        fx: &mut Gathered,
    ) -> Reply {
        if let Some((id, seq)) = publisher {
            if self.publishers.get(&id).is_some_and(|last| seq <= *last) {
                // A resend of what is already in (the publisher did not see its confirm, say
                // after a leader change): confirm it again, enqueue nothing.
                fx.publisher
                    .push(Effect::PublisherSettled { publisher: id, seq });
                return Reply::Duplicate;
            }
        }
        let size = message.body.len() as u64;
        if self.config.overflow == Overflow::RejectPublish && self.would_overflow(size) {
            if let Some((publisher, seq)) = publisher {
                fx.publisher
                    .push(Effect::PublisherRejected { publisher, seq });
            }
            return Reply::RejectedFull;
        }
        let ttl = match (ttl, self.config.message_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready_bytes += size;
        self.ready.push_back(Stored {
            seq,
            message,
            expiry: ttl.map(|t| self.now.saturating_add(t)),
            delivery_count: 0,
        });
        if let Some((id, pseq)) = publisher {
            self.publishers.insert(id, pseq);
            fx.publisher.push(Effect::PublisherSettled {
                publisher: id,
                seq: pseq,
            });
        }
        Reply::Enqueued(seq)
    }

    /// Whether one more message of `size` bytes would take the queue past a limit.
    fn would_overflow(&self, size: u64) -> bool {
        // Dead letters waiting for at-least-once dead-lettering count too (rabbit_fifo
        // `is_over_limit`: `messages_ready` plus rabbit_fifo_dlx `stat`).
        let (dead, dead_bytes) = self.dead_letters_counts();
        self.config
            .max_length
            .is_some_and(|max| self.ready_count() + dead + 1 > max)
            || self
                .config
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes + dead_bytes + size > max)
    }

    fn over_limit(&self) -> bool {
        let (dead, dead_bytes) = self.dead_letters_counts();
        self.config
            .max_length
            .is_some_and(|max| self.ready_count() + dead > max)
            || self
                .config
                .max_length_bytes
                .is_some_and(|max| self.ready_bytes + dead_bytes > max)
    }

    /// `drop-head`: dead-letters the oldest ready messages while the queue is over a limit.
    fn enforce_length(&mut self, fx: &mut Gathered) {
        if self.config.overflow != Overflow::DropHead {
            return;
        }
        while self.over_limit() {
            match self.pop_head() {
                Some(message) => fx.dead_letter(DeadLetterReason::MaxLen, message),
                None => break,
            }
        }
    }

    fn purge(&mut self) -> u64 {
        let n = self.ready_count();
        self.returns.clear();
        self.ready.clear();
        self.ready_bytes = 0;
        n
    }

    /// The next message to deliver: returned ones first.
    fn head(&self) -> Option<&Stored> {
        self.returns.front().or_else(|| self.ready.front())
    }

    pub(crate) fn pop_head(&mut self) -> Option<Stored> {
        let message = self
            .returns
            .pop_front()
            .or_else(|| self.ready.pop_front())?;
        self.ready_bytes -= message.size();
        Some(message)
    }

    /// Dead-letters the messages at the head whose time has come. As in RabbitMQ's quorum
    /// queues, only the head is looked at: a message behind one that lives longer waits.
    pub(crate) fn expire_head(&mut self, fx: &mut Gathered) {
        while self
            .head()
            .is_some_and(|m| m.expiry.is_some_and(|at| self.now >= at))
        {
            if let Some(message) = self.pop_head() {
                fx.dead_letter(DeadLetterReason::Expired, message);
            }
        }
    }

    /// When the head message expires, if it has a TTL.
    pub fn next_expiry(&self) -> Option<u64> {
        self.head().and_then(|m| m.expiry)
    }

    /// Puts a message back at the end of the returned ones.
    pub(crate) fn push_return(&mut self, message: Stored) {
        self.ready_bytes += message.size();
        self.returns.push_back(message);
    }

    pub(crate) fn ready_count(&self) -> u64 {
        (self.returns.len() + self.ready.len()) as u64
    }

    /// The queue's sizes.
    pub fn counts(&self) -> QueueCounts {
        QueueCounts {
            ready: self.ready_count(),
            ready_bytes: self.ready_bytes,
            checked_out: self
                .consumers
                .values()
                .map(|c| c.checked_out.len() as u64)
                .sum(),
            // Cancelled consumers still holding messages and basic.get's one-message
            // consumers are not the queue's consumers (RabbitMQ counts those attached).
            consumers: self
                .consumers
                .values()
                .filter(|c| c.status != super::consumers::Status::Cancelled)
                .count() as u64,
            dead_lettering: self.dlx.waiting.len() as u64,
            dead_lettering_bytes: self.dlx.bytes,
        }
    }

    /// The sequence numbers of the ready messages, in delivery order.
    pub fn ready_seqs(&self) -> Vec<u64> {
        self.returns
            .iter()
            .chain(self.ready.iter())
            .map(|m| m.seq)
            .collect()
    }
}
