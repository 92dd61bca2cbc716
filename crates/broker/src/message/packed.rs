//! [`Message`]: one allocation per message, behind an 8-byte handle.
//!
//! The allocation (a `triomphe::ThinArc`) holds a reference count (8 bytes, no weak count), the
//! [`Header`] (16), the length of what follows (8), and then, as bytes: the receive time and
//! the TTL (8 + 4, only when the message has a TTL), the priority (1, only when it has one),
//! the exchange name, the routing key (unless it is the queue's name: [`Message::to_named_queue`])
//! and the raw properties, each behind a varint length, and last the body when it is at most
//! [`INLINE_BODY_MAX`] bytes.
//! A larger body stays the `Bytes` it arrived in, boxed behind the header's pointer, so neither
//! a publish nor a delivery copies it.

use super::{codecs, MessageMeta, Properties, PropertiesCodec, PropertiesView};
use crate::queue::Deadline;
use bytes::Bytes;
use smallvec::SmallVec;
use std::fmt;
use std::time::{Duration, Instant};
use triomphe::ThinArc;

/// Bodies up to this size live in the message's own allocation; larger ones in a `Bytes` of
/// their own. Copying a small body into the message (on publish) and out of it (into a
/// delivery's frames, which the AMQP writer does for every body anyway) costs less than the
/// allocation and the 32-byte `Bytes` it saves; a large one is better shared than copied.
pub const INLINE_BODY_MAX: usize = 256;

/// Flag: published as persistent.
const PERSISTENT: u8 = 1;
/// Flag: the data holds a priority (after the TTL, if any).
const HAS_PRIORITY: u8 = 2;
/// Flag: the data starts with the receive time and the per-message TTL in milliseconds (saturated
/// at 2^32 - 1, about 49 days: RabbitMQ refuses larger TTLs, `rabbit_misc:check_expiry`).
const HAS_EXPIRATION: u8 = 4;
/// Flag: published to the default exchange with the name of the only queue it reached as its
/// routing key, which is not stored (see [`Message::to_named_queue`]).
const KEY_IS_QUEUE: u8 = 8;
/// Flag: the exchange is stored as a one-byte index into [`STANDARD_EXCHANGES`].
const STANDARD_EXCHANGE: u8 = 16;

/// Exchanges every vhost has (RabbitMQ's `amq.*`), stored in a message as one byte instead of
/// their names (9 to 11 bytes): MQTT publishes go through `amq.topic`, and applications often
/// use these rather than their own. (A table of any exchange's names would need a lock to
/// read and a rule to forget names; these are static.)
const STANDARD_EXCHANGES: [&str; 5] = [
    "amq.direct",
    "amq.fanout",
    "amq.headers",
    "amq.match",
    "amq.topic",
];

/// Origins are kept in 48 bits (a larger one saturates).
const ORIGIN_MAX: u64 = (1 << 48) - 1;

/// The fixed part of a message: 16 bytes. The TTL and the priority, which most messages do
/// without, are in the data when they are set.
#[derive(Clone)]
struct Header {
    /// The body, when larger than [`INLINE_BODY_MAX`] (boxed: 8 bytes here instead of 32 in
    /// every message).
    large_body: Option<Box<Bytes>>,
    /// Broker-wide id of the connection or session that published it (0: the broker itself),
    /// in 48 bits (low 32, high 16), which fill what would otherwise be the pointer's padding;
    /// MQTT's no-local option compares it. Ids are taken from a counter (`Broker::next_id`) by
    /// connections, channels and HTTP publishes: 2^48 of them last 8.9 years at a million a
    /// second, and one that saturated could only make a no-local subscriber skip a message of
    /// another publisher past that point.
    origin_low: u32,
    origin_high: u16,
    /// `PERSISTENT`, `HAS_PRIORITY`, `HAS_EXPIRATION`, `KEY_IS_QUEUE`, `STANDARD_EXCHANGE`.
    flags: u8,
    /// Its properties' codec (`codecs::get`).
    codec: u8,
}

/// A shared handle to a published message; cloning it is a reference-count increment.
#[derive(Clone)]
pub struct Message(ThinArc<Header, u8>);

/// The variable parts, split out of the data.
struct Parts<'a> {
    exchange: &'a [u8],
    routing_key: &'a [u8],
    properties: &'a [u8],
    /// The inline body (empty when the body is large).
    body: &'a [u8],
}

impl Message {
    /// Creates a message: the exchange name, routing key and properties are copied into it, and
    /// a body of at most [`INLINE_BODY_MAX`] bytes as well. A larger body is kept as it is:
    /// it must own its bytes, not be a slice of a connection's read buffer, which it would pin
    /// (see [`Message::body_from_buffer`]).
    pub fn new(
        exchange: impl AsRef<[u8]>,
        routing_key: &str,
        properties: Properties,
        body: Bytes,
        origin: u64,
    ) -> Self {
        Message::build(
            exchange.as_ref(),
            Some(routing_key),
            properties,
            body,
            origin,
        )
    }

    /// Creates a message published to the default exchange whose routing key names the one
    /// queue it goes to (no `CC`/`BCC` keys: the commonest publish, RabbitMQ's "send to
    /// queue"): the key is that queue's name, so it is not stored, which saves its length in
    /// every such message. Whoever reads the key takes it from the queue
    /// ([`Message::routing_key_in`]); the publisher routes it with the key it has
    /// (`VHost::publish_cc`). As [`Message::new`] otherwise.
    pub fn to_named_queue(properties: Properties, body: Bytes, origin: u64) -> Self {
        Message::build(b"", None, properties, body, origin)
    }

    /// The same message with `routing_key` stored in it (a copy; the message itself if it
    /// stores its key already), for a reader that needs the key without its queue.
    pub fn with_routing_key(&self, routing_key: &str) -> Message {
        if !self.flag(KEY_IS_QUEUE) {
            return self.clone();
        }
        let p = self.parts();
        let mut data: SmallVec<[u8; 512]> = SmallVec::new();
        let prefix = self.prefix_len();
        data.extend_from_slice(self.0.slice.get(..prefix).unwrap_or_default());
        let standard = put_exchange(&mut data, p.exchange);
        put(&mut data, routing_key.as_bytes());
        put(&mut data, p.properties);
        data.extend_from_slice(p.body);
        let mut header = self.header().clone();
        header.flags &= !(KEY_IS_QUEUE | STANDARD_EXCHANGE);
        header.flags |= standard;
        Message(ThinArc::from_header_and_slice(header, &data))
    }

    fn build(
        exchange: &[u8],
        routing_key: Option<&str>,
        properties: Properties,
        body: Bytes,
        origin: u64,
    ) -> Self {
        let raw = properties.raw();
        let meta = properties.codec().meta(raw);
        let mut flags = 0;
        if routing_key.is_none() {
            flags |= KEY_IS_QUEUE;
        }
        if meta.persistent {
            flags |= PERSISTENT;
        }
        let inline = body.len() <= INLINE_BODY_MAX;
        let mut data: SmallVec<[u8; 512]> = SmallVec::new();
        if let Some(ms) = meta.expiration_ms {
            // The receive time: only an MQTT 5 delivery reads it (the expiry interval left),
            // and only for a message with a TTL: others do without these 8 bytes.
            flags |= HAS_EXPIRATION;
            let now = Deadline::at(Instant::now()).to_bits();
            data.extend_from_slice(&now.to_le_bytes());
            let ms = u32::try_from(ms).unwrap_or(u32::MAX);
            data.extend_from_slice(&ms.to_le_bytes());
        }
        if let Some(priority) = meta.priority {
            flags |= HAS_PRIORITY;
            data.push(priority);
        }
        flags |= put_exchange(&mut data, exchange);
        if let Some(key) = routing_key {
            put(&mut data, key.as_bytes());
        }
        put(&mut data, raw);
        if inline {
            data.extend_from_slice(&body);
        }
        let origin = origin.min(ORIGIN_MAX);
        let header = Header {
            large_body: (!inline).then(|| Box::new(body)),
            origin_low: origin as u32,
            origin_high: (origin >> 32) as u16,
            flags,
            codec: codecs::index(properties.codec()),
        };
        Message(ThinArc::from_header_and_slice(header, &data))
    }

    /// The body to give [`Message::new`] for `payload`, a slice of a connection's read buffer:
    /// the slice itself when the message will copy it inline anyway, an exact copy otherwise
    /// (so that a queued message never pins a read buffer). Saves small messages an allocation
    /// and a copy.
    pub fn body_from_buffer(payload: Bytes) -> Bytes {
        if payload.len() <= INLINE_BODY_MAX {
            payload
        } else {
            Bytes::copy_from_slice(&payload)
        }
    }

    fn header(&self) -> &Header {
        &self.0.header.header
    }

    fn flag(&self, f: u8) -> bool {
        self.header().flags & f != 0
    }

    /// The length of the TTL and priority fields at the start of the data.
    fn prefix_len(&self) -> usize {
        let mut n = 0;
        if self.flag(HAS_EXPIRATION) {
            n += 12;
        }
        if self.flag(HAS_PRIORITY) {
            n += 1;
        }
        n
    }

    fn parts(&self) -> Parts<'_> {
        let mut rest: &[u8] = self.0.slice.get(self.prefix_len()..).unwrap_or_default();
        let exchange = if self.flag(STANDARD_EXCHANGE) {
            let (&i, tail) = rest.split_first().unwrap_or((&0, &[]));
            rest = tail;
            STANDARD_EXCHANGES
                .get(usize::from(i))
                .map_or(&[][..], |n| n.as_bytes())
        } else {
            take(&mut rest)
        };
        let routing_key = if self.flag(KEY_IS_QUEUE) {
            &[]
        } else {
            take(&mut rest)
        };
        let properties = take(&mut rest);
        Parts {
            exchange,
            routing_key,
            properties,
            body: rest,
        }
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        std::str::from_utf8(self.parts().exchange).unwrap_or_default()
    }

    /// The routing key it was published with, when the message stores it: `None` for one made
    /// by [`Message::to_named_queue`], whose key is the name of the queue it is in (see
    /// [`Message::routing_key_in`]).
    pub fn routing_key(&self) -> Option<&str> {
        if self.flag(KEY_IS_QUEUE) {
            return None;
        }
        Some(std::str::from_utf8(self.parts().routing_key).unwrap_or_default())
    }

    /// The routing key it was published with, for a message taken from the queue named
    /// `queue` (deliveries, dead-lettering, the queue's log).
    pub fn routing_key_in<'a>(&'a self, queue: &'a str) -> &'a str {
        self.routing_key().unwrap_or(queue)
    }

    /// Its properties exactly as they arrived.
    pub fn properties_raw(&self) -> &[u8] {
        self.parts().properties
    }

    /// Its properties as `Bytes` (copied: for the cold paths that decode them).
    pub fn properties_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.properties_raw())
    }

    /// Its properties, as a [`Properties`] for a new message (copied).
    pub fn properties(&self) -> Properties {
        Properties::new(self.properties_bytes(), self.codec())
    }

    /// The codec of its properties.
    pub fn codec(&self) -> &'static dyn PropertiesCodec {
        codecs::get(self.header().codec)
    }

    /// The neutral view of its properties, decoded on each call (the callers, headers exchange
    /// and dead-lettering, decode once per routing call).
    pub fn view(&self) -> PropertiesView {
        self.codec().view(&self.properties_bytes())
    }

    /// Per-message TTL, priority, persistence.
    pub fn meta(&self) -> MessageMeta {
        let data = &self.0.slice;
        let expiration_ms = self
            .flag(HAS_EXPIRATION)
            .then(|| data.get(8..12)?.try_into().ok().map(u32::from_le_bytes))
            .flatten();
        let priority = if self.flag(HAS_PRIORITY) {
            let at = if self.flag(HAS_EXPIRATION) { 12 } else { 0 };
            data.get(at).copied()
        } else {
            None
        };
        MessageMeta {
            expiration_ms: expiration_ms.map(u64::from),
            priority,
            persistent: self.flag(PERSISTENT),
        }
    }

    /// Its body.
    pub fn body(&self) -> &[u8] {
        match &self.header().large_body {
            Some(b) => b,
            None => self.parts().body,
        }
    }

    /// Its body as `Bytes`: shared when it is large, copied when it is small.
    pub fn body_bytes(&self) -> Bytes {
        match &self.header().large_body {
            Some(b) => Bytes::clone(b),
            None => Bytes::copy_from_slice(self.parts().body),
        }
    }

    /// The size of its body.
    pub fn body_len(&self) -> usize {
        self.body().len()
    }

    /// Broker-wide id of the connection or session that published it (0: the broker itself).
    pub fn origin(&self) -> u64 {
        let h = self.header();
        u64::from(h.origin_low) | u64::from(h.origin_high) << 32
    }

    /// How long ago the broker received it; kept only for a message with a TTL (`None`
    /// otherwise), the one case that needs it.
    pub fn age(&self) -> Option<Duration> {
        if !self.flag(HAS_EXPIRATION) {
            return None;
        }
        let bits = self.0.slice.first_chunk::<8>()?;
        let received = Deadline::from_bits(u64::from_le_bytes(*bits)).instant();
        Some(received.elapsed())
    }

    /// Whether both handles point to the same message.
    pub fn ptr_eq(a: &Message, b: &Message) -> bool {
        std::ptr::eq(a.0.heap_ptr(), b.0.heap_ptr())
    }

    /// The bytes its allocation takes before the allocator rounds it up (count, header,
    /// length, data); a large body's own allocation is not counted.
    pub fn allocation_size(&self) -> usize {
        let size = 8 + std::mem::size_of::<Header>() + 8 + self.0.slice.len();
        size.next_multiple_of(8)
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("properties_len", &self.properties_raw().len())
            .field("body_len", &self.body_len())
            .field("origin", &self.origin())
            .field("meta", &self.meta())
            .finish()
    }
}

/// Appends `bytes` behind their length (LEB128: one byte below 128).
fn put(data: &mut SmallVec<[u8; 512]>, bytes: &[u8]) {
    let mut n = bytes.len();
    while n >= 0x80 {
        data.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    data.push(n as u8);
    data.extend_from_slice(bytes);
}

/// Appends the exchange name, as an index when it is a standard one: returns the flag to set.
fn put_exchange(data: &mut SmallVec<[u8; 512]>, exchange: &[u8]) -> u8 {
    match STANDARD_EXCHANGES
        .iter()
        .position(|n| n.as_bytes() == exchange)
    {
        Some(i) => {
            data.push(i as u8);
            STANDARD_EXCHANGE
        }
        None => {
            put(data, exchange);
            0
        }
    }
}

/// Takes one length-prefixed part off the front of `rest`, as [`put`] wrote it.
fn take<'a>(rest: &mut &'a [u8]) -> &'a [u8] {
    let mut n = 0usize;
    let mut shift = 0;
    while let Some((&b, tail)) = rest.split_first() {
        *rest = tail;
        n |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    let (part, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    part
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
