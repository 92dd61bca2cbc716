//! Streams over AMQP 0-9-1 (`x-queue-type: stream`), as RabbitMQ's: declaration and its
//! refusals, publishing with confirms, consuming from an offset with `x-stream-offset` on every
//! delivery, acks that only return credit, restart, and what RabbitMQ refuses.

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use pigeon_tests::lapin_support::{self as lp, table, text};
use pigeon_tests::reply::{NOT_IMPLEMENTED, PRECONDITION_FAILED};
use pigeon_tests::{unique, within, DataDir};

fn data_dir() -> DataDir {
    DataDir::with(|c| c.fsync = true)
}

fn stream_args() -> FieldTable {
    table(&[("x-queue-type", text("stream"))])
}

async fn declare_stream(ch: &Channel, name: &str) {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), lp::durable(), stream_args()),
    )
    .await
    .unwrap();
}

/// Publishes `bodies` on a confirm channel and waits for every confirm.
async fn publish_confirmed(ch: &Channel, queue: &str, bodies: &[&str]) {
    let mut confirms = Vec::new();
    for b in bodies {
        confirms.push(
            ch.basic_publish(
                "".into(),
                queue.into(),
                Default::default(),
                b.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(within("a confirm", c).await.unwrap().is_ack());
    }
}

async fn stream_consumer(ch: &Channel, queue: &str, offset: Option<AMQPValue>) -> Consumer {
    within("basic.qos-ok", ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .unwrap();
    let args = match offset {
        Some(v) => table(&[("x-stream-offset", v)]),
        None => FieldTable::default(),
    };
    within(
        "basic.consume-ok",
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        ),
    )
    .await
    .unwrap()
}

/// The next delivery's body and `x-stream-offset` header; acked.
async fn next(consumer: &mut Consumer) -> (String, i64) {
    let d = lp::next_delivery(consumer).await;
    let headers = d.properties.headers().clone().expect("headers");
    let offset = match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(o)) => *o,
        other => panic!("x-stream-offset is a long, got {other:?}"),
    };
    d.ack(BasicAckOptions::default()).await.unwrap();
    (lp::body(&d), offset)
}

async fn confirm_channel(conn: &Connection) -> Channel {
    lp::confirm_channel(conn).await
}

fn reply_text(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_string(),
        other => panic!("expected a close from the server, got {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(r: lapin::Result<T>, code: u16, text: &str) {
    let error = r.expect_err("the server should refuse");
    assert_eq!(lp::reply_code(&error), Some(code), "{error:?}");
    assert_eq!(reply_text(&error), text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_read_from_first_next_and_an_offset_and_acks_keep_the_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
    publish_confirmed(&ch, &s, &["a", "b", "c"]).await;
    // queue.declare-ok counts the messages the stream holds (RabbitMQ: committed offsets).
    assert_eq!(lp::message_count(&ch, &s).await, 3);

    // From the start, twice: acking does not remove anything.
    for _ in 0..2 {
        let ch = lp::open_channel(&conn).await;
        let mut c = stream_consumer(&ch, &s, Some(text("first"))).await;
        assert_eq!(next(&mut c).await, ("a".into(), 0));
        assert_eq!(next(&mut c).await, ("b".into(), 1));
        assert_eq!(next(&mut c).await, ("c".into(), 2));
        ch.close(200, "bye".into()).await.unwrap();
    }
    // A numeric offset, inside the stream.
    let ch2 = lp::open_channel(&conn).await;
    let mut from1 = stream_consumer(&ch2, &s, Some(AMQPValue::LongLongInt(1))).await;
    assert_eq!(next(&mut from1).await, ("b".into(), 1));
    assert_eq!(next(&mut from1).await, ("c".into(), 2));
    // `next` (the default) and `last` wait at the tail: new messages reach them.
    let ch3 = lp::open_channel(&conn).await;
    let mut tail = stream_consumer(&ch3, &s, None).await;
    let ch4 = lp::open_channel(&conn).await;
    let mut last = stream_consumer(&ch4, &s, Some(text("last"))).await;
    assert_eq!(next(&mut last).await, ("c".into(), 2));
    publish_confirmed(&ch, &s, &["d"]).await;
    assert_eq!(next(&mut tail).await, ("d".into(), 3));
    assert_eq!(next(&mut last).await, ("d".into(), 3));
    assert_eq!(next(&mut from1).await, ("d".into(), 3));
    // An interval (`1h`: everything published in the last hour) and an AMQP timestamp.
    let ch5 = lp::open_channel(&conn).await;
    let mut hour = stream_consumer(&ch5, &s, Some(text("1h"))).await;
    assert_eq!(next(&mut hour).await, ("a".into(), 0));
    let ch6 = lp::open_channel(&conn).await;
    let mut ts = stream_consumer(&ch6, &s, Some(AMQPValue::Timestamp(0))).await;
    assert_eq!(next(&mut ts).await, ("a".into(), 0));
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefetch_bounds_unacked_deliveries_and_an_ack_returns_credit() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
    publish_confirmed(&ch, &s, &["1", "2", "3"]).await;
    let cch = lp::open_channel(&conn).await;
    within("basic.qos-ok", cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .unwrap();
    let args = table(&[("x-stream-offset", text("first"))]);
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
    let first = lp::next_delivery(&mut c).await;
    assert_eq!(lp::body(&first), "1");
    // Nothing more comes before the ack: the prefetch is 1. A message published now shows the
    // broker had a chance to deliver (it arrives after the ack, in order).
    first.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(next(&mut c).await.0, "2");
    assert_eq!(next(&mut c).await.0, "3");
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_its_messages_survive_a_restart_and_delete_removes_its_files() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let s = unique("stream");
    {
        let conn = lp::connect(&broker).await;
        let ch = confirm_channel(&conn).await;
        declare_stream(&ch, &s).await;
        publish_confirmed(&ch, &s, &["kept-1", "kept-2"]).await;
        conn.close(200, "bye".into()).await.unwrap();
    }
    let broker = data.restart(broker).await;
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    // Redeclaring is fine; publishing continues at the next offset.
    declare_stream(&ch, &s).await;
    publish_confirmed(&ch, &s, &["new"]).await;
    let cch = lp::open_channel(&conn).await;
    let mut c = stream_consumer(&cch, &s, Some(text("first"))).await;
    assert_eq!(next(&mut c).await, ("kept-1".into(), 0));
    assert_eq!(next(&mut c).await, ("kept-2".into(), 1));
    assert_eq!(next(&mut c).await, ("new".into(), 2));
    cch.close(200, "bye".into()).await.unwrap();

    let streams = data.path().join("streams");
    let before = std::fs::read_dir(&streams).unwrap().count();
    assert_eq!(before, 1);
    // if-empty is ignored for a stream, as RabbitMQ does.
    within(
        "queue.delete-ok",
        ch.queue_delete(
            s.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        ),
    )
    .await
    .unwrap();
    assert_eq!(std::fs::read_dir(&streams).unwrap().count(), 0);
    assert!(!lp::queue_exists(&conn, &s).await);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_rabbitmq_refuses_are_refused_with_its_texts() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let cases: [(QueueDeclareOptions, FieldTable, &str); 5] = [
        (
            QueueDeclareOptions::default(),
            stream_args(),
            "invalid property 'non-durable' for queue '{}' in vhost '/'",
        ),
        (
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            stream_args(),
            "invalid property 'exclusive-owner' for queue '{}' in vhost '/'",
        ),
        (
            QueueDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            stream_args(),
            "invalid property 'auto-delete' for queue '{}' in vhost '/'",
        ),
        (
            lp::durable(),
            table(&[
                ("x-queue-type", text("stream")),
                ("x-max-priority", AMQPValue::LongInt(5)),
            ]),
            "invalid arg 'x-max-priority' for queue '{}' in vhost '/' of queue type rabbit_stream_queue",
        ),
        (
            lp::durable(),
            table(&[
                ("x-queue-type", text("stream")),
                ("x-stream-max-segment-size-bytes", AMQPValue::LongLongInt(4_000_000_000)),
            ]),
            "Exceeded max value for x-stream-max-segment-size-bytes",
        ),
    ];
    for (options, args, want) in cases {
        let ch = lp::open_channel(&conn).await;
        let name = unique("stream");
        let r = within(
            "queue.declare",
            ch.queue_declare(name.as_str().into(), options, args),
        )
        .await;
        let want = format!("PRECONDITION_FAILED - {}", want.replace("{}", &name));
        assert_refused(r, PRECONDITION_FAILED, &want);
        assert!(!lp::queue_exists(&conn, &name).await);
    }
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_rabbitmq_refuses_on_a_stream_is_refused_with_its_codes() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let s = unique("stream");
    let rs = format!("queue '{s}' in vhost '/'");
    let conn = lp::connect(&broker).await;
    let ch = lp::open_channel(&conn).await;
    declare_stream(&ch, &s).await;

    // No prefetch: 406, the channel closes.
    let r = within(
        "basic.consume",
        ch.basic_consume(
            s.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_refused(
        r,
        PRECONDITION_FAILED,
        &format!("PRECONDITION_FAILED - consumer prefetch count is not set for stream {rs}"),
    );
    // A bad x-stream-offset: 406.
    let ch = lp::open_channel(&conn).await;
    ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
    let r = within(
        "basic.consume",
        ch.basic_consume(
            s.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[("x-stream-offset", text("bogus"))]),
        ),
    )
    .await;
    assert_eq!(lp::reply_code(&r.unwrap_err()), Some(PRECONDITION_FAILED));
    // queue.purge: 540 (a connection error).
    let ch = lp::open_channel(&conn).await;
    let r = within(
        "queue.purge",
        ch.queue_purge(s.as_str().into(), QueuePurgeOptions::default()),
    )
    .await;
    assert_refused(
        r,
        NOT_IMPLEMENTED,
        &format!("NOT_IMPLEMENTED - queue.purge not supported by {rs}"),
    );

    for case in ["no-ack", "global", "get"] {
        let conn = lp::connect(&broker).await;
        let ch = lp::open_channel(&conn).await;
        let r = match case {
            "no-ack" => {
                ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
                within(
                    "basic.consume",
                    ch.basic_consume(
                        s.as_str().into(),
                        "".into(),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    ),
                )
                .await
                .map(|_| ())
            }
            "global" => {
                ch.basic_qos(5, BasicQosOptions::default()).await.unwrap();
                ch.basic_qos(5, BasicQosOptions { global: true })
                    .await
                    .unwrap();
                within(
                    "basic.consume",
                    ch.basic_consume(
                        s.as_str().into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    ),
                )
                .await
                .map(|_| ())
            }
            _ => within(
                "basic.get",
                ch.basic_get(s.as_str().into(), BasicGetOptions { no_ack: false }),
            )
            .await
            .map(|_| ()),
        };
        let want = match case {
            "no-ack" => {
                format!("NOT_IMPLEMENTED - automatic acknowledgement not supported by stream {rs}")
            }
            "global" => format!("NOT_IMPLEMENTED - {rs} does not support global qos"),
            _ => format!("NOT_IMPLEMENTED - basic.get not supported by stream queues {rs}"),
        };
        assert_refused(r, NOT_IMPLEMENTED, &want);
    }
    let _ = conn.close(200, "bye".into()).await;
}

/// A stream is a queue like any other for exchanges: bound to `amq.topic`, it gets MQTT
/// publishes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_bound_to_an_exchange_gets_what_is_routed_to_it() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
    lp::bind(&ch, &s, "amq.topic", "sensors.#", FieldTable::default()).await;
    let confirm = ch
        .basic_publish(
            "amq.topic".into(),
            "sensors.t1".into(),
            Default::default(),
            b"21.5",
            BasicProperties::default(),
        )
        .await
        .unwrap();
    assert!(within("a confirm", confirm).await.unwrap().is_ack());
    let cch = lp::open_channel(&conn).await;
    let mut c = stream_consumer(&cch, &s, Some(text("first"))).await;
    let d = lp::next_delivery(&mut c).await;
    assert_eq!(lp::body(&d), "21.5");
    assert_eq!(d.routing_key.as_str(), "sensors.t1");
    conn.close(200, "bye".into()).await.unwrap();
}

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
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
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
    let ch = confirm_channel(&conn).await;
    let s = unique("stream");
    declare_stream(&ch, &s).await;
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
