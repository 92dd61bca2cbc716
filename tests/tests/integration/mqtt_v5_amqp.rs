//! MQTT 5.0 features (topic aliases, maximum packet size, message expiry, publish properties)
//! and the one namespace MQTT shares with AMQP: an MQTT topic `a/b/c` is the routing key
//! `a.b.c` on `amq.topic`, QoS is delivery mode, and MQTT 5 properties are their AMQP twins.

use bytes::Bytes;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use mqtt_wire::{Packet, ProtocolVersion, ReasonCode};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{connect_packet, Mqtt5, MqttBroker};
use pigeon_tests::unique;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::QoS as Q4;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_alias_set_by_the_client_stands_for_the_topic() {
    let broker = MqttBroker::start().await;
    let topic = unique("alias/t");
    let mut sub = broker.connect5(&unique("sub")).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    let alias = |a| PublishProperties {
        topic_alias: Some(a),
        ..Default::default()
    };
    publisher
        .publish_with(&topic, Q5::AtLeastOnce, false, b"sets", alias(1))
        .await;
    publisher
        .publish_with("", Q5::AtLeastOnce, false, b"uses", alias(1))
        .await;
    for expected in ["sets", "uses"] {
        let p = sub.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (topic.as_bytes(), expected.as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_out_of_range_topic_alias_ends_the_connection() {
    let broker = MqttBroker::start().await;
    // Raw bytes: our encoder refuses to write alias 0. PUBLISH QoS 0, payload "x", and one
    // property, Topic Alias (0x23).
    let cases: [(&str, &[u8], ReasonCode); 3] = [
        (
            "never set",
            b"\x30\x07\x00\x00\x03\x23\x00\x01x",
            ReasonCode::ProtocolError,
        ),
        (
            "0",
            b"\x30\x08\x00\x01x\x03\x23\x00\x00x",
            ReasonCode::TopicAliasInvalid,
        ),
        (
            "65 > maximum 64",
            b"\x30\x08\x00\x01x\x03\x23\x00\x41x",
            ReasonCode::TopicAliasInvalid,
        ),
    ];
    for (case, bytes, reason) in cases {
        let (mut raw, ack) = broker
            .raw(connect_packet(ProtocolVersion::V5, &unique("a")))
            .await;
        assert_eq!(ack.properties.topic_alias_maximum, Some(64));
        raw.send_bytes(bytes).await;
        let sent = raw.until_closed().await;
        assert!(
            matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == reason),
            "alias {case}: expected DISCONNECT {reason:?}, got {sent:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_clients_maximum_packet_size_is_skipped() {
    let broker = MqttBroker::start().await;
    let topic = unique("max/t");
    // Receive maximum 1: a skipped QoS 1 message must not hold the only in-flight slot, and
    // topic aliases on: a skipped message must not have assigned one the client never saw.
    let mut o = broker.v5(&unique("small"));
    o.set_max_packet_size(Some(256))
        .set_receive_maximum(Some(1))
        .set_topic_alias_max(Some(10));
    let mut sub = Mqtt5::connect(o).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    for qos in [Q4::AtMostOnce, Q4::AtLeastOnce] {
        publisher.publish(&topic, qos, false, &[b'x'; 1000]).await;
        publisher.publish(&topic, qos, false, b"small").await;
        let p = sub.next_publish().await;
        assert_eq!(&p.payload[..], b"small", "{qos:?}");
        assert_eq!(&p.topic[..], topic.as_bytes(), "{qos:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_is_dropped_and_the_rest_carry_their_remaining_lifetime() {
    let broker = MqttBroker::start().await;
    let topic = unique("expiry/t");
    let mut o = broker.v5(&unique("away"));
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let mut sub = Mqtt5::connect(o.clone()).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    sub.disconnect().await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    let expiry = |s| PublishProperties {
        message_expiry_interval: Some(s),
        ..Default::default()
    };
    publisher
        .publish_with(&topic, Q5::AtLeastOnce, false, b"short", expiry(1))
        .await;
    publisher
        .publish_with(&topic, Q5::AtLeastOnce, false, b"long", expiry(60))
        .await;
    // A retained message expires too [MQTT-3.3.2-5].
    let retained = unique("expiry/retained");
    publisher
        .publish_with(&retained, Q5::AtLeastOnce, true, b"stale", expiry(1))
        .await;
    // Time has to pass for "short" to expire while the subscriber is away.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = broker.connect5(&unique("late")).await;
    late.subscribe(&retained, Q5::AtLeastOnce).await;
    publisher
        .publish(&retained, Q5::AtLeastOnce, false, b"marker")
        .await;
    assert_eq!(
        late.next_text().await,
        "marker",
        "no expired retained message"
    );

    let mut sub = Mqtt5::connect(o).await;
    assert!(sub.session_present());
    let p = sub.next_publish().await;
    assert_eq!(
        &p.payload[..],
        b"long",
        "the expired message is not delivered"
    );
    let left = p.properties.unwrap().message_expiry_interval.unwrap();
    assert!((58..=60).contains(&left), "remaining lifetime {left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_properties_are_forwarded_intact_and_in_order() {
    let broker = MqttBroker::start().await;
    let topic = unique("props/t");
    let mut sub = broker.connect5(&unique("sub")).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    let sent = PublishProperties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/to".into()),
        correlation_data: Some(Bytes::from_static(&[0, 0x9f, 0xff, b'r'])),
        user_properties: vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("a".into(), "3".into()),
        ],
        ..Default::default()
    };
    let mut publisher = broker.connect5(&unique("pub")).await;
    publisher
        .publish_with(&topic, Q5::AtLeastOnce, false, b"{}", sent.clone())
        .await;
    let got = sub.next_publish().await.properties.unwrap();
    assert_eq!(got.payload_format_indicator, sent.payload_format_indicator);
    assert_eq!(got.content_type, sent.content_type);
    assert_eq!(got.response_topic, sent.response_topic);
    assert_eq!(got.correlation_data, sent.correlation_data);
    assert_eq!(
        got.user_properties, sent.user_properties,
        "[MQTT-3.3.2-18]: same order"
    );
}

/// An exclusive AMQP queue bound to `amq.topic` with `pattern`, and a consumer on it.
async fn amqp_queue(
    broker: &MqttBroker,
    pattern: &str,
) -> (lapin::Connection, lapin::Channel, lapin::Consumer) {
    let conn = lp::connect_url(&broker.amqp_url()).await.unwrap();
    let channel = lp::open_channel(&conn).await;
    let queue = unique("q");
    lp::declare(&channel, &queue, QueueDeclareOptions::exclusive()).await;
    lp::bind(
        &channel,
        &queue,
        "amq.topic",
        pattern,
        FieldTable::default(),
    )
    .await;
    let consumer = lp::consume(&channel, &queue, BasicConsumeOptions::default()).await;
    (conn, channel, consumer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publish_reaches_an_amqp_queue_bound_to_amq_topic() {
    let broker = MqttBroker::start().await;
    let (_conn, _channel, mut consumer) = amqp_queue(&broker, "sensor.*.data").await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish("sensor/t1/data", Q4::AtLeastOnce, false, b"21.5")
        .await;
    publisher
        .publish("sensor/t2/data", Q4::AtMostOnce, false, b"19.0")
        .await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        ("amq.topic", "sensor.t1.data")
    );
    assert_eq!(lp::body(&d), "21.5");
    assert_eq!(
        *d.properties.delivery_mode(),
        Some(2),
        "QoS 1 is persistent"
    );
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(
        (d.routing_key.as_str(), lp::body(&d).as_str()),
        ("sensor.t2.data", "19.0")
    );
    assert_ne!(*d.properties.delivery_mode(), Some(2), "QoS 0 is transient");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_to_amq_topic_reaches_an_mqtt_subscriber() {
    let broker = MqttBroker::start().await;
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe("control/+/command", Q4::AtLeastOnce).await;
    let conn = lp::connect_url(&broker.amqp_url()).await.unwrap();
    let channel = lp::open_channel(&conn).await;
    let persistent = BasicProperties::default().with_delivery_mode(2);
    lp::publish_with(
        &channel,
        "amq.topic",
        "control.t1.command",
        b"on",
        persistent,
    )
    .await;
    lp::publish(&channel, "amq.topic", "control.t2.command", b"off").await;
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("control/t1/command", &b"on"[..], Q4::AtLeastOnce)
    );
    let p = sub.next_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("control/t2/command", &b"off"[..], Q4::AtMostOnce)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt5_properties_arrive_as_amqp_properties() {
    let broker = MqttBroker::start().await;
    let (_conn, _channel, mut consumer) = amqp_queue(&broker, "rpc.request").await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    let props = PublishProperties {
        content_type: Some("text/plain".into()),
        correlation_data: Some(Bytes::from_static(b"req-42")),
        response_topic: Some("reply/to".into()),
        user_properties: vec![
            ("tenant".into(), "blue".into()),
            ("trace".into(), "t-1".into()),
        ],
        ..Default::default()
    };
    publisher
        .publish_with("rpc/request", Q5::AtLeastOnce, false, b"ping", props)
        .await;
    let d = lp::next_delivery(&mut consumer).await;
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("req-42")
    );
    assert_eq!(p.reply_to().as_ref().map(|s| s.as_str()), Some("reply.to"));
    let headers = p.headers().as_ref().expect("user properties as headers");
    let text = |k: &str| match headers.inner().get(k) {
        Some(AMQPValue::LongString(s)) => s.to_string(),
        other => panic!("header {k}: {other:?}"),
    };
    assert_eq!(
        (text("tenant"), text("trace")),
        ("blue".to_string(), "t-1".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_properties_arrive_as_mqtt5_properties() {
    let broker = MqttBroker::start().await;
    let mut sub = broker.connect5(&unique("sub")).await;
    sub.subscribe("rpc/reply", Q5::AtLeastOnce).await;
    let conn = lp::connect_url(&broker.amqp_url()).await.unwrap();
    let channel = lp::open_channel(&conn).await;
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("blue".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("req-42".into())
        .with_reply_to("reply.to".into())
        .with_expiration("60000".into())
        .with_headers(headers);
    lp::publish_with(&channel, "amq.topic", "rpc.reply", b"{}", props).await;
    let p = sub.next_publish().await.properties.expect("properties");
    let left = p
        .message_expiry_interval
        .expect("expiration as message expiry");
    assert!((59..=60).contains(&left), "expiry {left}");
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"req-42"[..]));
    assert_eq!(p.response_topic.as_deref(), Some("reply/to"));
    let mut user = p.user_properties.clone();
    user.sort();
    assert_eq!(
        user,
        vec![
            ("attempt".to_string(), "3".to_string()),
            ("tenant".to_string(), "blue".to_string())
        ]
    );
}
