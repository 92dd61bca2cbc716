//! Messages as the core sees them.
//!
//! A message is published once and may land in many queues: [`Message`] is a cheap handle
//! (`Arc`) to one immutable [`MessageInner`], so fan-out copies no payload. The properties stay
//! in the encoded form they arrived in (`raw`), together with the decoder of the protocol that
//! encoded them; the core reads them through a small neutral [`PropertiesView`] that is decoded on
//! first use only (headers exchange, TTL, dead-lettering, crossing to the other protocol).

use crate::value::Table;
use bytes::Bytes;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// The encoding of a message's properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertiesFormat {
    /// AMQP 0-9-1 basic-class property flags and list.
    Amqp091,
}

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

/// Turns raw properties into the neutral view. Provided by the protocol adapter that encoded
/// them; a malformed encoding yields the default (empty) view.
pub type PropertiesDecoder = fn(&Bytes) -> PropertiesView;

/// Encoded properties plus a lazily decoded view of them.
pub struct Properties {
    format: PropertiesFormat,
    raw: Bytes,
    decode: PropertiesDecoder,
    view: OnceLock<PropertiesView>,
}

impl Properties {
    /// Wraps encoded properties; nothing is decoded until [`Properties::view`] is called.
    pub fn new(format: PropertiesFormat, raw: Bytes, decode: PropertiesDecoder) -> Properties {
        Properties {
            format,
            raw,
            decode,
            view: OnceLock::new(),
        }
    }

    /// The encoding of `raw`.
    pub fn format(&self) -> PropertiesFormat {
        self.format
    }

    /// The properties exactly as they arrived.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The decoded view (decoded once, on first call).
    pub fn view(&self) -> &PropertiesView {
        self.view.get_or_init(|| (self.decode)(&self.raw))
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Properties")
            .field("format", &self.format)
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
        Message(Arc::new(MessageInner {
            exchange,
            routing_key: Bytes::copy_from_slice(routing_key.as_bytes()),
            properties,
            body,
            origin,
            received: Instant::now(),
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
