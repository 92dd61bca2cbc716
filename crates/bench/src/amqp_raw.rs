//! The bench's own AMQP 0-9-1 client (`--client raw`, the default): tokio and `amqp-wire`, no
//! client library. A client of any 0-9-1 broker: PLAIN login, heartbeats off, one channel per
//! role.
//!
//! Why it exists: lapin spends about a core to move 35,000 small messages a second, so on a
//! small machine the load generator, not the broker, was the limit. This client does the least
//! the protocol allows, in the task that uses the connection (see `net.rs`):
//! - a publisher encodes each basic.publish, content header and body into one write buffer (the
//!   method frame is encoded once per run and copied) and writes when [`WRITE_BATCH`] bytes have
//!   gathered, when it must wait for confirms, or when the workload pauses;
//! - confirms are tracked with a run of publish times indexed by delivery tag, so `multiple`
//!   acks and nacks, in or out of order, cost one pass over what they settle, and each message
//!   settled adds its confirm latency (publish call to basic.ack) to a histogram;
//! - a consumer decodes deliveries straight from the read buffer (a body in one frame is handed
//!   out without a copy) and its acks wait in the write buffer until it next reads.
//!
//! This file holds the client's administrative side (declare, bind, delete, each on a channel of
//! its own); `conn` the connection, `publisher` and `consumer` the two roles.

mod conn;
mod consumer;
mod publisher;

pub use conn::Conn;
use consumer::RawConsumer;
use publisher::RawPublisher;

use super::client::{Client, ConsumeOptions, PublishOptions};
use super::net::BULK;
use super::tls::TlsClient;
use amqp_wire::{
    ChannelClose, ExchangeDeclare, ExchangeDelete, FieldTable, Method, QueueBind, QueueDeclare,
    QueueDelete, ShortString,
};

/// Publishes are written once this many bytes have gathered.
pub const WRITE_BATCH: usize = 32 * 1024;
/// The largest frame we offer; the broker may ask for less.
const FRAME_MAX: u32 = 128 * 1024;
/// Channels we offer; the bench uses one or two per connection.
const CHANNEL_MAX: u16 = 2047;
/// The class id of basic, for content headers.
const BASIC_CLASS: u16 = 60;

/// Where to connect, shared by both AMQP clients.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost`.
    pub url: String,
    /// Publish through this exchange; empty for the default exchange. (Queues are bound by the
    /// workload, which knows the keys.)
    pub exchange: String,
    /// TLS, for an `amqps://` URL.
    pub tls: Option<TlsClient>,
    /// The arguments of every queue declared (`--queue-arg`).
    pub queue_args: FieldTable,
}

/// A connection of the bench's own AMQP client.
pub struct RawAmqp {
    conn: Conn,
    exchange: String,
    /// The arguments of the queues it declares.
    queue_args: FieldTable,
    /// The next channel number for administrative work.
    next_channel: u16,
}

impl RawAmqp {
    /// A fresh channel number for one administrative operation.
    fn channel(&mut self) -> u16 {
        let channel = self.next_channel;
        self.next_channel = if channel >= self.conn.channel_max {
            1
        } else {
            channel + 1
        };
        channel
    }

    /// Runs `method` on a channel of its own, expecting the answer `ok_name`.
    async fn on_own_channel(
        &mut self,
        method: impl Into<Method>,
        ok_name: &str,
        ok: impl Fn(&Method) -> bool,
    ) -> anyhow::Result<()> {
        let channel = self.channel();
        self.conn.open_channel(channel).await?;
        expect(self.conn.rpc(channel, method).await?, ok_name, ok)?;
        let close = ChannelClose {
            reply_code: 200,
            reply_text: ShortString::from_static("OK"),
            class_id: 0,
            method_id: 0,
        };
        expect(
            self.conn.rpc(channel, close).await?,
            "channel.close-ok",
            |m| matches!(m, Method::ChannelCloseOk(_)),
        )
    }
}

impl Client for RawAmqp {
    type Config = AmqpConfig;
    type Publisher = RawPublisher;
    type Consumer = RawConsumer;

    async fn connect(config: &AmqpConfig, name: &str) -> anyhow::Result<Self> {
        Ok(RawAmqp {
            conn: Conn::open(&config.url, name, None, BULK, config.tls.as_ref()).await?,
            exchange: config.exchange.clone(),
            queue_args: config.queue_args.clone(),
            next_channel: 1,
        })
    }

    async fn declare_queue(&mut self, name: &str, durable: bool) -> anyhow::Result<()> {
        let declare = QueueDeclare {
            queue: ShortString::new(name)?,
            durable,
            arguments: self.queue_args.clone(),
            ..QueueDeclare::default()
        };
        self.on_own_channel(declare, "queue.declare-ok", |m| {
            matches!(m, Method::QueueDeclareOk(_))
        })
        .await
    }

    async fn knows_queue(&mut self, name: &str) -> anyhow::Result<bool> {
        let declare = QueueDeclare {
            queue: ShortString::new(name)?,
            passive: true,
            ..QueueDeclare::default()
        };
        let known = self
            .on_own_channel(declare, "queue.declare-ok", |m| {
                matches!(m, Method::QueueDeclareOk(_))
            })
            .await;
        match known {
            Ok(()) => Ok(true),
            // The broker closed the channel with 404 NOT_FOUND (and we answered close-ok): the
            // connection goes on.
            Err(e) if format!("{e:#}").contains("404") => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn declare_exchange(&mut self, name: &str, kind: &str) -> anyhow::Result<()> {
        let declare = ExchangeDeclare {
            exchange: ShortString::new(name)?,
            kind: ShortString::new(kind)?,
            ..ExchangeDeclare::default()
        };
        self.on_own_channel(declare, "exchange.declare-ok", |m| {
            matches!(m, Method::ExchangeDeclareOk(_))
        })
        .await
    }

    async fn delete_exchange(&mut self, name: &str) -> anyhow::Result<()> {
        let delete = ExchangeDelete {
            exchange: ShortString::new(name)?,
            ..ExchangeDelete::default()
        };
        self.on_own_channel(delete, "exchange.delete-ok", |m| {
            matches!(m, Method::ExchangeDeleteOk(_))
        })
        .await
    }

    async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
        let bind = QueueBind {
            queue: ShortString::new(queue)?,
            exchange: ShortString::new(exchange)?,
            routing_key: ShortString::new(key)?,
            ..QueueBind::default()
        };
        self.on_own_channel(bind, "queue.bind-ok", |m| {
            matches!(m, Method::QueueBindOk(_))
        })
        .await
    }

    async fn delete_queue(&mut self, name: &str) -> anyhow::Result<()> {
        let delete = QueueDelete {
            queue: ShortString::new(name)?,
            ..QueueDelete::default()
        };
        self.on_own_channel(delete, "queue.delete-ok", |m| {
            matches!(m, Method::QueueDeleteOk(_))
        })
        .await
    }

    async fn publisher(
        self,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<RawPublisher> {
        RawPublisher::open(self.conn, &self.exchange, target, options).await
    }

    async fn consumer(self, source: &str, options: ConsumeOptions) -> anyhow::Result<RawConsumer> {
        RawConsumer::open(self.conn, source, options).await
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}

/// Checks that an answer is the one expected.
fn expect(method: Method, name: &str, ok: impl Fn(&Method) -> bool) -> anyhow::Result<()> {
    if ok(&method) {
        Ok(())
    } else {
        anyhow::bail!("expected {name}, got {}", method.name())
    }
}
