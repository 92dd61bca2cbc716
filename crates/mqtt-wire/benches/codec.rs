//! Micro-benchmarks of the MQTT codec on the hot path: PUBLISH decode and encode in 3.1.1 and
//! in 5.0 with properties, and SUBSCRIBE decode.
//!
//! Run with `cargo bench -p mqtt-wire --bench codec`; results and their reading are in
//! docs/performance.md.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_wire::{
    decode, encode, Packet, PayloadFormat, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, MAX_PACKET_SIZE,
};
use std::hint::black_box;

fn publish(version: ProtocolVersion) -> Packet {
    let topic = TopicName::new("sensors/building-7/floor-3/temperature").ok();
    let mut p = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(4711),
        topic,
        payload: Bytes::from(vec![b'x'; 64]),
        ..Publish::default()
    };
    if version == ProtocolVersion::V5 {
        let props = &mut p.properties;
        props.payload_format_indicator = Some(PayloadFormat::Utf8);
        props.message_expiry_interval = Some(3600);
        props.content_type = Some("application/json".into());
        props.response_topic = TopicName::new("replies/client-42").ok();
        props.correlation_data = Some(Bytes::from_static(b"req-000123"));
        props.user_properties = vec![
            ("tenant".into(), "acme".into()),
            ("trace-id".into(), "4bf92f3577b34da6".into()),
        ];
    }
    Packet::Publish(p)
}

fn subscribe() -> Packet {
    let filter = |f: &str| TopicFilter::new(f).ok();
    let filters = ["sensors/+/floor-3/#", "alerts/#", "devices/42/commands"]
        .into_iter()
        .filter_map(filter)
        .map(|f| (f, SubscriptionOptions::new(QoS::AtLeastOnce)))
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: 7,
        properties: Default::default(),
        filters,
    })
}

fn wire(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut buf) {
        panic!("cannot encode the bench packet: {e:?}");
    }
    buf.to_vec()
}

fn name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "v5_props",
        _ => "v3.1.1",
    }
}

fn decode_packets(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt/decode");
    group.throughput(Throughput::Elements(1));
    let cases = [
        (
            "publish_qos1_64B",
            publish(ProtocolVersion::V3_1_1),
            ProtocolVersion::V3_1_1,
        ),
        (
            "publish_qos1_64B",
            publish(ProtocolVersion::V5),
            ProtocolVersion::V5,
        ),
        ("subscribe_3_filters", subscribe(), ProtocolVersion::V3_1_1),
        ("subscribe_3_filters", subscribe(), ProtocolVersion::V5),
    ];
    for (what, packet, version) in cases {
        let bytes = wire(&packet, version);
        // The connection's read buffer is reused: refilled (one copy, as a socket read would)
        // and the packet taken off it, as the read loop does.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        group.bench_function(format!("{what}/{}", name(version)), |b| {
            b.iter(|| {
                buf.extend_from_slice(&bytes);
                let p = decode(&mut buf, Some(version), MAX_PACKET_SIZE);
                assert!(matches!(p, Ok(Some(_))));
                black_box(p)
            })
        });
    }
    group.finish();
}

fn encode_publish(c: &mut Criterion) {
    let mut group = c.benchmark_group("mqtt/encode");
    group.throughput(Throughput::Elements(1));
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let packet = publish(version);
        let mut out = BytesMut::with_capacity(64 * 1024);
        group.bench_function(format!("publish_qos1_64B/{}", name(version)), |b| {
            b.iter(|| {
                out.clear();
                let r = encode(black_box(&packet), version, &mut out);
                black_box(r.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode_packets, encode_publish);
criterion_main!(benches);
