//! Stream entries as RabbitMQ stores them: AMQP 1.0 messages (header, message-annotations,
//! properties, application-properties, data sections), so that stream-protocol clients read
//! the same bytes as RabbitMQ's. The mapping from and to AMQP 0-9-1 properties follows
//! RabbitMQ's `mc_amqpl` (`convert_to(mc_amqp, ...)` and back): delivery mode 2 is `durable`,
//! `expiration` the header's `ttl`, `timestamp` the `creation-time` (ms), `app-id` the
//! `group-id`, `type` the `x-basic-type` annotation, `x-` headers message annotations and other
//! headers (of simple types) application properties; `x-exchange` and `x-routing-key`
//! annotations carry where the message was published.
//!
//! Only what that mapping produces is written; the decoder reads every AMQP 1.0 type
//! (arrays and uuids are skipped as values), and refuses nothing it can skip.

use crate::amqp::AMQP_CODEC;
use amqp_wire::{BasicProperties, FieldTable, FieldValue, ShortString};
use bytes::Bytes;
use pigeon_broker::message::{Message, PropertiesCodec};
use pigeon_broker::queue::stream::StreamEntryCodec;
use pigeon_broker::record::MessageRecord;

const HEADER: u8 = 0x70;
const MESSAGE_ANNOTATIONS: u8 = 0x72;
const PROPERTIES: u8 = 0x73;
const APPLICATION_PROPERTIES: u8 = 0x74;
const DATA: u8 = 0x75;

/// An AMQP 1.0 value, as far as the 0-9-1 mapping needs.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    Null,
    Bool(bool),
    UByte(u8),
    UShort(u16),
    UInt(u32),
    ULong(u64),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Float(f32),
    Double(f64),
    Timestamp(i64),
    Binary(Bytes),
    Str(Bytes),
    Symbol(Bytes),
    List(Vec<V>),
    Map(Vec<(V, V)>),
}

fn put_var(out: &mut Vec<u8>, code: u8, b: &[u8]) {
    out.push(code);
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes `v` (wide forms only: any decoder reads them).
pub fn encode(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Null => out.push(0x40),
        V::Bool(b) => out.push(if *b { 0x41 } else { 0x42 }),
        V::UByte(x) => out.extend_from_slice(&[0x50, *x]),
        V::UShort(x) => {
            out.push(0x60);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::UInt(x) => {
            out.push(0x70);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::ULong(x) => {
            out.push(0x80);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Byte(x) => out.extend_from_slice(&[0x51, *x as u8]),
        V::Short(x) => {
            out.push(0x61);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Int(x) => {
            out.push(0x71);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Long(x) => {
            out.push(0x81);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Float(x) => {
            out.push(0x72);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Double(x) => {
            out.push(0x82);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Timestamp(x) => {
            out.push(0x83);
            out.extend_from_slice(&x.to_be_bytes());
        }
        V::Binary(b) => put_var(out, 0xb0, b),
        V::Str(b) => put_var(out, 0xb1, b),
        V::Symbol(b) => put_var(out, 0xb3, b),
        V::List(items) => {
            let mut body = Vec::new();
            for i in items {
                encode(i, &mut body);
            }
            compound(out, 0xd0, items.len(), &body);
        }
        V::Map(pairs) => {
            let mut body = Vec::new();
            for (k, v) in pairs {
                encode(k, &mut body);
                encode(v, &mut body);
            }
            compound(out, 0xd1, pairs.len() * 2, &body);
        }
    }
}

fn compound(out: &mut Vec<u8>, code: u8, count: usize, body: &[u8]) {
    out.push(code);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&(count as u32).to_be_bytes());
    out.extend_from_slice(body);
}

fn section(out: &mut Vec<u8>, descriptor: u8, v: &V) {
    out.extend_from_slice(&[0x00, 0x53, descriptor]);
    encode(v, out);
}

/// A cursor over encoded bytes.
struct Reader<'a> {
    b: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn arr<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn bytes(&mut self, n: usize) -> Option<Bytes> {
        let start = self.at;
        self.take(n)?;
        Some(self.b.slice(start..start + n))
    }
    fn len(&mut self, wide: bool) -> Option<usize> {
        if wide {
            Some(u32::from_be_bytes(self.arr()?) as usize)
        } else {
            self.u8().map(usize::from)
        }
    }

    /// Decodes one value; `None` on malformed input. A described value yields its value.
    fn value(&mut self, depth: u32) -> Option<V> {
        if depth > 32 {
            return None;
        }
        let code = self.u8()?;
        Some(match code {
            0x00 => {
                self.value(depth + 1)?; // descriptor
                return self.value(depth + 1);
            }
            0x40 => V::Null,
            0x41 => V::Bool(true),
            0x42 => V::Bool(false),
            0x56 => V::Bool(self.u8()? != 0),
            0x50 => V::UByte(self.u8()?),
            0x60 => V::UShort(u16::from_be_bytes(self.arr()?)),
            0x70 => V::UInt(u32::from_be_bytes(self.arr()?)),
            0x52 => V::UInt(u32::from(self.u8()?)),
            0x43 => V::UInt(0),
            0x80 => V::ULong(u64::from_be_bytes(self.arr()?)),
            0x53 => V::ULong(u64::from(self.u8()?)),
            0x44 => V::ULong(0),
            0x51 => V::Byte(self.u8()? as i8),
            0x61 => V::Short(i16::from_be_bytes(self.arr()?)),
            0x71 => V::Int(i32::from_be_bytes(self.arr()?)),
            0x54 => V::Int(i32::from(self.u8()? as i8)),
            0x81 => V::Long(i64::from_be_bytes(self.arr()?)),
            0x55 => V::Long(i64::from(self.u8()? as i8)),
            0x72 => V::Float(f32::from_be_bytes(self.arr()?)),
            0x82 => V::Double(f64::from_be_bytes(self.arr()?)),
            0x83 => V::Timestamp(i64::from_be_bytes(self.arr()?)),
            0x73 => {
                self.take(4)?; // char
                V::Null
            }
            0x74 => {
                self.take(4)?; // decimal32
                V::Null
            }
            0x84 => {
                self.take(8)?; // decimal64
                V::Null
            }
            0x94 | 0x98 => {
                self.take(16)?; // decimal128, uuid
                V::Null
            }
            0xa0 | 0xb0 => {
                let n = self.len(code == 0xb0)?;
                V::Binary(self.bytes(n)?)
            }
            0xa1 | 0xb1 => {
                let n = self.len(code == 0xb1)?;
                V::Str(self.bytes(n)?)
            }
            0xa3 | 0xb3 => {
                let n = self.len(code == 0xb3)?;
                V::Symbol(self.bytes(n)?)
            }
            0x45 => V::List(Vec::new()),
            0xc0 | 0xd0 | 0xc1 | 0xd1 => {
                let wide = code >= 0xd0;
                let size = self.len(wide)?;
                let end = self.at.checked_add(size)?;
                let count = self.len(wide)?;
                let mut items = Vec::new();
                for _ in 0..count {
                    if self.at >= end {
                        return None;
                    }
                    items.push(self.value(depth + 1)?);
                }
                self.at = end;
                if code & 1 == 1 {
                    let mut pairs = Vec::new();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    V::Map(pairs)
                } else {
                    V::List(items)
                }
            }
            0xe0 | 0xf0 => {
                let size = self.len(code == 0xf0)?;
                self.take(size)?; // arrays are skipped
                V::Null
            }
            _ => return None,
        })
    }
}

fn str_v(s: &ShortString) -> V {
    V::Str(Bytes::copy_from_slice(s.as_bytes()))
}

fn sym(s: &str) -> V {
    V::Symbol(Bytes::copy_from_slice(s.as_bytes()))
}

/// mc_amqpl `from_091`.
fn from_091(v: &FieldValue) -> V {
    match v {
        FieldValue::Bool(b) => V::Bool(*b),
        FieldValue::I8(x) => V::Byte(*x),
        FieldValue::U8(x) => V::UByte(*x),
        FieldValue::I16(x) => V::Short(*x),
        FieldValue::U16(x) => V::UShort(*x),
        FieldValue::I32(x) => V::Int(*x),
        FieldValue::U32(x) => V::UInt(*x),
        FieldValue::I64(x) => V::Long(*x),
        FieldValue::U64(x) => V::ULong(*x),
        FieldValue::F32(x) => V::Float(*x),
        FieldValue::F64(x) => V::Double(*x),
        FieldValue::Decimal { .. } | FieldValue::Void => V::Null,
        FieldValue::LongString(b) if std::str::from_utf8(b).is_ok() => V::Str(b.clone()),
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => V::Binary(b.clone()),
        FieldValue::Array(items) => V::List(items.iter().map(from_091).collect()),
        FieldValue::Timestamp(s) => V::Timestamp((*s as i64).saturating_mul(1000)),
        FieldValue::Table(t) => V::Map(
            t.iter()
                .map(|(k, v)| (sym(k.as_str()), from_091(v)))
                .collect(),
        ),
    }
}

/// mc_amqpl `to_091`.
fn to_091(v: &V) -> Option<FieldValue> {
    Some(match v {
        V::Null => FieldValue::Void,
        V::Bool(b) => FieldValue::Bool(*b),
        V::UByte(x) => FieldValue::U8(*x),
        V::UShort(x) => FieldValue::U16(*x),
        V::UInt(x) => FieldValue::U32(*x),
        V::ULong(x) => FieldValue::I64(*x as i64),
        V::Byte(x) => FieldValue::I8(*x),
        V::Short(x) => FieldValue::I16(*x),
        V::Int(x) => FieldValue::I32(*x),
        V::Long(x) => FieldValue::I64(*x),
        V::Float(x) => FieldValue::F32(*x),
        V::Double(x) => FieldValue::F64(*x),
        V::Timestamp(ms) => FieldValue::Timestamp((*ms / 1000).max(0) as u64),
        V::Binary(b) | V::Str(b) | V::Symbol(b) => FieldValue::LongString(b.clone()),
        V::List(items) => FieldValue::Array(items.iter().filter_map(to_091).collect()),
        V::Map(pairs) => {
            let mut t = FieldTable::new();
            for (k, v) in pairs {
                if let (Some(k), Some(v)) = (text(k), to_091(v)) {
                    t.insert(k, v);
                }
            }
            FieldValue::Table(t)
        }
    })
}

fn text(v: &V) -> Option<ShortString> {
    match v {
        V::Str(b) | V::Symbol(b) => ShortString::try_from(b.clone()).ok(),
        _ => None,
    }
}

/// Encodes a message as RabbitMQ writes it to a stream.
pub fn encode_message(
    exchange: &[u8],
    routing_key: &[u8],
    p: &BasicProperties,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 128);
    let ttl = p
        .expiration
        .as_ref()
        .and_then(|e| e.as_str().parse::<u32>().ok())
        .map_or(V::Null, V::UInt);
    let header = V::List(vec![
        V::Bool(p.delivery_mode == Some(2)),
        p.priority.map_or(V::Null, V::UByte),
        ttl,
    ]);
    section(&mut out, HEADER, &header);
    let mut annotations = vec![
        (sym("x-exchange"), V::Str(Bytes::copy_from_slice(exchange))),
        (
            sym("x-routing-key"),
            V::Str(Bytes::copy_from_slice(routing_key)),
        ),
    ];
    if let Some(t) = &p.kind {
        annotations.push((sym("x-basic-type"), str_v(t)));
    }
    let mut app = Vec::new();
    for (k, v) in p.headers.iter().flat_map(|h| h.iter()) {
        if k.as_str().starts_with("x-") {
            annotations.push((sym(k.as_str()), from_091(v)));
        } else if !matches!(v, FieldValue::Array(_) | FieldValue::Table(_)) {
            app.push((str_v(k), from_091(v)));
        }
    }
    section(&mut out, MESSAGE_ANNOTATIONS, &V::Map(annotations));
    let opt = |s: &Option<ShortString>| s.as_ref().map_or(V::Null, str_v);
    let symbol = |s: &Option<ShortString>| s.as_ref().map_or(V::Null, |s| sym(s.as_str()));
    let properties = V::List(vec![
        opt(&p.message_id),
        p.user_id
            .as_ref()
            .map_or(V::Null, |u| V::Binary(Bytes::copy_from_slice(u.as_bytes()))),
        V::Null,
        V::Null,
        opt(&p.reply_to),
        opt(&p.correlation_id),
        symbol(&p.content_type),
        symbol(&p.content_encoding),
        V::Null,
        p.timestamp
            .map_or(V::Null, |t| V::Timestamp((t as i64).saturating_mul(1000))),
        opt(&p.app_id),
    ]);
    section(&mut out, PROPERTIES, &properties);
    if !app.is_empty() {
        section(&mut out, APPLICATION_PROPERTIES, &V::Map(app));
    }
    section(&mut out, DATA, &V::Binary(Bytes::copy_from_slice(body)));
    out
}

/// Decodes an entry written by [`encode_message`] (or by any AMQP 1.0 client through the
/// stream protocol): exchange, routing key, 0-9-1 properties and body.
pub fn decode_message(entry: Bytes) -> Option<(Bytes, Bytes, BasicProperties, Bytes)> {
    let mut r = Reader { b: &entry, at: 0 };
    let mut p = BasicProperties::default();
    let (mut exchange, mut routing_key) = (Bytes::new(), Bytes::new());
    let mut body = Vec::new();
    let mut headers = FieldTable::new();
    while r.at < entry.len() {
        if r.u8()? != 0x00 {
            return None;
        }
        let descriptor = match r.value(0)? {
            V::ULong(d) => d,
            _ => return None,
        };
        let v = r.value(0)?;
        match (descriptor as u8, v) {
            (HEADER, V::List(f)) => {
                if f.first() == Some(&V::Bool(true)) {
                    p.delivery_mode = Some(2);
                }
                if let Some(V::UByte(x)) = f.get(1) {
                    p.priority = Some(*x);
                }
                if let Some(V::UInt(ttl)) = f.get(2) {
                    p.expiration = Some(ShortString::from(ttl.to_string()));
                }
            }
            (MESSAGE_ANNOTATIONS, V::Map(pairs)) => {
                for (k, v) in pairs {
                    let Some(k) = text(&k) else { continue };
                    match (k.as_str(), &v) {
                        ("x-exchange", V::Str(b)) => exchange = b.clone(),
                        ("x-routing-key", V::Str(b)) => routing_key = b.clone(),
                        ("x-basic-type", _) => p.kind = text(&v),
                        _ => {
                            if let Some(v) = to_091(&v) {
                                headers.insert(k, v);
                            }
                        }
                    }
                }
            }
            (PROPERTIES, V::List(f)) => {
                let get = |i: usize| f.get(i).and_then(text);
                p.message_id = get(0);
                p.user_id = match f.get(1) {
                    Some(V::Binary(b)) => ShortString::try_from(b.clone()).ok(),
                    _ => None,
                };
                p.reply_to = get(4);
                p.correlation_id = get(5);
                p.content_type = get(6);
                p.content_encoding = get(7);
                if let Some(V::Timestamp(ms)) = f.get(9) {
                    p.timestamp = Some((*ms / 1000).max(0) as u64);
                }
                p.app_id = get(10);
            }
            (APPLICATION_PROPERTIES, V::Map(pairs)) => {
                for (k, v) in pairs {
                    if let (Some(k), Some(v)) = (text(&k), to_091(&v)) {
                        headers.insert(k, v);
                    }
                }
            }
            (DATA, V::Binary(b)) => body.extend_from_slice(&b),
            _ => {}
        }
    }
    if !headers.is_empty() {
        p.headers = Some(headers);
    }
    Some((exchange, routing_key, p, Bytes::from(body)))
}

/// The server's stream entry codec (registered at start).
pub struct Amqp10Entries;

impl StreamEntryCodec for Amqp10Entries {
    fn encode(&self, m: &Message) -> Option<Vec<u8>> {
        let p = BasicProperties::decode(&m.properties_bytes()).ok()?;
        Some(encode_message(
            m.exchange().as_bytes(),
            // A stream's messages store their key (`Queue::enqueue` puts it back in).
            m.routing_key().unwrap_or_default().as_bytes(),
            &p,
            m.body(),
        ))
    }

    fn decode(&self, entry: Bytes) -> Option<(MessageRecord, &'static dyn PropertiesCodec)> {
        let (exchange, routing_key, p, body) = decode_message(entry)?;
        let record = MessageRecord {
            exchange,
            routing_key,
            properties: p.to_bytes(),
            body,
            expires_at_ms: 0,
        };
        Some((record, &AMQP_CODEC))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_survive_the_round_trip_through_amqp_1_0() {
        let mut headers = FieldTable::new();
        headers.insert("colour", FieldValue::LongString(Bytes::from_static(b"red")));
        headers.insert("n", FieldValue::I32(7));
        headers.insert(
            "x-stream-filter-value",
            FieldValue::LongString(Bytes::from_static(b"f")),
        );
        let p = BasicProperties {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(3),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            expiration: Some("60000".into()),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("order".into()),
            user_id: Some("guest".into()),
            app_id: Some("shop".into()),
            cluster_id: None,
        };
        let entry = encode_message(b"amq.topic", b"a.b", &p, b"hello");
        // An AMQP 1.0 message begins with a described section: a first byte of 0.
        assert_eq!(entry[0], 0x00);
        let (x, rk, q, body) = decode_message(Bytes::from(entry)).unwrap();
        assert_eq!(
            (&x[..], &rk[..], &body[..]),
            (&b"amq.topic"[..], &b"a.b"[..], &b"hello"[..])
        );
        let h = q.headers.clone().unwrap();
        assert_eq!(
            h.get("colour"),
            Some(&FieldValue::LongString(Bytes::from_static(b"red")))
        );
        assert_eq!(h.get("n"), Some(&FieldValue::I32(7)));
        assert!(h.get("x-stream-filter-value").is_some());
        assert_eq!(
            BasicProperties { headers: None, ..q },
            BasicProperties { headers: None, ..p }
        );
    }

    #[test]
    fn malformed_entries_are_refused_without_panicking() {
        for bad in [
            &b"\x00"[..],
            b"\x00\x53\x75\xb0\xff\xff\xff\xff",
            b"\x01",
            b"\x00\x53\x70\xd0\x00\x00\x00\x08\x00\x00\x10\x00",
        ] {
            assert!(decode_message(Bytes::copy_from_slice(bad)).is_none());
        }
        // Deep nesting is bounded.
        let mut deep = vec![0x00, 0x53, 0x74];
        for _ in 0..100 {
            deep.extend_from_slice(&[0xc0, 0x02, 0x01]);
        }
        assert!(decode_message(Bytes::from(deep)).is_none());
    }
}
