//! Messages as the core sees them.
//!
//! A message is published once and may land in many queues: [`Message`] is a cheap handle
//! (`Arc`) to one immutable [`MessageInner`], so fan-out copies no payload. The properties stay
//! in the encoded form they arrived in (`raw`), together with the codec of the protocol that
//! encoded them ([`PropertiesCodec`]); the core reads the few fields every queue needs
//! ([`MessageMeta`]: TTL, priority, persistence) once at creation, and everything else through a
//! neutral [`PropertiesView`] decoded on first use only (headers exchange, dead-lettering).

use crate::value::Table;
use bytes::Bytes;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The properties the core needs to read, decoded from the raw form on demand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PropertiesView {
    /// Application headers.
    pub headers: Option<Table>,
    /// 2 = persistent, 1 (or absent) = transient.
    pub delivery_mode: Option<u8>,
    /// Message priority.
    pub priority: Option<u8>,
    /// Per-message TTL in milliseconds, as text (AMQP `expiration`).
    pub expiration: Option<String>,
}

/// The few properties every queue needs, read once when the message is created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageMeta {
    /// Per-message TTL in milliseconds.
    pub expiration_ms: Option<u64>,
    /// Message priority.
    pub priority: Option<u8>,
    /// Published as persistent.
    pub persistent: bool,
}

/// The protocol adapter that encoded a message's properties reads and rewrites them for the
/// core, which knows no wire format.
pub trait PropertiesCodec: Send + Sync {
    /// The neutral view (a malformed encoding yields the default, empty view).
    fn view(&self, raw: &Bytes) -> PropertiesView;
    /// The hot-path subset; must be cheap when the properties are plain.
    fn meta(&self, raw: &Bytes) -> MessageMeta;
    /// The properties of a dead-lettered copy: `death` recorded (AMQP `x-death` and
    /// `x-first-death-*` headers), the per-message expiration removed.
    fn dead_lettered(&self, raw: &Bytes, death: &Death) -> Bytes;
}

/// A codec for properties nothing reads: an empty view, default (transient) meta, and
/// dead-lettered copies left unchanged. For benchmarks and tests of routing, which never look
/// at properties.
pub struct OpaqueProperties;

impl PropertiesCodec for OpaqueProperties {
    fn view(&self, _: &Bytes) -> PropertiesView {
        PropertiesView::default()
    }
    fn meta(&self, _: &Bytes) -> MessageMeta {
        MessageMeta::default()
    }
    fn dead_lettered(&self, raw: &Bytes, _: &Death) -> Bytes {
        raw.clone()
    }
}

/// Why a message was dead-lettered (the `reason` of an `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped or refused by a length limit.
    MaxLen,
    /// Returned more often than the queue's delivery limit.
    DeliveryLimit,
}

impl DeathReason {
    /// The name RabbitMQ writes in `x-death`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// One dead-lettering event, as recorded in the message.
#[derive(Debug, Clone)]
pub struct Death {
    /// The queue it died in.
    pub queue: String,
    /// Why.
    pub reason: DeathReason,
    /// The exchange it had been published to.
    pub exchange: String,
    /// The routing keys it had been published with.
    pub routing_keys: Vec<String>,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
}

/// Encoded properties plus a lazily decoded view of them.
pub struct Properties {
    raw: Bytes,
    codec: &'static dyn PropertiesCodec,
    /// Boxed: most messages are never decoded (a plain AMQP or MQTT delivery forwards `raw`),
    /// and inline the view would cost every queued message about 50 bytes.
    view: OnceLock<Box<PropertiesView>>,
}

impl Properties {
    /// Wraps encoded properties; nothing is decoded until [`Properties::view`] is called.
    pub fn new(raw: Bytes, codec: &'static dyn PropertiesCodec) -> Properties {
        Properties {
            raw,
            codec,
            view: OnceLock::new(),
        }
    }

    /// The properties exactly as they arrived.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The codec that reads them.
    pub fn codec(&self) -> &'static dyn PropertiesCodec {
        self.codec
    }

    /// The decoded view (decoded once, on first call).
    pub fn view(&self) -> &PropertiesView {
        self.view
            .get_or_init(|| Box::new(self.codec.view(&self.raw)))
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Properties")
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// One published message.
#[derive(Debug)]
pub struct MessageInner {
    /// The exchange it was published to (UTF-8; shared with the exchange, not copied).
    pub exchange: Bytes,
    /// The routing key it was published with (UTF-8).
    pub routing_key: Bytes,
    /// Its properties.
    pub properties: Properties,
    /// Its body, owning its own bytes (never a slice of a connection's read buffer).
    pub body: Bytes,
    /// Broker-wide id of the connection or session that published it (0: the broker itself);
    /// MQTT's no-local option compares it.
    pub origin: u64,
    /// When the broker received it (for expiry).
    pub received: Instant,
    /// Per-message TTL, priority, persistence.
    pub meta: MessageMeta,
}

impl MessageInner {
    /// The exchange name.
    pub fn exchange(&self) -> &str {
        std::str::from_utf8(&self.exchange).unwrap_or_default()
    }

    /// The routing key.
    pub fn routing_key(&self) -> &str {
        std::str::from_utf8(&self.routing_key).unwrap_or_default()
    }
}

/// A shared handle to a published message; cloning it is a reference-count increment.
#[derive(Debug, Clone)]
pub struct Message(Arc<MessageInner>);

impl Message {
    /// Creates a message. `exchange` is the exchange's `name_bytes` (shared, not copied); the
    /// routing key is copied into an allocation of its own.
    pub fn new(
        exchange: Bytes,
        routing_key: &str,
        properties: Properties,
        body: Bytes,
        origin: u64,
    ) -> Self {
        let meta = properties.codec.meta(&properties.raw);
        Message(Arc::new(MessageInner {
            exchange,
            routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
            properties,
            body,
            origin,
            received: Instant::now(),
            meta,
        }))
    }

    /// The neutral view of the properties.
    pub fn view(&self) -> &PropertiesView {
        self.0.properties.view()
    }
}

impl std::ops::Deref for Message {
    type Target = MessageInner;
    fn deref(&self) -> &MessageInner {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    /// What a message costs in memory, beyond its body's own allocation, is mostly these
    /// structs (docs/architecture.md, "Memory per message"): keep them from growing unnoticed.
    #[test]
    fn message_structs_stay_small() {
        eprintln!(
            "MessageInner {} Properties {} PropertiesView {} MessageMeta {} QueuedMessage {}",
            size_of::<MessageInner>(),
            size_of::<Properties>(),
            size_of::<PropertiesView>(),
            size_of::<MessageMeta>(),
            size_of::<crate::queue::QueuedMessage>(),
        );
        assert!(size_of::<Properties>() <= 64, "{}", size_of::<Properties>());
        assert!(
            size_of::<MessageInner>() <= 208,
            "{}",
            size_of::<MessageInner>()
        );
        assert!(size_of::<crate::queue::QueuedMessage>() <= 32);
        assert_eq!(size_of::<Message>(), size_of::<usize>());
    }
}
