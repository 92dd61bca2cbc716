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

use super::client::{Client, Confirms, ConsumeOptions, Consumer, PublishOptions, Publisher};
use super::net::{BrokerUrl, Wire, AMQP_SCHEMES, BULK};
use super::tls::TlsClient;
use amqp_wire::{
    decode_frame, encode_body_frames, encode_header_frame, encode_method_frame, BasicAck,
    BasicCancel, BasicCancelOk, BasicConsume, BasicProperties, BasicPublish, BasicQos,
    ChannelClose, ChannelCloseOk, ChannelOpen, ConfirmSelect, ConnectionClose, ConnectionCloseOk,
    ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, ExchangeDeclare, ExchangeDelete,
    FieldTable, FieldValue, Frame, Method, QueueBind, QueueDeclare, QueueDelete, ShortString,
    PROTOCOL_HEADER,
};
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Instant;

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
}

/// An open connection: the socket, its buffers and what tuning settled.
#[derive(Debug)]
pub struct Conn {
    wire: Wire,
    frame_max: u32,
    channel_max: u16,
}

impl Conn {
    /// Connects (over TLS with `tls`) and logs in (PLAIN), with heartbeats off; `source` picks
    /// the local address.
    pub async fn open(
        url: &str,
        name: &str,
        source: Option<IpAddr>,
        read_chunk: usize,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Conn> {
        let url = BrokerUrl::parse(url, AMQP_SCHEMES)?;
        let wire = Wire::connect(&url.host, url.port, source, read_chunk, tls).await?;
        let mut conn = Conn {
            wire,
            frame_max: amqp_wire::FRAME_MIN_SIZE,
            channel_max: CHANNEL_MAX,
        };
        conn.handshake(&url, name).await?;
        Ok(conn)
    }

    async fn handshake(&mut self, url: &BrokerUrl, name: &str) -> anyhow::Result<()> {
        self.wire.out.extend_from_slice(&PROTOCOL_HEADER);
        let start = match self
            .next_method(0)
            .await
            .context("waiting for connection.start")?
        {
            Method::ConnectionStart(start) => start,
            other => anyhow::bail!("expected connection.start, got {}", other.name()),
        };
        let mechanisms = String::from_utf8_lossy(&start.mechanisms).into_owned();
        if !mechanisms.split_whitespace().any(|m| m == "PLAIN") {
            anyhow::bail!("the broker does not offer PLAIN login (it offers {mechanisms})");
        }
        let user = url.user.as_deref().unwrap_or("guest");
        let password = url.password.as_deref().unwrap_or("guest");
        let start_ok = ConnectionStartOk {
            client_properties: client_properties(name),
            response: Bytes::from(format!("\0{user}\0{password}")),
            ..ConnectionStartOk::default()
        };
        self.send_method(0, start_ok);
        let tune = match self.next_method(0).await.context("logging in")? {
            Method::ConnectionTune(tune) => tune,
            Method::ConnectionSecure(_) => {
                anyhow::bail!("the broker asked for a SASL challenge, which PLAIN has none of")
            }
            other => anyhow::bail!("expected connection.tune, got {}", other.name()),
        };
        self.channel_max = match tune.channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        self.send_method(
            0,
            ConnectionTuneOk {
                channel_max: self.channel_max,
                frame_max,
                heartbeat: 0,
            },
        );
        self.frame_max = frame_max;
        let vhost = match url.path.as_deref() {
            None | Some("") => "/",
            Some(v) => v,
        };
        self.send_method(
            0,
            ConnectionOpen {
                virtual_host: ShortString::new(vhost).context("vhost name too long")?,
            },
        );
        match self
            .next_method(0)
            .await
            .with_context(|| format!("opening vhost {vhost}"))?
        {
            Method::ConnectionOpenOk(_) => Ok(()),
            other => anyhow::bail!("expected connection.open-ok, got {}", other.name()),
        }
    }

    /// Buffers a method frame.
    fn send_method(&mut self, channel: u16, method: impl Into<Method>) {
        encode_method_frame(channel, &method.into(), &mut self.wire.out);
    }

    /// The next frame, reading (and writing what is buffered) as needed.
    async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            self.wire.receive().await?;
        }
    }

    /// Decodes one frame from what has been read, if a whole one is there.
    fn decode(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.wire.rbuf.starts_with(b"AMQP") {
            // A broker that does not speak 0-9-1 answers with the header of what it speaks.
            let got = self.wire.rbuf.get(..8).unwrap_or_default();
            anyhow::bail!("the broker refused AMQP 0-9-1 and offered protocol header {got:?}");
        }
        Ok(decode_frame(&mut self.wire.rbuf, self.frame_max)?)
    }

    /// The next method on `channel`, answering and reporting a connection.close or a
    /// channel.close, and skipping what does not concern the caller (heartbeats, blocked
    /// notices, other channels).
    async fn next_method(&mut self, channel: u16) -> anyhow::Result<Method> {
        loop {
            let frame = self.next_frame().await?;
            if let Some(method) = self.screen(frame)? {
                if method.0 == channel {
                    return Ok(method.1);
                }
            }
        }
    }

    /// Deals with the frames every role treats alike: a connection.close or channel.close from
    /// the broker becomes an error (after the -ok it asks for), heartbeats and blocked notices
    /// are dropped. Returns the other methods with their channel; content frames are dropped.
    fn screen(&mut self, frame: Frame) -> anyhow::Result<Option<(u16, Method)>> {
        match frame {
            Frame::Method {
                channel,
                method: Method::ConnectionClose(close),
            } => {
                self.send_method(channel, ConnectionCloseOk {});
                anyhow::bail!(
                    "the broker closed the connection: {} {}",
                    close.reply_code,
                    close.reply_text
                );
            }
            Frame::Method {
                channel,
                method: Method::ChannelClose(close),
            } => {
                self.send_method(channel, ChannelCloseOk {});
                anyhow::bail!(
                    "the broker closed channel {channel}: {} {}",
                    close.reply_code,
                    close.reply_text
                );
            }
            Frame::Method {
                method: Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_),
                ..
            } => Ok(None),
            Frame::Method { channel, method } => Ok(Some((channel, method))),
            Frame::Header { .. } | Frame::Body { .. } | Frame::Heartbeat { .. } => Ok(None),
        }
    }

    /// Sends `method` on `channel` and waits for its answer there.
    async fn rpc(&mut self, channel: u16, method: impl Into<Method>) -> anyhow::Result<Method> {
        let method = method.into();
        let name = method.name();
        self.send_method(channel, method);
        self.next_method(channel)
            .await
            .with_context(|| format!("waiting for the answer to {name}"))
    }

    /// Opens `channel`.
    async fn open_channel(&mut self, channel: u16) -> anyhow::Result<()> {
        expect(
            self.rpc(channel, ChannelOpen {}).await?,
            "channel.open-ok",
            |m| matches!(m, Method::ChannelOpenOk(_)),
        )
    }

    /// Closes the connection: connection.close, then waits for close-ok (or the socket's end).
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.send_method(
            0,
            ConnectionClose {
                reply_code: 200,
                reply_text: ShortString::from_static("OK"),
                class_id: 0,
                method_id: 0,
            },
        );
        loop {
            let frame = match self.next_frame().await {
                Ok(frame) => frame,
                // The broker may drop the socket right after close-ok, or instead of it.
                Err(_) => return Ok(()),
            };
            if let Frame::Method { method, .. } = frame {
                match method {
                    Method::ConnectionCloseOk(_) => return Ok(()),
                    Method::ConnectionClose(_) => {
                        self.send_method(0, ConnectionCloseOk {});
                        let _ = self.wire.send().await;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Waits for the broker to close the connection (for idle connections): returns why.
    pub async fn hold(&mut self) -> anyhow::Error {
        loop {
            match self.next_frame().await {
                Ok(frame) => {
                    if let Err(e) = self.screen(frame) {
                        let _ = self.wire.send().await;
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    }

    /// Opens channel 1 (for idle connections).
    pub async fn open_first_channel(&mut self) -> anyhow::Result<()> {
        self.open_channel(1).await
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

/// What the bench tells the broker about itself; `capabilities` announces the extensions it
/// handles.
fn client_properties(name: &str) -> FieldTable {
    let text = |s: &str| FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()));
    let mut capabilities = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        capabilities.insert(cap, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert("product", text("pigeon-bench"));
    props.insert("version", text(env!("CARGO_PKG_VERSION")));
    props.insert("platform", text("Rust"));
    props.insert("connection_name", text(name));
    props.insert("capabilities", FieldValue::Table(capabilities));
    props
}

/// A connection of the bench's own AMQP client.
pub struct RawAmqp {
    conn: Conn,
    exchange: String,
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
            next_channel: 1,
        })
    }

    async fn declare_queue(&mut self, name: &str, durable: bool) -> anyhow::Result<()> {
        let declare = QueueDeclare {
            queue: ShortString::new(name)?,
            durable,
            ..QueueDeclare::default()
        };
        self.on_own_channel(declare, "queue.declare-ok", |m| {
            matches!(m, Method::QueueDeclareOk(_))
        })
        .await
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
        mut self,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<RawPublisher> {
        let channel = 1;
        self.conn.open_channel(channel).await?;
        if options.confirm_window.is_some() {
            let select = ConfirmSelect { no_wait: false };
            expect(
                self.conn
                    .rpc(channel, select)
                    .await
                    .context("confirm.select")?,
                "confirm.select-ok",
                |m| matches!(m, Method::ConfirmSelectOk(_)),
            )?;
        }
        let publish = BasicPublish {
            exchange: ShortString::new(&self.exchange)?,
            routing_key: ShortString::new(target)?,
            ..BasicPublish::default()
        };
        let mut method_frame = BytesMut::new();
        encode_method_frame(channel, &publish.into(), &mut method_frame);
        let properties = BasicProperties {
            delivery_mode: Some(if options.persistent { 2 } else { 1 }),
            ..BasicProperties::default()
        };
        Ok(RawPublisher {
            conn: self.conn,
            channel,
            method_frame: method_frame.freeze(),
            properties: properties.to_bytes(),
            window: options.confirm_window.map(|w| w as usize),
            confirms: ConfirmTracker::default(),
        })
    }

    async fn consumer(
        mut self,
        source: &str,
        options: ConsumeOptions,
    ) -> anyhow::Result<RawConsumer> {
        let channel = 1;
        self.conn.open_channel(channel).await?;
        if options.prefetch > 0 {
            let qos = BasicQos {
                prefetch_count: options.prefetch,
                ..BasicQos::default()
            };
            expect(
                self.conn.rpc(channel, qos).await.context("basic.qos")?,
                "basic.qos-ok",
                |m| matches!(m, Method::BasicQosOk(_)),
            )?;
        }
        let consume = BasicConsume {
            queue: ShortString::new(source)?,
            no_ack: !options.manual_ack,
            ..BasicConsume::default()
        };
        let tag = match self
            .conn
            .rpc(channel, consume)
            .await
            .context("basic.consume")?
        {
            Method::BasicConsumeOk(ok) => ok.consumer_tag,
            other => anyhow::bail!("expected basic.consume-ok, got {}", other.name()),
        };
        Ok(RawConsumer {
            conn: self.conn,
            channel,
            tag,
            delivery: Delivery::None,
            last_tag: 0,
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}

/// Publisher confirms by delivery tag: tags are numbered from 1 in publish order, and each ack
/// or nack settles one tag or, with `multiple`, every tag up to it.
#[derive(Debug)]
struct ConfirmTracker {
    /// The oldest unsettled tag (everything below is settled).
    base: u64,
    /// For tags `base`, `base + 1`, ...: when the unsettled ones were published; `None` once
    /// settled.
    pending: VecDeque<Option<Instant>>,
    /// How many of `pending` are unsettled.
    unsettled: usize,
    /// Confirms counted since the workload last asked.
    found: Confirms,
    /// Confirm latencies (publish call to the ack or nack settling it), microseconds.
    latency_us: Histogram<u64>,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker {
            base: 1,
            pending: VecDeque::new(),
            unsettled: 0,
            found: Confirms::default(),
            latency_us: super::tally::latency_histogram(),
        }
    }
}

impl ConfirmTracker {
    /// Records one more publish, made at `at`.
    fn published(&mut self, at: Instant) {
        self.pending.push_back(Some(at));
        self.unsettled += 1;
    }

    /// Settles `tag` (and with `multiple`, every tag below it; tag 0 with `multiple` is every
    /// tag published so far), as acked or nacked, the answer having arrived at `now`.
    fn settle(&mut self, tag: u64, multiple: bool, acked: bool, now: Instant) {
        let next = self.base + self.pending.len() as u64;
        let (from, to) = match (multiple, tag) {
            (true, 0) => (self.base, next),
            (true, t) => (self.base, t.saturating_add(1).min(next)),
            (false, t) => (t.max(self.base), t.saturating_add(1).min(next)),
        };
        for t in from..to {
            let Some(slot) = self.pending.get_mut((t - self.base) as usize) else {
                break;
            };
            if let Some(sent) = slot.take() {
                self.unsettled -= 1;
                let us = now.saturating_duration_since(sent).as_micros();
                self.latency_us
                    .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
                if acked {
                    self.found.acked += 1;
                } else {
                    self.found.nacked += 1;
                }
            }
        }
        while self.pending.front() == Some(&None) {
            self.pending.pop_front();
            self.base += 1;
        }
    }

    fn take(&mut self) -> Confirms {
        std::mem::take(&mut self.found)
    }
}

/// A connection publishing to one queue on channel 1.
pub struct RawPublisher {
    conn: Conn,
    channel: u16,
    /// basic.publish, encoded once.
    method_frame: Bytes,
    /// The content properties, encoded once.
    properties: Bytes,
    window: Option<usize>,
    confirms: ConfirmTracker,
}

impl RawPublisher {
    /// Handles what the broker sent: confirms, and errors.
    fn process(&mut self) -> anyhow::Result<()> {
        while let Some(frame) = self.conn.decode()? {
            match self.conn.screen(frame)? {
                Some((_, Method::BasicAck(ack))) => {
                    let now = Instant::now();
                    self.confirms
                        .settle(ack.delivery_tag, ack.multiple, true, now);
                }
                Some((_, Method::BasicNack(nack))) => {
                    let now = Instant::now();
                    self.confirms
                        .settle(nack.delivery_tag, nack.multiple, false, now);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads until the broker has settled all but `room` messages.
    async fn settle_until(&mut self, room: usize) -> anyhow::Result<Confirms> {
        self.process()?;
        while self.confirms.unsettled > room {
            self.conn.wire.receive().await?;
            self.process()?;
        }
        Ok(self.confirms.take())
    }
}

impl Publisher for RawPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        match self.window {
            Some(window) => self.settle_until(window.saturating_sub(1)).await,
            None => Ok(Confirms::default()),
        }
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        // The publish call's time, as close to the workload's stamp as can be.
        let at = self.window.map(|_| Instant::now());
        let out = &mut self.conn.wire.out;
        out.extend_from_slice(&self.method_frame);
        encode_header_frame(
            self.channel,
            BASIC_CLASS,
            body.len() as u64,
            &self.properties,
            out,
        );
        encode_body_frames(self.channel, body, self.conn.frame_max, out);
        if let Some(at) = at {
            self.confirms.published(at);
        }
        if out.len() >= WRITE_BATCH {
            self.conn.wire.send().await?;
            self.process()?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> anyhow::Result<()> {
        self.conn.wire.send().await?;
        self.process()
    }

    async fn flush(&mut self) -> anyhow::Result<Confirms> {
        self.conn.wire.send().await?;
        self.settle_until(0).await
    }

    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>> {
        self.window.map(|_| {
            let empty = super::tally::latency_histogram();
            std::mem::replace(&mut self.confirms.latency_us, empty)
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}

/// Where a consumer is in the frames of one delivery.
enum Delivery {
    /// Between deliveries.
    None,
    /// After basic.deliver, waiting for the content header.
    Header { tag: u64 },
    /// Collecting `remaining` more body bytes.
    Body {
        tag: u64,
        remaining: u64,
        parts: BytesMut,
    },
}

/// A connection consuming one queue on channel 1.
pub struct RawConsumer {
    conn: Conn,
    channel: u16,
    tag: ShortString,
    delivery: Delivery,
    /// Delivery tag of the last message returned.
    last_tag: u64,
}

impl RawConsumer {
    /// Takes one frame; returns a body when it completes a delivery, `Err` on a broker error,
    /// and `Ok(Some(None))` when the broker cancelled the consumer.
    fn take(&mut self, frame: Frame) -> anyhow::Result<Option<Option<Bytes>>> {
        let complete = |consumer: &mut RawConsumer, tag: u64, body: Bytes| {
            consumer.last_tag = tag;
            consumer.delivery = Delivery::None;
            Ok(Some(Some(body)))
        };
        match frame {
            Frame::Header { body_size, .. } => {
                if let Delivery::Header { tag } = self.delivery {
                    if body_size == 0 {
                        return complete(self, tag, Bytes::new());
                    }
                    self.delivery = Delivery::Body {
                        tag,
                        remaining: body_size,
                        parts: BytesMut::new(),
                    };
                }
                Ok(None)
            }
            Frame::Body { payload, .. } => {
                let Delivery::Body {
                    tag,
                    remaining,
                    parts,
                } = &mut self.delivery
                else {
                    return Ok(None);
                };
                let tag = *tag;
                let len = payload.len() as u64;
                if parts.is_empty() && len >= *remaining {
                    // The usual case: the whole body in one frame, handed out without a copy.
                    return complete(self, tag, payload);
                }
                parts.extend_from_slice(&payload);
                *remaining = remaining.saturating_sub(len);
                if *remaining == 0 {
                    let body = std::mem::take(parts).freeze();
                    return complete(self, tag, body);
                }
                Ok(None)
            }
            frame => match self.conn.screen(frame)? {
                Some((_, Method::BasicDeliver(deliver))) => {
                    self.delivery = Delivery::Header {
                        tag: deliver.delivery_tag,
                    };
                    Ok(None)
                }
                Some((channel, Method::BasicCancel(cancel))) => {
                    if !cancel.no_wait {
                        let ok = BasicCancelOk {
                            consumer_tag: cancel.consumer_tag,
                        };
                        self.conn.send_method(channel, ok);
                    }
                    Ok(Some(None))
                }
                _ => Ok(None),
            },
        }
    }
}

impl Consumer for RawConsumer {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            while let Some(frame) = self.conn.decode()? {
                if let Some(delivered) = self.take(frame)? {
                    return Ok(delivered);
                }
            }
            self.conn.wire.receive().await?;
        }
    }

    async fn ack(&mut self, multiple: bool) -> anyhow::Result<()> {
        if self.last_tag == 0 {
            return Ok(());
        }
        let ack = BasicAck {
            delivery_tag: self.last_tag,
            multiple,
        };
        self.conn.send_method(self.channel, ack);
        if self.conn.wire.out.len() >= WRITE_BATCH {
            self.conn.wire.send().await?;
        }
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        let cancel = BasicCancel {
            consumer_tag: self.tag.clone(),
            no_wait: false,
        };
        self.conn.send_method(self.channel, cancel);
        // Deliveries already on their way are dropped (unacked ones go back to the queue).
        loop {
            let frame = self.conn.next_frame().await?;
            if let Some((_, Method::BasicCancelOk(_))) = self.conn.screen(frame)? {
                return Ok(());
            }
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirms(t: &mut ConfirmTracker) -> (u64, u64, usize) {
        let c = t.take();
        (c.acked, c.nacked, t.unsettled)
    }

    #[test]
    fn single_and_multiple_confirms_settle_each_tag_once() {
        let now = Instant::now();
        let mut t = ConfirmTracker::default();
        for _ in 0..10 {
            t.published(now);
        }
        t.settle(3, false, true, now);
        t.settle(2, false, false, now);
        assert_eq!(confirms(&mut t), (1, 1, 8));
        t.settle(5, true, true, now); // 1, 4, 5: 2 and 3 were settled already
        assert_eq!(confirms(&mut t), (3, 0, 5));
        assert_eq!(t.base, 6);
        t.settle(5, false, true, now); // again: ignored
        t.settle(99, false, true, now); // never published: ignored
        assert_eq!(confirms(&mut t), (0, 0, 5));
        t.settle(0, true, false, now); // everything so far
        assert_eq!(confirms(&mut t), (0, 5, 0));
        assert!(t.pending.is_empty());
        t.published(now);
        t.settle(11, true, true, now);
        assert_eq!(confirms(&mut t), (1, 0, 0));
    }

    #[test]
    fn each_settled_tag_records_one_confirm_latency() {
        use std::time::Duration;
        let start = Instant::now();
        let mut t = ConfirmTracker::default();
        for i in 0..10 {
            t.published(start + Duration::from_micros(i));
        }
        let later = start + Duration::from_millis(2);
        t.settle(4, false, true, later);
        assert_eq!(t.latency_us.len(), 1);
        t.settle(4, false, true, later); // already settled: no second sample
        t.settle(6, true, false, later); // 1, 2, 3, 5, 6: nacks count too
        assert_eq!(t.latency_us.len(), 6);
        // An answer before the publish (clock trouble) records 0, not a huge value.
        t.settle(7, false, true, start);
        assert_eq!(t.latency_us.len(), 7);
        assert_eq!(t.latency_us.min(), 0);
        t.settle(0, true, true, later); // the rest: 8, 9, 10
        assert_eq!(t.latency_us.len(), 10);
        assert_eq!(t.unsettled, 0);
        assert!(t.latency_us.max() <= 2_000 + 2, "{}", t.latency_us.max());
    }

    #[test]
    fn client_properties_name_the_connection() {
        let props = client_properties("pigeon-bench producer 0");
        let name = props.get("connection_name").and_then(FieldValue::as_str);
        assert_eq!(name, Some("pigeon-bench producer 0"));
        let caps = props.get("capabilities").and_then(FieldValue::as_table);
        assert!(caps.is_some_and(|c| c.get("publisher_confirms").is_some()));
    }
}
