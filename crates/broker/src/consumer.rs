//! The seam between a queue and whoever consumes from it.
//!
//! A protocol adapter implements [`ConsumerSink`] for each consumer (an AMQP `basic.consume`, an
//! MQTT subscription's session). The queue calls it with its own lock held, so a sink must be
//! quick and must never call back into a queue.

use crate::queue::{Queue, QueuedMessage};
use std::sync::Arc;

/// Identifies the connection that owns an exclusive queue or a consumer.
pub type ConnectionId = u64;

/// Receives messages from a queue.
pub trait ConsumerSink: Send + Sync {
    /// Takes one unit of delivery credit (prefetch window, outbound buffer room); false when the
    /// consumer cannot take a message now. The queue calls [`ConsumerSink::deliver`] right after
    /// a successful reservation. When credit comes back, the adapter calls [`Queue::dispatch`].
    fn try_reserve(&self) -> bool;

    /// Hands over one message; the reserved credit is spent. Returns
    /// [`Delivered::Pending`] when the adapter keeps the message until it is acked
    /// ([`Queue::settle`]) or given back ([`Queue::requeue`]), and [`Delivered::Settled`] when
    /// the queue may forget it at once (no-ack consumer, MQTT QoS 0, or a message the consumer
    /// drops, such as one its subscription no longer wants). It must not call into the queue.
    fn deliver(&self, queue: &Arc<Queue>, message: QueuedMessage) -> Delivered;

    /// The queue was deleted: the consumer is gone (AMQP sends `basic.cancel`).
    fn cancelled(&self);

    /// The consumer's prefetch (0: unlimited), for a queue that accounts credit itself (a
    /// quorum queue's `Checkout`).
    fn prefetch(&self) -> u32 {
        0
    }
}

/// What became of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Out for delivery: an ack or a requeue will follow.
    Pending,
    /// Done: nothing will follow.
    Settled,
}

/// A consumer as registered on a queue.
#[derive(Clone)]
pub struct ConsumerEntry {
    /// Its tag, unique per channel.
    pub tag: Arc<str>,
    /// The channel (or session) that owns it, unique across the broker.
    pub owner: u64,
    /// No other consumer may use the queue while this one exists.
    pub exclusive: bool,
    /// Consumer priority (`x-priority`): higher ones get messages first while they have credit.
    pub priority: i32,
    /// Where deliveries go.
    pub sink: Arc<dyn ConsumerSink>,
}
