//! Tests of `packed.rs`: every part of a message reads back as written, and its size.

use super::super::OpaqueProperties;
use super::*;
use std::mem::size_of;

static CODEC: OpaqueProperties = OpaqueProperties;

struct Ttl;
impl PropertiesCodec for Ttl {
    fn view(&self, _: &Bytes) -> PropertiesView {
        PropertiesView::default()
    }
    fn meta(&self, _: &Bytes) -> MessageMeta {
        MessageMeta {
            expiration_ms: Some(10_000_000_000),
            priority: Some(7),
            persistent: true,
        }
    }
    fn dead_lettered(&self, raw: &Bytes, _: &super::super::Death) -> Bytes {
        raw.clone()
    }
}
static TTL: Ttl = Ttl;

#[test]
fn parts_read_back_as_written() {
    for body_len in [0, 16, INLINE_BODY_MAX, INLINE_BODY_MAX + 1, 100_000] {
        for key_len in [0, 1, 127, 128, 300, 70_000] {
            let body = Bytes::from(vec![b'b'; body_len]);
            let key = "k".repeat(key_len);
            let props = Bytes::from(vec![9u8; key_len / 2]);
            let m = Message::new(
                "amq.topic",
                &key,
                Properties::new(props.clone(), &CODEC),
                body.clone(),
                42,
            );
            assert_eq!(m.exchange(), "amq.topic");
            assert_eq!(m.routing_key(), Some(&*key));
            assert_eq!(m.routing_key_in("q"), key);
            assert_eq!(m.properties_raw(), &props[..]);
            assert_eq!(m.body(), &body[..]);
            assert_eq!(m.body_bytes(), body);
            assert_eq!(m.origin(), 42);
            assert_eq!(m.meta(), MessageMeta::default());
            assert!(m.age().is_none());
        }
    }
}

/// A codec that gives every message the same meta.
struct Fixed(MessageMeta);
impl PropertiesCodec for Fixed {
    fn view(&self, _: &Bytes) -> PropertiesView {
        PropertiesView::default()
    }
    fn meta(&self, _: &Bytes) -> MessageMeta {
        self.0
    }
    fn dead_lettered(&self, raw: &Bytes, _: &super::super::Death) -> Bytes {
        raw.clone()
    }
}
static PRIORITY_ONLY: Fixed = Fixed(MessageMeta {
    expiration_ms: None,
    priority: Some(3),
    persistent: false,
});
static TTL_ONLY: Fixed = Fixed(MessageMeta {
    expiration_ms: Some(1500),
    priority: None,
    persistent: true,
});

#[test]
fn ttl_priority_and_origin_read_back_in_every_combination() {
    let codecs: [&'static dyn PropertiesCodec; 4] = [&CODEC, &PRIORITY_ONLY, &TTL_ONLY, &TTL];
    for codec in codecs {
        for origin in [0, 1, 70_000, 1 << 40, ORIGIN_MAX, u64::MAX] {
            let props = Properties::new(Bytes::from_static(b"pp"), codec);
            let m = Message::new(
                "amq.topic",
                "a.b",
                props,
                Bytes::from_static(b"body"),
                origin,
            );
            assert!(m.flag(STANDARD_EXCHANGE));
            let mut expected = codec.meta(&Bytes::new());
            // Saturated at RabbitMQ's largest TTL.
            expected.expiration_ms = expected.expiration_ms.map(|ms| ms.min(u32::MAX.into()));
            assert_eq!(m.meta(), expected);
            assert_eq!(m.age().is_some(), expected.expiration_ms.is_some());
            assert_eq!(m.origin(), origin.min(ORIGIN_MAX));
            assert_eq!((m.exchange(), m.routing_key()), ("amq.topic", Some("a.b")));
            assert_eq!((m.properties_raw(), m.body()), (&b"pp"[..], &b"body"[..]));
        }
    }
}

#[test]
fn standard_exchanges_are_stored_as_an_index_and_others_by_name() {
    for exchange in STANDARD_EXCHANGES
        .iter()
        .chain(&["", "amq.topicx", "amq", "orders"])
    {
        let props = Properties::new(Bytes::from_static(b"p"), &CODEC);
        let m = Message::new(exchange, "k", props, Bytes::from_static(b"b"), 1);
        assert_eq!(m.exchange(), *exchange);
        assert_eq!(m.routing_key(), Some("k"));
        assert_eq!((m.properties_raw(), m.body()), (&b"p"[..], &b"b"[..]));
        let standard = STANDARD_EXCHANGES.contains(exchange);
        assert_eq!(m.flag(STANDARD_EXCHANGE), standard);
        // The exchange (index, or length and name), then key, properties and body.
        let exchange_len = if standard { 1 } else { 1 + exchange.len() };
        assert_eq!(m.0.slice.len(), exchange_len + 2 + 2 + 1);
        // Put back with a key, the exchange is stored the same way.
        let named = Message::to_named_queue(Properties::new(Bytes::new(), &CODEC), Bytes::new(), 1);
        assert_eq!(named.with_routing_key("q").exchange(), "");
    }
}

#[test]
fn a_large_body_is_shared_not_copied() {
    let body = Bytes::from(vec![1u8; INLINE_BODY_MAX + 1]);
    let m = Message::new(
        "",
        "k",
        Properties::new(Bytes::new(), &CODEC),
        body.clone(),
        0,
    );
    assert_eq!(m.body().as_ptr(), body.as_ptr());
    assert_eq!(m.body_bytes().as_ptr(), body.as_ptr());
}

#[test]
fn meta_and_receive_time_are_kept() {
    let m = Message::new(
        "x",
        "k",
        Properties::new(Bytes::from_static(b"p"), &TTL),
        Bytes::new(),
        1,
    );
    let meta = m.meta();
    // Saturated at RabbitMQ's largest TTL.
    assert_eq!(meta.expiration_ms, Some(u64::from(u32::MAX)));
    assert_eq!(meta.priority, Some(7));
    assert!(meta.persistent);
    assert!(m.age().is_some_and(|a| a < Duration::from_secs(3600)));
    assert!(std::ptr::eq(
        m.codec() as *const dyn PropertiesCodec as *const u8,
        &TTL as *const Ttl as *const u8
    ));
    assert_eq!(m.routing_key(), Some("k"));
    assert_eq!(m.properties_raw(), b"p");
}

#[test]
fn a_message_to_a_named_queue_takes_its_key_from_the_queue() {
    for body_len in [0, 16, INLINE_BODY_MAX + 1] {
        for codec in [&CODEC as &'static dyn PropertiesCodec, &TTL] {
            let body = Bytes::from(vec![b'b'; body_len]);
            let props = Properties::new(Bytes::from_static(b"props"), codec);
            let m = Message::to_named_queue(props, body.clone(), 9);
            assert_eq!(m.routing_key(), None);
            assert_eq!(m.routing_key_in("orders"), "orders");
            assert_eq!((m.exchange(), m.properties_raw()), ("", &b"props"[..]));
            assert_eq!((m.body(), m.origin()), (&body[..], 9));
            // With its key put back (a stream's entry), it is the same message otherwise.
            let keyed = m.with_routing_key("orders");
            assert_eq!(keyed.routing_key(), Some("orders"));
            assert_eq!(keyed.routing_key_in("elsewhere"), "orders");
            assert_eq!(
                (keyed.exchange(), keyed.properties_raw()),
                ("", &b"props"[..])
            );
            assert_eq!((keyed.body(), keyed.origin()), (&body[..], 9));
            assert_eq!(keyed.meta(), m.meta());
            assert_eq!(keyed.age().is_some(), m.age().is_some());
            assert!(Message::ptr_eq(&keyed.with_routing_key("x"), &keyed));
        }
    }
}

/// What a message costs in memory is mostly this allocation (docs/performance.md, "Memory
/// per message"): keep it from growing unnoticed.
#[test]
fn message_structs_stay_small() {
    // The bench's message: routing key `pigeon-bench-<run>-0` (32 bytes), 3 bytes of
    // properties, a 16-byte body, the default exchange.
    let props = || Properties::new(Bytes::from_static(&[0x10, 0, 1]), &CODEC);
    let body = Bytes::from_static(&[0; 16]);
    let m = Message::new(
        "",
        "pigeon-bench-0123456789abcdefg-0",
        props(),
        body.clone(),
        7,
    );
    // As the server makes it: the key is the queue's name.
    let named = Message::to_named_queue(props(), body, 7);
    eprintln!(
        "Header {} Message {} allocation {} (key not stored: {}) QueuedMessage {}",
        size_of::<Header>(),
        size_of::<Message>(),
        m.allocation_size(),
        named.allocation_size(),
        size_of::<crate::queue::QueuedMessage>(),
    );
    assert_eq!(m.routing_key().map(str::len), Some(32));
    assert_eq!(size_of::<Header>(), 16);
    assert_eq!(size_of::<Message>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Message>>(), size_of::<usize>());
    // 8 + 16 + 8 + (3 length bytes + 32 + 3 + 16) = 86, in jemalloc's 96-byte class.
    assert!(m.allocation_size() <= 96, "{}", m.allocation_size());
    // 8 + 16 + 8 + (2 length bytes + 3 + 16) = 53, in the 64-byte class.
    assert!(named.allocation_size() <= 56, "{}", named.allocation_size());
    assert!(size_of::<crate::queue::QueuedMessage>() <= 32);
}
