//! The bench's own RabbitMQ Stream protocol client (`pigeon bench stream`): tokio and
//! `stream-wire`, no client library, in the manner of `amqp_raw` (see `net.rs`: each connection
//! is driven by the one task that uses it, with no background reader).
//!
//! - `conn`: the socket, the handshake, requests and responses, heartbeats, close;
//! - `publisher`: messages encoded straight into `Publish` frames in the write buffer, many per
//!   frame, optionally in sub-batches, with a window of unconfirmed messages;
//! - `consumer`: one subscription with chunk credit, messages handed out zero-copy from each
//!   delivered chunk;
//! - `confirms`: confirms by publishing id, with one send time per frame;
//! - `load`: the stream workload, publishers and consumers driven frame by frame and chunk by
//!   chunk (one clock reading per frame or chunk, every message still counted and checked);
//! - `message`: the AMQP 1.0 data section around each body, and the walk over a chunk's
//!   entries;
//! - `read`: the read-only run (`-x 0`), which measures how fast a stream is read back;
//! - `settings`: the flags as the report echoes them.
//!
//! This file is the [`Client`] the workload drives, and the stream's creation and deletion.

mod confirms;
mod conn;
mod consumer;
pub(crate) mod load;
mod message;
mod publisher;
pub(crate) mod read;
mod settings;

pub use conn::{is_tls, STREAM_SCHEMES};
pub use publisher::Batching;
pub use settings::StreamSettings;

use super::client::{Client, ConsumeOptions, PublishOptions};
use super::net::{BrokerUrl, BULK};
use super::tls::TlsClient;
use conn::{code_of, Conn};
use consumer::StreamConsumer;
use publisher::StreamPublisher;
use stream_wire::{Create, Delete, OffsetSpec, Properties, ResponseCode, Str};

/// Where and how to connect, publish and consume.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    pub url: BrokerUrl,
    pub tls: Option<TlsClient>,
    /// Where consumers start.
    pub offset: OffsetSpec,
    /// Consumers' chunk credit.
    pub credit: u16,
    pub batching: Batching,
    /// Bytes a consumer reads at once.
    pub read_chunk: usize,
}

impl StreamConfig {
    /// A configuration with the defaults of `pigeon bench stream`.
    pub fn new(url: BrokerUrl, tls: Option<TlsClient>) -> Self {
        StreamConfig {
            url,
            tls,
            offset: OffsetSpec::Next,
            credit: 32,
            batching: Batching {
                frame: 100,
                sub_entry: None,
            },
            read_chunk: 4 * BULK,
        }
    }
}

/// A connection of the bench's stream client.
pub struct StreamClient {
    conn: Conn,
    config: StreamConfig,
}

impl StreamClient {
    /// Creates `stream` unless it exists; true if this call created it.
    pub async fn ensure_stream(&mut self, stream: &str) -> anyhow::Result<bool> {
        let correlation_id = self.conn.correlation();
        let answer = self
            .conn
            .rpc(Create {
                correlation_id,
                stream: Str::new(stream)?,
                arguments: Properties::new(),
            })
            .await?;
        match code_of(&answer) {
            Some(ResponseCode::Ok) => Ok(true),
            Some(ResponseCode::StreamAlreadyExists) => Ok(false),
            Some(code) => anyhow::bail!("creating stream {stream}: {code:?}"),
            None => anyhow::bail!("creating stream {stream}: unexpected answer {answer:?}"),
        }
    }
}

impl Client for StreamClient {
    type Config = StreamConfig;
    type Publisher = StreamPublisher;
    type Consumer = StreamConsumer;

    async fn connect(config: &StreamConfig, name: &str) -> anyhow::Result<Self> {
        let conn = Conn::open(&config.url, name, config.read_chunk, config.tls.as_ref()).await?;
        Ok(StreamClient {
            conn,
            config: config.clone(),
        })
    }

    async fn declare_queue(&mut self, name: &str, _durable: bool) -> anyhow::Result<()> {
        self.ensure_stream(name).await.map(|_| ())
    }

    async fn delete_queue(&mut self, name: &str) -> anyhow::Result<()> {
        let correlation_id = self.conn.correlation();
        let answer = self
            .conn
            .rpc(Delete {
                correlation_id,
                stream: Str::new(name)?,
            })
            .await?;
        conn::expect_ok(&answer, "Delete")
    }

    async fn declare_exchange(&mut self, _name: &str, _kind: &str) -> anyhow::Result<()> {
        anyhow::bail!("the stream protocol has no exchanges")
    }

    async fn delete_exchange(&mut self, _name: &str) -> anyhow::Result<()> {
        anyhow::bail!("the stream protocol has no exchanges")
    }

    async fn bind_queue(
        &mut self,
        _queue: &str,
        _exchange: &str,
        _key: &str,
    ) -> anyhow::Result<()> {
        anyhow::bail!("the stream protocol has no bindings")
    }

    async fn publisher(
        self,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<StreamPublisher> {
        // The stream protocol always confirms; the workload always passes a window.
        let window = options.confirm_window.unwrap_or(10_000) as usize;
        StreamPublisher::open(self.conn, target, window, self.config.batching).await
    }

    async fn consumer(
        self,
        source: &str,
        _options: ConsumeOptions,
    ) -> anyhow::Result<StreamConsumer> {
        StreamConsumer::open(self.conn, source, self.config.offset, self.config.credit).await
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}
