//! The seam between the workload and the protocol clients.
//!
//! The workload (`workload.rs`) decides what to send, when, and what to measure; a [`Client`]
//! only moves messages. Three implement these traits: the bench's own AMQP 0-9-1 client on
//! `amqp-wire` (`amqp_raw.rs`, the default), lapin (`amqp.rs`, `--client lapin`), and the bench's
//! own MQTT client on `mqtt-wire` (`mqtt.rs`).
//!
//! Each producer and each consumer has a connection of its own: [`Client::publisher`] and
//! [`Client::consumer`] take the connection over, and the publisher or consumer closes it. That
//! lets a client keep a connection's socket, buffers and protocol state in the one task that uses
//! them, with no locks and no hand-off between tasks on the hot path.
//!
//! Every future here may wait on the network for ever; the workload puts the time limits around
//! them.

use bytes::Bytes;
use hdrhistogram::Histogram;
use std::future::Future;

/// How a producer publishes.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// Keep at most this many messages unconfirmed (AMQP: confirm mode; MQTT: the in-flight
    /// window of QoS 1 and 2). `None`: no confirms.
    pub confirm_window: Option<u32>,
    /// AMQP: delivery_mode 2 instead of 1. MQTT ignores it.
    pub persistent: bool,
}

/// How a consumer consumes.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeOptions {
    /// AMQP: manual acknowledgements (false: the broker forgets a message once it sends it).
    /// MQTT acknowledges as its QoS requires, whatever this says.
    pub manual_ack: bool,
    /// AMQP: basic.qos prefetch count; 0 sends no basic.qos.
    pub prefetch: u16,
}

/// Confirms a producer learned of during one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirms {
    /// Messages the broker took responsibility for.
    pub acked: u64,
    /// Messages the broker refused (AMQP basic.nack, MQTT 5 reason code 0x80 or above).
    pub nacked: u64,
}

impl std::ops::AddAssign for Confirms {
    fn add_assign(&mut self, other: Confirms) {
        self.acked += other.acked;
        self.nacked += other.nacked;
    }
}

/// One connection to a broker.
pub trait Client: Sized + Send + 'static {
    /// Where and how to connect (URL, protocol version, ...).
    type Config: Clone + Send + Sync + 'static;
    /// Publishes to one queue or topic.
    type Publisher: Publisher;
    /// Consumes from one queue or topic.
    type Consumer: Consumer;

    /// Opens a connection; `name` shows in the broker's connection list (AMQP) or becomes the
    /// client identifier (MQTT).
    fn connect(
        config: &Self::Config,
        name: &str,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Declares a queue that is neither exclusive nor auto-deleted. MQTT has nothing to declare.
    fn declare_queue(
        &mut self,
        name: &str,
        durable: bool,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Whether the broker (the node this connection is to) knows the queue: an AMQP passive
    /// declare. In a cluster a declare is answered by the declaring node and applied by the
    /// others a moment later; a run that uses several nodes waits until each knows its queues.
    /// Clients without queues know every one.
    fn knows_queue(&mut self, name: &str) -> impl Future<Output = anyhow::Result<bool>> + Send {
        let _ = name;
        async { Ok(true) }
    }

    /// Deletes a queue and the messages left in it.
    fn delete_queue(&mut self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Declares a transient exchange of type `kind` (`fanout`, `topic`, ...). MQTT cannot.
    fn declare_exchange(
        &mut self,
        name: &str,
        kind: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Deletes an exchange.
    fn delete_exchange(&mut self, name: &str) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Binds `queue` to `exchange` with the binding key `key`. MQTT cannot.
    fn bind_queue(
        &mut self,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Turns the connection into a publisher to `target` (a queue, through the default exchange
    /// or the configured one; an MQTT topic).
    fn publisher(
        self,
        target: &str,
        options: PublishOptions,
    ) -> impl Future<Output = anyhow::Result<Self::Publisher>> + Send;

    /// Turns the connection into a consumer of `source` (a queue; an MQTT topic filter).
    fn consumer(
        self,
        source: &str,
        options: ConsumeOptions,
    ) -> impl Future<Output = anyhow::Result<Self::Consumer>> + Send;

    /// Closes the connection politely (AMQP connection.close, MQTT DISCONNECT).
    fn close(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A connection publishing to one queue or topic.
pub trait Publisher: Send + 'static {
    /// With confirms, waits until the window has room for one more message; returns the
    /// confirms that arrived meanwhile. Separate from `publish` so that the send time stamped
    /// into a message excludes this wait. (Refilling the window one slot at a time is on
    /// purpose: waiting for several slots to free up before writing stalls on brokers that leave
    /// Nagle's algorithm on, such as Mosquitto by default, as their acknowledgements then wait
    /// for our delayed TCP ACKs.)
    fn reserve(&mut self) -> impl Future<Output = anyhow::Result<Confirms>> + Send;

    /// Sends one message: returns once the client has taken it, which may be into a write
    /// buffer that a later call sends together with other messages.
    fn publish(&mut self, body: &[u8]) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Writes out whatever `publish` buffered, without waiting for confirms: the workload calls
    /// it before it pauses (`--rate`), so a message never waits in a buffer for the next one.
    fn write_out(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Waits until `due` (a producer with `--rate` pausing between messages), handling the
    /// confirms that arrive meanwhile, so that each is timed when it arrives rather than when
    /// the producer next looks (which, with a window much larger than what a pause lets
    /// through, was once the window filled: hundreds of milliseconds of the bench's own).
    /// The default just sleeps.
    fn pause_until(
        &mut self,
        due: tokio::time::Instant,
    ) -> impl Future<Output = anyhow::Result<Confirms>> + Send {
        async move {
            tokio::time::sleep_until(due).await;
            Ok(Confirms::default())
        }
    }

    /// Writes out what is buffered and waits for every outstanding confirm.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<Confirms>> + Send;

    /// Takes the confirm latencies recorded so far, in microseconds: for each message confirmed
    /// (acked or nacked), the time from its publish call to the client's handling of the
    /// broker's answer (AMQP basic.ack or basic.nack; MQTT PUBACK, or PUBCOMP at QoS 2).
    /// `None` without confirms.
    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>>;

    /// Closes the connection politely.
    fn close(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// A connection consuming one queue or topic.
pub trait Consumer: Send + 'static {
    /// The next message body; `None` when the broker cancelled the consumer.
    fn next(&mut self) -> impl Future<Output = anyhow::Result<Option<Bytes>>> + Send;

    /// Acknowledges the last message `next` returned and, with `multiple`, every earlier one
    /// (AMQP with manual acks; a no-op otherwise). May be buffered until `next` has to wait.
    fn ack(&mut self, multiple: bool) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Stops the flow of messages (AMQP basic.cancel; MQTT: nothing, the close will do).
    fn cancel(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Closes the connection politely.
    fn close(self) -> impl Future<Output = anyhow::Result<()>> + Send;
}
