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

    /// Hands over one message; the reserved credit is spent. For a consumer that acknowledges,
    /// the adapter keeps the message until it is acked or given back with [`Queue::requeue`].
    fn deliver(&self, queue: &Arc<Queue>, message: QueuedMessage);

    /// The queue was deleted: the consumer is gone (AMQP sends `basic.cancel`).
    fn cancelled(&self);
}

/// A consumer as registered on a queue.
#[derive(Clone)]
pub struct ConsumerEntry {
    /// Its tag, unique per channel.
    pub tag: Arc<str>,
    /// The channel (or session) that owns it, unique across the broker.
    pub owner: u64,
    /// Messages are settled as they are delivered (no acknowledgement expected).
    pub no_ack: bool,
    /// No other consumer may use the queue while this one exists.
    pub exclusive: bool,
    /// Where deliveries go.
    pub sink: Arc<dyn ConsumerSink>,
}
