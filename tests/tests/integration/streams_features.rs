//! Streams over AMQP 0-9-1, continued (tests/streams.rs has declaration, consumption and
//! refusals): MQTT publishes into a stream, `x-stream-filter`, retention, and the AMQP 1.0
//! encoding of entries.

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use pigeon_tests::lapin_support::{self as lp, table, text};
use pigeon_tests::streams_support::{
    confirm_channel, data_dir, declare_stream, new_stream, next, publish_confirmed, stream_consumer,
};
use pigeon_tests::{unique, within};

/// MQTT publishes (QoS 0: nobody waits for a confirm, the stream still gets committed) land in
/// a stream bound to `amq.topic`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_publishes_land_in_a_stream() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = lp::open_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
    let device = unique("dev");
    lp::bind(
        &ch,
        &s,
        "amq.topic",
        &format!("sensors.{device}.*"),
        FieldTable::default(),
    )
    .await;
    let port = broker.server().unwrap().mqtt_addr().unwrap().port();
    let mut mqtt = pigeon_tests::mqtt_support::Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("pub"),
        "127.0.0.1",
        port,
    ))
    .await;
    let topic = format!("sensors/{device}/temp");
    mqtt.publish(&topic, rumqttc::QoS::AtMostOnce, false, b"qos0")
        .await;
    mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"qos1")
        .await;
    let mut c = stream_consumer(&ch, &s, Some(text("first"))).await;
    assert_eq!(next(&mut c).await, ("qos0".into(), 0));
    assert_eq!(next(&mut c).await, ("qos1".into(), 1));
    conn.close(200, "bye".into()).await.unwrap();
}

async fn publish_filtered(ch: &Channel, queue: &str, body: &str, filter: Option<&str>) {
    let mut props = BasicProperties::default();
    if let Some(f) = filter {
        props = props.with_headers(table(&[("x-stream-filter-value", text(f))]));
    }
    let c = ch
        .basic_publish(
            "".into(),
            queue.into(),
            Default::default(),
            body.as_bytes(),
            props,
        )
        .await
        .unwrap();
    assert!(within("a confirm", c).await.unwrap().is_ack());
}

/// `x-stream-filter` skips chunks whose bloom filter rules the wanted values out; unfiltered
/// messages come only with `x-stream-match-unfiltered`. (Chunks hold one message each here, so
/// the filtering is exact for these values.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_consumer_gets_the_chunks_its_filter_values_may_be_in() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let (ch, s) = new_stream(&conn).await;
    publish_filtered(&ch, &s, "red-1", Some("red")).await;
    publish_filtered(&ch, &s, "blue-1", Some("blue")).await;
    publish_filtered(&ch, &s, "plain", None).await;
    publish_filtered(&ch, &s, "red-2", Some("red")).await;

    for (match_unfiltered, want) in [
        (false, vec!["red-1", "red-2"]),
        (true, vec!["red-1", "plain", "red-2"]),
    ] {
        let cch = lp::open_channel(&conn).await;
        cch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
        let args = table(&[
            ("x-stream-offset", text("first")),
            ("x-stream-filter", text("red")),
            (
                "x-stream-match-unfiltered",
                AMQPValue::Boolean(match_unfiltered),
            ),
        ]);
        let mut c = within(
            "basic.consume-ok",
            cch.basic_consume(
                s.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            ),
        )
        .await
        .unwrap();
        for w in &want {
            assert_eq!(next(&mut c).await.0, *w);
        }
        // The marker published next comes right after: nothing else was delivered meanwhile.
        publish_filtered(&ch, &s, "marker", Some("red")).await;
        assert_eq!(next(&mut c).await.0, "marker");
        cch.close(200, "bye".into()).await.unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
}

/// `x-max-length-bytes` with small segments: the oldest segments go, the last one stays, and a
/// consumer from `first` starts at the first offset still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_size_drops_the_oldest_segments() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    let args = table(&[
        ("x-queue-type", text("stream")),
        (
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(1000),
        ),
        ("x-max-length-bytes", AMQPValue::LongLongInt(3000)),
    ]);
    within(
        "queue.declare-ok",
        ch.queue_declare(s.as_str().into(), lp::durable(), args),
    )
    .await
    .unwrap();
    let body = "x".repeat(400);
    let bodies: Vec<String> = (0..30).map(|i| format!("{i:02}{body}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    publish_confirmed(&ch, &s, &refs).await;
    let cch = lp::open_channel(&conn).await;
    let mut c = stream_consumer(&cch, &s, Some(text("first"))).await;
    let (first_body, first) = next(&mut c).await;
    assert!(first > 0, "the oldest messages were dropped");
    assert!(first < 29, "the last segment is kept");
    assert_eq!(first_body, bodies[first as usize]);
    for i in first + 1..30 {
        assert_eq!(next(&mut c).await, (bodies[i as usize].clone(), i));
    }
    conn.close(200, "bye".into()).await.unwrap();
}

/// Entries are AMQP 1.0 messages, as RabbitMQ stores them, and a 0-9-1 consumer gets the
/// publisher's properties back (RabbitMQ's mc_amqpl mapping both ways).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_amqp_1_0_messages_and_properties_come_back() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let (ch, s) = new_stream(&conn).await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_priority(4)
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_reply_to("replies".into())
        .with_timestamp(1_700_000_000)
        .with_type("order".into())
        .with_app_id("shop".into())
        .with_headers(table(&[
            ("colour", text("red")),
            ("n", AMQPValue::LongInt(7)),
            ("x-custom", text("yes")),
        ]));
    let c = ch
        .basic_publish(
            "".into(),
            s.as_str().into(),
            Default::default(),
            b"{}",
            props,
        )
        .await
        .unwrap();
    assert!(within("a confirm", c).await.unwrap().is_ack());

    // The bytes on disk: one simple entry beginning with a described section (0x00 0x53 0x70,
    // the header).
    let q = broker
        .server()
        .unwrap()
        .broker()
        .vhost("/")
        .unwrap()
        .queue(&s)
        .unwrap();
    let log = q.stream_log().unwrap();
    let mut reader = log
        .reader(pigeon_store::OffsetSpec::First, Default::default())
        .unwrap();
    let chunk = reader.next_chunk().unwrap().unwrap();
    let data = chunk.read_data().unwrap();
    let entries = pigeon_store::stream::parse_entries(&data).unwrap();
    let pigeon_store::stream::Entry::Simple(entry) = entries[0] else {
        panic!("a simple entry");
    };
    assert_eq!(&entry[..3], &[0x00, 0x53, 0x70]);

    let cch = lp::open_channel(&conn).await;
    let mut consumer = stream_consumer(&cch, &s, Some(text("first"))).await;
    let d = lp::next_delivery(&mut consumer).await;
    let p = &d.properties;
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(*p.delivery_mode(), Some(2));
    assert_eq!(*p.priority(), Some(4));
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), "m-1");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "c-1");
    assert_eq!(p.reply_to().as_ref().unwrap().as_str(), "replies");
    assert_eq!(*p.timestamp(), Some(1_700_000_000));
    assert_eq!(p.kind().as_ref().unwrap().as_str(), "order");
    assert_eq!(p.app_id().as_ref().unwrap().as_str(), "shop");
    let h = p.headers().as_ref().unwrap().inner();
    assert_eq!(h.get("colour"), Some(&text("red")));
    assert_eq!(h.get("n"), Some(&AMQPValue::LongInt(7)));
    assert_eq!(h.get("x-custom"), Some(&text("yes")));
    assert_eq!(h.get("x-stream-offset"), Some(&AMQPValue::LongLongInt(0)));
    assert_eq!(lp::body(&d), "{}");
    conn.close(200, "bye".into()).await.unwrap();
}

/// A figure, not a check (run with `--ignored --nocapture`; a debug build, so compare the two
/// lines rather than read them as absolute figures): 20,000 messages of 1 KiB published with
/// confirms (fsync on) into a stream and into a durable classic queue (persistent messages),
/// then read by one consumer with a prefetch of 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput_figure() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    for kind in ["stream", "classic"] {
        let s = unique(kind);
        within(
            "queue.declare-ok",
            ch.queue_declare(
                s.as_str().into(),
                lp::durable(),
                table(&[("x-queue-type", text(kind))]),
            ),
        )
        .await
        .unwrap();
        let body = vec![b'x'; 1024];
        let n = 20_000;
        let started = std::time::Instant::now();
        let mut confirms = Vec::with_capacity(n);
        for _ in 0..n {
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    s.as_str().into(),
                    Default::default(),
                    &body,
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(c.await.unwrap().is_ack());
        }
        let published = started.elapsed();
        let cch = lp::open_channel(&conn).await;
        cch.basic_qos(500, BasicQosOptions::default())
            .await
            .unwrap();
        let args = table(&[("x-stream-offset", text("first"))]);
        let args = if kind == "stream" {
            args
        } else {
            FieldTable::default()
        };
        let mut c = cch
            .basic_consume(
                s.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await
            .unwrap();
        let started = std::time::Instant::now();
        for _ in 0..n {
            let d = lp::next_delivery(&mut c).await;
            d.ack(lapin::options::BasicAckOptions::default())
                .await
                .unwrap();
        }
        let consumed = started.elapsed();
        println!(
            "{kind}: published {n} x 1 KiB with confirms in {published:?} ({:.0}/s), consumed in {consumed:?} ({:.0}/s)",
            n as f64 / published.as_secs_f64(),
            n as f64 / consumed.as_secs_f64()
        );
    }
    conn.close(200, "bye".into()).await.unwrap();
}
