//! The seam between the workload and the AMQP client library.
//!
//! The workload (`workload.rs`) decides what to send, when, and what to measure; a [`Client`]
//! only moves messages. Today the implementation is lapin (`amqp.rs`); a client written on tokio
//! directly, or an MQTT one, implements these three traits and nothing else changes.
//!
//! Every future here may wait on the network for ever; the workload puts the time limits around
//! them.

use std::future::Future;

/// How a producer publishes.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// Put the channel in confirm mode and keep at most this many messages unconfirmed.
    pub confirm_window: Option<u32>,
    /// delivery_mode 2 instead of 1.
    pub persistent: bool,
}

/// How a consumer consumes.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeOptions {
    /// Manual acknowledgements (false: the broker forgets a message once it sends it).
    pub manual_ack: bool,
    /// basic.qos prefetch count; 0 sends no basic.qos.
    pub prefetch: u16,
}

/// Confirms a producer learned of during one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirms {
    /// Messages the broker took responsibility for.
    pub acked: u64,
    /// Messages the broker refused (basic.nack).
    pub nacked: u64,
}

impl std::ops::AddAssign for Confirms {
    fn add_assign(&mut self, other: Confirms) {
        self.acked += other.acked;
        self.nacked += other.nacked;
    }
}

/// One connection to a broker.
pub trait Client: Sized + Send + Sync + 'static {
    /// Publishes to one queue on a channel of its own.
    type Publisher: Publisher;
    /// Consumes from one queue on a channel of its own.
    type Consumer: Consumer;

    /// Opens a connection; `name` shows in the broker's connection list.
    fn connect(url: &str, name: &str) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Declares a queue that is neither exclusive nor auto-deleted.
    fn declare_queue(
        &self,
        name: &str,
        durable: bool,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Deletes a queue and the messages left in it.
    fn delete_queue(&self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Opens a channel that publishes to `queue` through the default exchange.
    fn publisher(
        &self,
        queue: &str,
        options: PublishOptions,
    ) -> impl Future<Output = anyhow::Result<Self::Publisher>> + Send;

    /// Opens a channel and starts consuming `queue`.
    fn consumer(
        &self,
        queue: &str,
        options: ConsumeOptions,
    ) -> impl Future<Output = anyhow::Result<Self::Consumer>> + Send;

    /// Closes the connection politely (connection.close).
    fn close(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A channel publishing to one queue.
pub trait Publisher: Send + 'static {
    /// In confirm mode, waits until the window has room for one more message; returns the
    /// confirms that arrived meanwhile. Separate from `publish` so that the send time stamped
    /// into a message excludes this wait.
    fn reserve(&mut self) -> impl Future<Output = anyhow::Result<Confirms>> + Send;

    /// Sends one message (returns once the client has taken it, not once it is confirmed).
    fn publish(&mut self, body: &[u8]) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Waits for every outstanding confirm (at once when not in confirm mode).
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<Confirms>> + Send;
}

/// A channel consuming one queue.
pub trait Consumer: Send + 'static {
    /// The next message body; `None` when the broker cancelled the consumer.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Vec<u8>>>> + Send;

    /// Acknowledges the last message `next` returned and, with `multiple`, every earlier one.
    fn ack(&mut self, multiple: bool) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Cancels the consumer (basic.cancel) so the broker stops sending.
    fn cancel(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;
}
