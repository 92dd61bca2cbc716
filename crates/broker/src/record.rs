//! The byte layout of what the broker persists: message records in queue logs and the
//! definitions of exchanges, queues and bindings in the metadata store.
//!
//! Integers are little-endian; strings and byte strings are length-prefixed (u32). A record
//! starts with a version byte so the layout can evolve. Decoding never panics: truncated or
//! malformed input is `None`, and the caller skips the record.

use crate::value::{Table, Value};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Layout version of metadata values and of retained messages.
const VERSION: u8 = 1;
/// Layout version of a queue log's message records: version 1 plus a flag byte and the
/// publisher's id (see [`QueueExtras`]). Version 1 records are still read (as persistent).
const QUEUE_VERSION: u8 = 2;
/// [`QueueExtras::transient`] in the flag byte.
const FLAG_TRANSIENT: u8 = 1;
/// Deepest nesting of tables/arrays accepted when decoding.
const MAX_DEPTH: usize = 32;

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32_le(b.len() as u32);
    out.put_slice(b);
}

/// Reads a length-prefixed byte string.
pub fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    if buf.remaining() < 4 {
        return None;
    }
    let len = buf.get_u32_le() as usize;
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

/// Reads a length-prefixed UTF-8 string.
pub fn get_string(buf: &mut Bytes) -> Option<String> {
    String::from_utf8(get_bytes(buf)?.to_vec()).ok()
}

/// Reads one byte.
pub fn get_u8(buf: &mut Bytes) -> Option<u8> {
    (buf.remaining() >= 1).then(|| buf.get_u8())
}

fn get_u64(buf: &mut Bytes) -> Option<u64> {
    (buf.remaining() >= 8).then(|| buf.get_u64_le())
}

/// Appends a table.
pub fn put_table(out: &mut BytesMut, t: &Table) {
    out.put_u32_le(t.0.len() as u32);
    for (k, v) in &t.0 {
        put_bytes(out, k.as_bytes());
        put_value(out, v);
    }
}

fn put_value(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Bool(b) => {
            out.put_u8(0);
            out.put_u8(u8::from(*b));
        }
        Value::Int(i) => {
            out.put_u8(1);
            out.put_i64_le(*i);
        }
        Value::UInt(u) => {
            out.put_u8(2);
            out.put_u64_le(*u);
        }
        Value::Float(f) => {
            out.put_u8(3);
            out.put_f64_le(*f);
        }
        Value::Decimal { scale, value } => {
            out.put_u8(4);
            out.put_u8(*scale);
            out.put_u32_le(*value);
        }
        Value::Str(b) => {
            out.put_u8(5);
            put_bytes(out, b);
        }
        Value::Bytes(b) => {
            out.put_u8(6);
            put_bytes(out, b);
        }
        Value::Timestamp(t) => {
            out.put_u8(7);
            out.put_u64_le(*t);
        }
        Value::Array(a) => {
            out.put_u8(8);
            out.put_u32_le(a.len() as u32);
            for v in a {
                put_value(out, v);
            }
        }
        Value::Table(t) => {
            out.put_u8(9);
            put_table(out, t);
        }
        Value::Void => out.put_u8(10),
    }
}

/// Reads a table.
pub fn get_table(buf: &mut Bytes) -> Option<Table> {
    table_at(buf, 0)
}

fn table_at(buf: &mut Bytes, depth: usize) -> Option<Table> {
    if depth > MAX_DEPTH || buf.remaining() < 4 {
        return None;
    }
    let n = buf.get_u32_le() as usize;
    let mut entries = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let k = get_string(buf)?;
        let v = value_at(buf, depth)?;
        entries.push((k, v));
    }
    Some(Table(entries))
}

fn value_at(buf: &mut Bytes, depth: usize) -> Option<Value> {
    Some(match get_u8(buf)? {
        0 => Value::Bool(get_u8(buf)? != 0),
        1 => Value::Int(get_u64(buf)? as i64),
        2 => Value::UInt(get_u64(buf)?),
        3 => Value::Float(f64::from_bits(get_u64(buf)?)),
        4 => {
            let scale = get_u8(buf)?;
            if buf.remaining() < 4 {
                return None;
            }
            Value::Decimal {
                scale,
                value: buf.get_u32_le(),
            }
        }
        5 => Value::Str(get_bytes(buf)?),
        6 => Value::Bytes(get_bytes(buf)?),
        7 => Value::Timestamp(get_u64(buf)?),
        8 => {
            if depth >= MAX_DEPTH || buf.remaining() < 4 {
                return None;
            }
            let n = buf.get_u32_le() as usize;
            let mut a = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                a.push(value_at(buf, depth + 1)?);
            }
            Value::Array(a)
        }
        9 => Value::Table(table_at(buf, depth + 1)?),
        10 => Value::Void,
        _ => return None,
    })
}

/// A persisted message, as a queue log stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Exchange it was published to.
    pub exchange: Bytes,
    /// Routing key.
    pub routing_key: Bytes,
    /// Encoded properties.
    pub properties: Bytes,
    /// Body.
    pub body: Bytes,
    /// When its TTL runs out, in milliseconds since the Unix epoch (0: never).
    pub expires_at_ms: u64,
}

/// What a queue log's record (layout version 2) keeps beside the message itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueExtras {
    /// A transient message, written only to keep its place in a paged-out queue: dropped (and
    /// acknowledged) when the queue is restored after a restart, never resurrected.
    pub transient: bool,
    /// Who published it ([`crate::Message::origin`]); meaningful only in the
    /// process that wrote the record (ids start again after a restart).
    pub origin: u64,
}

/// A message to encode as a [`MessageRecord`], borrowed from where it lives (a queued
/// [`crate::Message`] keeps its parts in one allocation, not as `Bytes`).
#[derive(Debug, Clone, Copy)]
pub struct MessageRecordRef<'a> {
    /// Exchange it was published to.
    pub exchange: &'a [u8],
    /// Routing key.
    pub routing_key: &'a [u8],
    /// Encoded properties.
    pub properties: &'a [u8],
    /// Body.
    pub body: &'a [u8],
    /// When its TTL runs out, in milliseconds since the Unix epoch (0: never).
    pub expires_at_ms: u64,
}

impl<'a> MessageRecordRef<'a> {
    /// The record of `m`, a message that stores its routing key (see [`MessageRecordRef::in_queue`]).
    pub fn of(m: &'a crate::Message, expires_at_ms: u64) -> MessageRecordRef<'a> {
        let key = m.routing_key().unwrap_or_default();
        MessageRecordRef::with_key(m, key, expires_at_ms)
    }

    /// The record of `m`, taken from the queue named `queue` (whose name is its routing key
    /// when it does not store one: `Message::to_named_queue`).
    pub fn in_queue(
        m: &'a crate::Message,
        queue: &'a str,
        expires_at_ms: u64,
    ) -> MessageRecordRef<'a> {
        MessageRecordRef::with_key(m, m.routing_key_in(queue), expires_at_ms)
    }

    fn with_key(m: &'a crate::Message, key: &'a str, expires_at_ms: u64) -> MessageRecordRef<'a> {
        MessageRecordRef {
            exchange: m.exchange().as_bytes(),
            routing_key: key.as_bytes(),
            properties: m.properties_raw(),
            body: m.body(),
            expires_at_ms,
        }
    }

    fn capacity(&self) -> usize {
        48 + self.exchange.len() + self.routing_key.len() + self.properties.len() + self.body.len()
    }

    fn put_message(&self, out: &mut BytesMut) {
        out.put_u64_le(self.expires_at_ms);
        put_bytes(out, self.exchange);
        put_bytes(out, self.routing_key);
        put_bytes(out, self.properties);
        put_bytes(out, self.body);
    }

    /// Encodes the record (layout version 1: retained messages).
    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.capacity());
        out.put_u8(VERSION);
        self.put_message(&mut out);
        out
    }

    /// Encodes the record for a queue log, with `extras` (layout version 2).
    pub fn encode_queued(&self, extras: QueueExtras) -> BytesMut {
        let mut out = BytesMut::with_capacity(self.capacity());
        out.put_u8(QUEUE_VERSION);
        out.put_u8(if extras.transient { FLAG_TRANSIENT } else { 0 });
        out.put_u64_le(extras.origin);
        self.put_message(&mut out);
        out
    }
}

impl MessageRecord {
    /// The record, borrowed for encoding.
    pub fn as_ref(&self) -> MessageRecordRef<'_> {
        MessageRecordRef {
            exchange: &self.exchange,
            routing_key: &self.routing_key,
            properties: &self.properties,
            body: &self.body,
            expires_at_ms: self.expires_at_ms,
        }
    }

    /// Encodes the record (layout version 1: retained messages).
    pub fn encode(&self) -> BytesMut {
        self.as_ref().encode()
    }

    /// Encodes the record for a queue log, with `extras` (layout version 2).
    pub fn encode_queued(&self, extras: QueueExtras) -> BytesMut {
        self.as_ref().encode_queued(extras)
    }

    /// Decodes a record of either layout; `None` if it is not one.
    pub fn decode(buf: Bytes) -> Option<MessageRecord> {
        MessageRecord::decode_queued(buf).map(|(r, _)| r)
    }

    /// Decodes a record of either layout with its extras (a version 1 record is a persistent
    /// message of unknown origin); `None` if it is not one.
    pub fn decode_queued(mut buf: Bytes) -> Option<(MessageRecord, QueueExtras)> {
        let extras = match get_u8(&mut buf)? {
            VERSION => QueueExtras::default(),
            QUEUE_VERSION => {
                let flags = get_u8(&mut buf)?;
                QueueExtras {
                    transient: flags & FLAG_TRANSIENT != 0,
                    origin: get_u64(&mut buf)?,
                }
            }
            _ => return None,
        };
        let expires_at_ms = get_u64(&mut buf)?;
        let record = MessageRecord {
            expires_at_ms,
            exchange: get_bytes(&mut buf)?,
            routing_key: get_bytes(&mut buf)?,
            properties: get_bytes(&mut buf)?,
            body: get_bytes(&mut buf)?,
        };
        Some((record, extras))
    }
}

/// Starts a metadata value (version byte).
pub fn begin() -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(VERSION);
    out
}

/// Checks a metadata value's version byte and returns the rest.
pub fn open(value: &[u8]) -> Option<Bytes> {
    let mut buf = Bytes::copy_from_slice(value);
    (get_u8(&mut buf)? == VERSION).then_some(buf)
}

/// Reads one flag byte.
pub fn get_flag(buf: &mut Bytes) -> Option<bool> {
    get_u8(buf).map(|b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip() {
        let t = Table(vec![
            ("x-message-ttl".into(), Value::Int(-5)),
            ("s".into(), Value::Str(Bytes::from_static(b"text"))),
            (
                "nested".into(),
                Value::Array(vec![
                    Value::Table(Table(vec![("b".into(), Value::Bool(true))])),
                    Value::Void,
                    Value::Float(1.5),
                    Value::Decimal { scale: 2, value: 7 },
                    Value::Timestamp(9),
                    Value::UInt(u64::MAX),
                    Value::Bytes(Bytes::from_static(&[0, 1, 2])),
                ]),
            ),
        ]);
        let mut out = BytesMut::new();
        put_table(&mut out, &t);
        assert_eq!(get_table(&mut out.freeze()), Some(t));
    }

    #[test]
    fn message_records_round_trip_and_garbage_is_refused() {
        let r = MessageRecord {
            exchange: Bytes::from_static(b"amq.topic"),
            routing_key: Bytes::from_static(b"a.b"),
            properties: Bytes::from_static(&[0x10, 0, 2]),
            body: Bytes::from_static(b"hello"),
            expires_at_ms: 42,
        };
        let enc = r.encode().freeze();
        assert_eq!(MessageRecord::decode(enc.clone()), Some(r));
        for cut in 0..enc.len() {
            assert_eq!(MessageRecord::decode(enc.slice(..cut)), None);
        }
    }

    #[test]
    fn queue_records_carry_their_extras_and_old_records_still_decode() {
        let r = MessageRecord {
            exchange: Bytes::from_static(b"x"),
            routing_key: Bytes::from_static(b"k"),
            properties: Bytes::new(),
            body: Bytes::from_static(b"body"),
            expires_at_ms: 7,
        };
        let extras = QueueExtras {
            transient: true,
            origin: 99,
        };
        let enc = r.encode_queued(extras).freeze();
        assert_eq!(
            MessageRecord::decode_queued(enc.clone()),
            Some((r.clone(), extras))
        );
        assert_eq!(MessageRecord::decode(enc.clone()), Some(r.clone()));
        for cut in 0..enc.len() {
            assert_eq!(MessageRecord::decode_queued(enc.slice(..cut)), None);
        }
        // A version 1 record (written before paging existed) is a persistent message.
        let v1 = r.encode().freeze();
        assert_eq!(
            MessageRecord::decode_queued(v1),
            Some((r, QueueExtras::default()))
        );
        assert_eq!(
            MessageRecord::decode_queued(Bytes::from_static(&[3, 0])),
            None
        );
    }
}
