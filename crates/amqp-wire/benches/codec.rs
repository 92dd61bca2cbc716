//! Micro-benchmarks of the AMQP codec on the hot path: decoding what a publisher sends
//! (basic.publish + content header + body), encoding what a consumer receives (basic.deliver +
//! content header + body), and decoding a field table.
//!
//! Run with `cargo bench -p amqp-wire --bench codec`; results and their reading are in
//! docs/performance.md.

use amqp_wire::{
    decode_frame, encode_body_frames, encode_header_frame, encode_method_frame, BasicDeliver,
    BasicProperties, BasicPublish, FieldTable, FieldValue, Frame, Method,
};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

const FRAME_MAX: u32 = 131_072;

fn properties() -> BasicProperties {
    BasicProperties {
        content_type: Some("application/octet-stream".into()),
        delivery_mode: Some(1),
        ..Default::default()
    }
}

/// The three frames of one publish, as a client writes them.
fn publish_frames(body: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let publish = BasicPublish {
        exchange: "".into(),
        routing_key: "bench-queue".into(),
        ..Default::default()
    };
    encode_method_frame(1, &publish.into(), &mut buf);
    encode_header_frame(1, 60, body.len() as u64, &properties().to_bytes(), &mut buf);
    encode_body_frames(1, body, FRAME_MAX, &mut buf);
    buf.to_vec()
}

fn decode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("amqp/decode_publish");
    for size in [16usize, 1024] {
        let wire = publish_frames(&vec![b'x'; size]);
        group.throughput(Throughput::Elements(1));
        // The connection's read buffer is reused: it is refilled (one copy, as a socket read
        // would) and three frames are taken off it, as the read loop does.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                buf.extend_from_slice(&wire);
                let mut frames = 0;
                while let Ok(Some(frame)) = decode_frame(&mut buf, FRAME_MAX) {
                    black_box(&frame);
                    frames += 1;
                }
                assert_eq!(frames, 3);
            })
        });
    }
    group.finish();
}

fn encode_deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("amqp/encode_deliver");
    let raw = properties().to_bytes();
    let exchange = Bytes::from_static(b"");
    let routing_key = Bytes::from_static(b"bench-queue");
    let tag: amqp_wire::ShortString = "amq.ctag-0123456789abcdef".into();
    for size in [16usize, 1024] {
        let body = Bytes::from(vec![b'x'; size]);
        group.throughput(Throughput::Elements(1));
        let mut out = BytesMut::with_capacity(64 * 1024);
        let mut delivery_tag = 0u64;
        // What the consumer sink does per message: build the method from the message's shared
        // exchange and routing key, then encode the three frames into the outbound buffer.
        group.bench_function(format!("{size}B"), |b| {
            b.iter(|| {
                out.clear();
                delivery_tag += 1;
                let method = Method::BasicDeliver(BasicDeliver {
                    consumer_tag: tag.clone(),
                    delivery_tag,
                    redelivered: false,
                    exchange: exchange.clone().try_into().unwrap_or_default(),
                    routing_key: routing_key.clone().try_into().unwrap_or_default(),
                });
                encode_method_frame(1, &method, &mut out);
                encode_header_frame(1, 60, body.len() as u64, &raw, &mut out);
                encode_body_frames(1, &body, FRAME_MAX, &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

/// A table like the headers of a dead-lettered message: strings, integers, a timestamp and a
/// nested `x-death` array of tables.
fn headers_table() -> FieldTable {
    let mut death = FieldTable::new();
    death.insert("count", FieldValue::I64(1));
    death.insert("reason", FieldValue::LongString("expired".into()));
    death.insert("queue", FieldValue::LongString("orders".into()));
    death.insert("time", FieldValue::Timestamp(1_700_000_000));
    death.insert("exchange", FieldValue::LongString("".into()));
    death.insert(
        "routing-keys",
        FieldValue::Array(vec![FieldValue::LongString("orders".into())]),
    );
    let mut t = FieldTable::new();
    t.insert("x-death", FieldValue::Array(vec![FieldValue::Table(death)]));
    t.insert(
        "x-first-death-queue",
        FieldValue::LongString("orders".into()),
    );
    t.insert(
        "x-first-death-reason",
        FieldValue::LongString("expired".into()),
    );
    t.insert("tenant", FieldValue::LongString("acme".into()));
    t.insert("attempt", FieldValue::I32(3));
    t.insert("priority-hint", FieldValue::U8(5));
    t
}

fn decode_table(c: &mut Criterion) {
    let mut encoded = BytesMut::new();
    headers_table().encode(&mut encoded);
    let encoded = encoded.freeze();
    assert_eq!(
        FieldTable::decode(encoded.clone()).ok(),
        Some(headers_table())
    );
    let mut group = c.benchmark_group("amqp/field_table");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_6_entries_nested", |b| {
        b.iter_batched(
            || encoded.clone(),
            |bytes| black_box(FieldTable::decode(bytes)),
            BatchSize::SmallInput,
        )
    });
    let table = headers_table();
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("encode_6_entries_nested", |b| {
        b.iter(|| {
            out.clear();
            table.encode(&mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn decode_ack(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    encode_method_frame(
        1,
        &amqp_wire::BasicAck {
            delivery_tag: 100,
            multiple: true,
        }
        .into(),
        &mut wire,
    );
    let wire = wire.to_vec();
    let mut buf = BytesMut::with_capacity(4096);
    c.bench_function("amqp/decode_ack", |b| {
        b.iter(|| {
            buf.extend_from_slice(&wire);
            let frame = decode_frame(&mut buf, FRAME_MAX);
            assert!(matches!(frame, Ok(Some(Frame::Method { .. }))));
            black_box(frame)
        })
    });
}

criterion_group!(
    benches,
    decode_publish,
    encode_deliver,
    decode_table,
    decode_ack
);
criterion_main!(benches);
