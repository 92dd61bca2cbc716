//! Streams over AMQP 0-9-1 (`x-queue-type: stream`), as RabbitMQ's: declaration and its
//! refusals, publishing with confirms, consuming from an offset with `x-stream-offset` on every
//! delivery, acks that only return credit, restart, and what RabbitMQ refuses.

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use pigeon_tests::lapin_support::{self as lp, table, text};
use pigeon_tests::reply::{NOT_IMPLEMENTED, PRECONDITION_FAILED};
use pigeon_tests::streams_support::{
    assert_refused, confirm_channel, data_dir, declare_stream, new_stream, next, publish_confirmed,
    stream_args, stream_consumer,
};
use pigeon_tests::{unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_read_from_first_next_and_an_offset_and_acks_keep_the_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let (ch, s) = new_stream(&conn).await;
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
    let (ch, s) = new_stream(&conn).await;
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

/// rabbit_amqqueue `assert_args_equivalence` and rabbit_misc `equivalence_fail`: a stream
/// declared again without `x-queue-type`, or as a classic queue, is inequivalent, with
/// RabbitMQ 3.x's texts; declared again as a stream it is fine, and a classic queue declared
/// again with or without `x-queue-type: classic` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_declared_again_as_another_type_is_inequivalent() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let s = unique("stream");
    let conn = lp::connect(&broker).await;
    let ch = lp::open_channel(&conn).await;
    declare_stream(&ch, &s).await;
    declare_stream(&ch, &s).await;
    let cases = [
        (
            FieldTable::default(),
            "received none but current is the value 'stream' of type 'longstr'",
        ),
        (
            table(&[("x-queue-type", text("classic"))]),
            "received the value 'classic' of type 'longstr' but current is the value 'stream' of type 'longstr'",
        ),
    ];
    for (args, want) in cases {
        let ch = lp::open_channel(&conn).await;
        let r = within(
            "queue.declare",
            ch.queue_declare(s.as_str().into(), lp::durable(), args),
        )
        .await;
        let want = format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue '{s}' in vhost '/': {want}"
        );
        assert_refused(r, PRECONDITION_FAILED, &want);
    }
    // Classic queues as before: with or without the type, either way round.
    let ch = lp::open_channel(&conn).await;
    let classic = table(&[("x-queue-type", text("classic"))]);
    for (first, again) in [
        (FieldTable::default(), classic.clone()),
        (classic.clone(), FieldTable::default()),
    ] {
        let q = unique("classic");
        for args in [first.clone(), again.clone(), first.clone()] {
            within(
                "queue.declare",
                ch.queue_declare(q.as_str().into(), lp::durable(), args),
            )
            .await
            .unwrap();
        }
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
    let (ch, s) = new_stream(&conn).await;
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
