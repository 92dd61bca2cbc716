//! Messages as the core sees them.
//!
//! A message is published once and may land in many queues: [`Message`] is a thin handle (8
//! bytes, a reference count without a weak count) to one immutable allocation, so fan-out copies
//! no payload. The properties stay in the encoded form they arrived in, together with the codec
//! of the protocol that encoded them ([`PropertiesCodec`]); the core reads the few fields every
//! queue needs ([`MessageMeta`]: TTL, priority, persistence) once at creation, and everything else
//! through a neutral [`PropertiesView`] decoded when asked for (headers exchange,
//! dead-lettering: cold paths, which decode once per routing or dead-lettering call).
//!
//! Layout (docs/performance.md, "Memory per message"): one allocation holds the reference
//! count, a 24-byte header, and the exchange name, routing key and properties, each behind a
//! varint length, then the body itself when it is at most [`INLINE_BODY_MAX`] bytes; a larger
//! body stays a `Bytes` of its own (boxed, behind the header's 8-byte pointer), so that a large
//! message is never copied. A resident 16-byte message with a 32-byte routing key takes one
//! 96-byte allocation where it took four (280 bytes).

mod codecs;
mod packed;

pub use packed::{Message, INLINE_BODY_MAX};

use crate::value::Table;
use bytes::Bytes;
use std::fmt;

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
/// core, which knows no wire format. `meta` is given the properties as they arrived (on the
/// publish path); `view` and `dead_lettered`, cold paths, a copy out of the stored message.
pub trait PropertiesCodec: Send + Sync {
    /// The neutral view (a malformed encoding yields the default, empty view).
    fn view(&self, raw: &Bytes) -> PropertiesView;
    /// The hot-path subset; must be cheap when the properties are plain.
    fn meta(&self, raw: &Bytes) -> MessageMeta;
    /// The properties of a dead-lettered copy: `death` recorded (AMQP `x-death` and
    /// `x-first-death-*` headers), the per-message expiration removed.
    fn dead_lettered(&self, raw: &Bytes, death: &Death) -> Bytes;
    /// The `CC` routing keys the properties carry (sender-selected distribution; `BCC` was
    /// removed at publish). Dead-lettering records them in `x-death` and, without a
    /// dead-letter routing key, routes with them (RabbitMQ `rabbit_dead_letter:make_msg`).
    /// None by default: a codec without such headers.
    fn cc_keys(&self, _raw: &Bytes) -> Vec<String> {
        Vec::new()
    }
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
    /// The routing keys it had been published with: its routing key, then its `CC` keys.
    pub routing_keys: Vec<String>,
    /// A dead-letter routing key replaces the message's keys: the copy loses its `CC` header
    /// too (RabbitMQ `rabbit_dead_letter:make_msg` deletes it), so it names no key it was not
    /// routed with.
    pub remove_cc: bool,
    /// When, in seconds since the Unix epoch.
    pub time: u64,
}

/// Encoded properties and the codec that reads them: what [`Message::new`] takes.
#[derive(Clone)]
pub struct Properties {
    raw: Bytes,
    codec: &'static dyn PropertiesCodec,
}

impl Properties {
    /// Wraps encoded properties; nothing is decoded.
    pub fn new(raw: Bytes, codec: &'static dyn PropertiesCodec) -> Properties {
        Properties { raw, codec }
    }

    /// The properties exactly as they arrived.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The codec that reads them.
    pub fn codec(&self) -> &'static dyn PropertiesCodec {
        self.codec
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Properties")
            .field("raw_len", &self.raw.len())
            .finish()
    }
}
