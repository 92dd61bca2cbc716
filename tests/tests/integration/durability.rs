//! Durability across a restart: the in-process server is started on a data directory, shut down
//! cleanly ([`TestBroker::stop`]) and started again on the same directory with the same
//! configuration, and the clients look at what came back.
//!
//! What must survive, as in RabbitMQ: durable exchanges, durable non-exclusive queues, bindings
//! whose two ends are durable, and persistent messages (AMQP `delivery_mode` 2, MQTT QoS 1 and 2)
//! in durable queues, with their properties and in order. What must not: transient exchanges
//! and queues, exclusive queues, transient messages, and messages that left their queue (acked,
//! expired, dead-lettered, dropped by a length limit, purged, deleted with their queue).
//!
//! These tests need their own server configuration (a data directory), so they pass without
//! checking anything against an external broker (reference mode).

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, ConfirmSelectArguments,
    QueueDeclareArguments,
};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ExchangeBindOptions, ExchangeDeclareOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldArray, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};
use pigeon_tests::amqprs_support as ar;
use pigeon_tests::lapin_support::{self as lp, assert_code, confirm_connection, durable, table};
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::reply::PRECONDITION_FAILED;
use pigeon_tests::{unique, within, DataDir, TestBroker};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A data directory whose server syncs every write (fsync on).
fn data_dir() -> DataDir {
    DataDir::with(|c| c.fsync = true)
}

/// The directory of the message log of queue `name` (vhost `/`) in `data`'s store.
fn queue_log_dir(data: &DataDir, name: &str) -> Option<std::path::PathBuf> {
    let queues = data.path().join("queues");
    let id = format!("/\u{0}{name}");
    std::fs::read_dir(&queues)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| std::fs::read(d.join("id")).is_ok_and(|b| b == id.as_bytes()))
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn declare_with(
    channel: &Channel,
    name: &str,
    options: QueueDeclareOptions,
    args: FieldTable,
) {
    within(
        "queue.declare-ok",
        channel.queue_declare(name.into(), options, args),
    )
    .await
    .unwrap();
}

/// A durable queue with `args`, under a fresh name.
async fn durable_queue(channel: &Channel, args: FieldTable) -> String {
    let name = unique("dq");
    declare_with(channel, &name, durable(), args).await;
    name
}

/// Publishes on a confirm channel and checks that the broker acked (the message is on disk).
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    properties: BasicProperties,
) {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap();
    assert_eq!(
        within("the publisher confirm", confirm).await.unwrap(),
        Confirmation::Ack(None),
        "{body} is confirmed"
    );
}

/// Every message left in `queue`, taken with basic.get (auto-ack) until it is empty.
async fn drain(channel: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = within(
        "basic.get",
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push(lp::body(&m.delivery));
    }
    out
}

/// Polls the queue's ready count (passive declare) until it is `n`.
async fn wait_for_count(channel: &Channel, queue: &str, n: u32) {
    within(&format!("{queue} to hold {n} messages"), async {
        while lp::message_count(channel, queue).await != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Definitions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_definitions_survive_a_restart_and_transient_or_exclusive_ones_do_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (x, x2, tx) = (unique("dx"), unique("dx2"), unique("tx"));
    let (q, nq, eq) = (unique("dq"), unique("nq"), unique("eq"));
    let q_args = table(&[("x-max-length", AMQPValue::LongInt(100))]);
    {
        let (conn, ch) = lp::connect_channel(&broker).await;
        lp::declare_exchange(
            &ch,
            &x,
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        lp::declare_exchange(
            &ch,
            &x2,
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        lp::declare_exchange(
            &ch,
            &tx,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        declare_with(&ch, &q, durable(), q_args.clone()).await;
        declare_with(
            &ch,
            &nq,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        let exclusive_durable = QueueDeclareOptions {
            durable: true,
            exclusive: true,
            ..Default::default()
        };
        declare_with(&ch, &eq, exclusive_durable, FieldTable::default()).await;
        // Durable: x -> q, x2 -> x (exchange to exchange). Not durable: x -> nq (transient
        // queue), tx -> q (transient exchange).
        lp::bind(&ch, &q, &x, "orders.*", FieldTable::default()).await;
        within(
            "exchange.bind-ok",
            ch.exchange_bind(
                x.as_str().into(),
                x2.as_str().into(),
                "orders.eu".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        lp::bind(&ch, &nq, &x, "orders.*", FieldTable::default()).await;
        lp::bind(&ch, &q, &tx, "", FieldTable::default()).await;
        // The exclusive queue would be deleted with this connection anyway; the restart must
        // not bring it back either way, so the connection stays open until the shutdown.
        let broker = data.restart(broker).await;
        drop(conn);
        let (conn, ch) = lp::connect_channel(&broker).await;
        assert!(lp::exchange_exists(&conn, &x).await, "durable exchange");
        assert!(lp::exchange_exists(&conn, &x2).await, "durable exchange");
        assert!(lp::queue_exists(&conn, &q).await, "durable queue");
        assert!(!lp::exchange_exists(&conn, &tx).await, "transient exchange");
        assert!(!lp::queue_exists(&conn, &nq).await, "transient queue");
        assert!(!lp::queue_exists(&conn, &eq).await, "exclusive queue");

        // The declarations came back as they were: same type, same arguments.
        declare_with(&ch, &q, durable(), q_args).await;
        let other_ch = lp::open_channel(&conn).await;
        let changed = table(&[("x-max-length", AMQPValue::LongInt(5))]);
        assert_code(
            within(
                "queue.declare",
                other_ch.queue_declare(q.as_str().into(), durable(), changed),
            )
            .await,
            PRECONDITION_FAILED,
        );
        let other_ch = lp::open_channel(&conn).await;
        assert_code(
            lp::declare_exchange(
                &other_ch,
                &x,
                ExchangeKind::Direct,
                durable_exchange(),
                FieldTable::default(),
            )
            .await,
            PRECONDITION_FAILED,
        );

        // The durable bindings route; the others are gone with their transient end.
        let confirm = lp::confirm_channel(&conn).await;
        assert!(lp::routed(&confirm, &x, "orders.us", b"direct").await);
        assert!(lp::routed(&confirm, &x2, "orders.eu", b"via x2").await);
        assert!(!lp::routed(&confirm, &x, "invoices.us", b"unbound").await);
        assert_eq!(lp::message_count(&ch, &q).await, 2);
        lp::delete_exchange(&ch, &x2).await;
        lp::delete_exchange(&ch, &x).await;
        lp::delete_queue(&ch, &q).await;
        let broker = data.restart(broker).await;
        let conn = lp::connect(&broker).await;
        assert!(!lp::exchange_exists(&conn, &x).await, "deleted for good");
        assert!(!lp::exchange_exists(&conn, &x2).await, "deleted for good");
        assert!(!lp::queue_exists(&conn, &q).await, "deleted for good");
        broker.stop().await;
    }
}

/// An exchange and a queue may share a name (they live in different namespaces): deleting one
/// must not forget the durable bindings of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_keeps_the_bindings_of_an_exchange_of_the_same_name_and_vice_versa() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let name = unique("same");
    let other = unique("other");
    let (_conn, ch) = lp::connect_channel(&broker).await;
    lp::declare_exchange(
        &ch,
        &name,
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_with(&ch, &name, durable(), FieldTable::default()).await;
    declare_with(&ch, &other, durable(), FieldTable::default()).await;
    // exchange `name` -> queue `other`; amq.direct -> queue `name`.
    lp::bind(&ch, &other, &name, "", FieldTable::default()).await;
    lp::bind(&ch, &name, "amq.direct", &name, FieldTable::default()).await;

    lp::delete_queue(&ch, &name).await;
    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    assert!(
        lp::routed(&confirm, &name, "", b"to other").await,
        "the binding from exchange {name} survived the deletion of queue {name}"
    );

    declare_with(&ch, &name, durable(), FieldTable::default()).await;
    lp::bind(&ch, &name, "amq.direct", &name, FieldTable::default()).await;
    lp::delete_exchange(&ch, &name).await;
    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    assert!(
        lp::routed(&confirm, "amq.direct", &name, b"to name").await,
        "the binding to queue {name} survived the deletion of exchange {name}"
    );
    assert_eq!(drain(&ch, &name).await, ["to name"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_bindings_stay_unbound_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let (direct, headers) = (unique("dx"), unique("hx"));
    lp::declare_exchange(
        &ch,
        &direct,
        ExchangeKind::Direct,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    lp::declare_exchange(
        &ch,
        &headers,
        ExchangeKind::Headers,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = durable_queue(&ch, FieldTable::default()).await;
    let any = |color: &str| {
        table(&[
            ("x-match", AMQPValue::LongString("any".into())),
            ("color", AMQPValue::LongString(color.into())),
        ])
    };
    lp::bind(&ch, &q, &direct, "kept", FieldTable::default()).await;
    lp::bind(&ch, &q, &direct, "dropped", FieldTable::default()).await;
    lp::bind(&ch, &q, &headers, "", any("red")).await;
    lp::bind(&ch, &q, &headers, "", any("blue")).await;
    for (exchange, key, args) in [
        (&direct, "dropped", FieldTable::default()),
        (&headers, "", any("blue")),
    ] {
        within(
            "queue.unbind-ok",
            ch.queue_unbind(
                q.as_str().into(),
                exchange.as_str().into(),
                key.into(),
                args,
            ),
        )
        .await
        .unwrap();
    }
    let broker = data.restart(broker).await;
    let conn = lp::connect(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    let colored = |color: &str| {
        BasicProperties::default()
            .with_headers(table(&[("color", AMQPValue::LongString(color.into()))]))
    };
    assert!(lp::routed(&confirm, &direct, "kept", b"k").await);
    assert!(!lp::routed(&confirm, &direct, "dropped", b"d").await);
    assert!(lp::routed_with(&confirm, &headers, "", b"red", colored("red")).await);
    assert!(!lp::routed_with(&confirm, &headers, "", b"blue", colored("blue")).await);
    broker.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Messages

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_with_properties_headers_and_order_transient_ones_do_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let x = unique("dx");
    lp::declare_exchange(
        &ch,
        &x,
        ExchangeKind::Topic,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = durable_queue(&ch, FieldTable::default()).await;
    lp::bind(&ch, &q, &x, "orders.#", FieldTable::default()).await;

    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    let rich = |n: i32| {
        let headers = table(&[
            ("trace", AMQPValue::LongString(format!("t-{n}").into())),
            ("attempt", AMQPValue::LongInt(n)),
            ("big", AMQPValue::LongLongInt(1 << 40)),
            ("flag", AMQPValue::Boolean(n % 2 == 0)),
            ("ratio", AMQPValue::Double(0.25)),
            ("nested", AMQPValue::FieldTable(nested.clone())),
            (
                "list",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    AMQPValue::LongInt(1),
                    AMQPValue::LongString("two".into()),
                ])),
            ),
        ]);
        persistent()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_correlation_id(format!("corr-{n}").into())
            .with_reply_to("replies".into())
            .with_message_id(format!("m-{n}").into())
            .with_priority(3)
            .with_timestamp(1_700_000_000 + n as u64)
            .with_type("order".into())
            .with_user_id("guest".into())
            .with_app_id("durability-test".into())
            // Far in the future: it must not expire across the restart.
            .with_expiration("600000".into())
            .with_headers(headers)
    };
    let mut expected = Vec::new();
    for n in 0..20 {
        let body = format!("persistent-{n}");
        publish_confirmed(&ch, &x, &format!("orders.{n}"), &body, rich(n)).await;
        expected.push((body, format!("orders.{n}"), rich(n)));
        // Transient messages in between (no delivery mode, and delivery mode 1).
        let transient = if n % 2 == 0 {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_delivery_mode(1)
        };
        publish_confirmed(&ch, &x, "orders.t", &format!("transient-{n}"), transient).await;
    }
    assert_eq!(lp::message_count(&ch, &q).await, 40);

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        lp::message_count(&ch, &q).await,
        20,
        "only the persistent messages come back"
    );
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for (body, key, properties) in expected {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body, "in publish order");
        assert_eq!(d.exchange.as_str(), x);
        assert_eq!(d.routing_key.as_str(), key);
        assert!(!d.redelivered, "{body} was never delivered before");
        assert_eq!(d.properties, properties, "{body} keeps its properties");
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_stay_gone_and_delivered_unacked_ones_come_back_redelivered() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=8 {
        publish_confirmed(&ch, "", &q, &n.to_string(), persistent()).await;
    }
    let consumer_ch = lp::open_channel(&conn).await;
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(4, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = lp::consume_acked(&consumer_ch, &q).await;
    let mut delivered = Vec::new();
    for _ in 0..4 {
        delivered.push(lp::next_delivery(&mut consumer).await);
    }
    let bodies: Vec<String> = delivered.iter().map(lp::body).collect();
    assert_eq!(bodies, ["1", "2", "3", "4"]);
    // basic.get with no_ack takes 5 for good (an auto-acked delivery).
    let get_ch = lp::open_channel(&conn).await;
    let got = within(
        "basic.get",
        get_ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(lp::body(&got.delivery), "5");
    // The consumer stops taking messages (its unacked ones stay with it), then acks 1, 2 and
    // 4 and leaves 3 delivered and unacked; 6..8 are never delivered.
    within(
        "basic.cancel-ok",
        consumer_ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    for i in [0, 1, 3] {
        delivered[i]
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    // A round trip on the consumer's channel: the broker has handled the acks before it.
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(4, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(lp::message_count(&ch, &q).await, 3);

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 4);
    let mut consumer = lp::consume_acked(&ch, &q).await;
    let mut back = Vec::new();
    for _ in 0..4 {
        let d = lp::next_delivery(&mut consumer).await;
        back.push((lp::body(&d), d.redelivered));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(
        back,
        [
            ("3".to_string(), true),
            ("6".to_string(), false),
            ("7".to_string(), false),
            ("8".to_string(), false),
        ],
        "only the unacked message comes back flagged redelivered, in its place"
    );
    // Acked after the restart: gone after the next one too.
    within("basic.qos-ok", ch.basic_qos(0, BasicQosOptions::default()))
        .await
        .unwrap();
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_after_a_restart_follow_the_recovered_ones_across_the_next() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for body in ["a", "b", "c"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    // Take "a" for good, then publish more behind the recovered ones.
    let got = within(
        "basic.get",
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(lp::body(&got.delivery), "a");
    for body in ["d", "e"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    publish_confirmed(&ch, "", &q, "f", persistent()).await;
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(drain(&ch, &q).await, ["b", "c", "d", "e", "f"]);
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0, "drained for good");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_queue_comes_back_in_priority_order() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-max-priority", AMQPValue::LongInt(9))])).await;
    for (body, priority) in [
        ("low-1", 1),
        ("high-1", 9),
        ("none", 0),
        ("high-2", 9),
        ("mid", 5),
    ] {
        publish_confirmed(&ch, "", &q, body, persistent().with_priority(priority)).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &q).await,
        ["high-1", "high-2", "mid", "low-1", "none"]
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_rejected_messages_are_dead_lettered_once_and_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let dlx = unique("dlx");
    lp::declare_exchange(
        &ch,
        &dlx,
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dlq = durable_queue(&ch, FieldTable::default()).await;
    lp::bind(&ch, &dlq, &dlx, "", FieldTable::default()).await;
    let src = durable_queue(
        &ch,
        table(&[(
            "x-dead-letter-exchange",
            AMQPValue::LongString(dlx.as_str().into()),
        )]),
    )
    .await;
    // Two expire (per-message TTL), one is rejected, one stays.
    for body in ["expired-1", "expired-2"] {
        publish_confirmed(
            &ch,
            "",
            &src,
            body,
            persistent().with_expiration("50".into()),
        )
        .await;
    }
    wait_for_count(&ch, &dlq, 2).await;
    publish_confirmed(&ch, "", &src, "rejected", persistent()).await;
    publish_confirmed(&ch, "", &src, "kept", persistent()).await;
    let consumer_ch = lp::open_channel(&conn).await;
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(1, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = lp::consume_acked(&consumer_ch, &src).await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(lp::body(&d), "rejected");
    d.acker
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_count(&ch, &dlq, 3).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &src).await,
        ["kept"],
        "the dead letters stayed dead"
    );
    let mut consumer = lp::consume_acked(&ch, &dlq).await;
    for (body, reason) in [
        ("expired-1", "expired"),
        ("expired-2", "expired"),
        ("rejected", "rejected"),
    ] {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body);
        let headers = d.properties.headers().clone().unwrap();
        let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
            panic!("{body} has an x-death header: {headers:?}");
        };
        assert_eq!(deaths.as_slice().len(), 1, "{body} died once");
        let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
            panic!("x-death entry of {body}");
        };
        assert_eq!(
            death.inner().get("reason"),
            Some(&AMQPValue::LongString(reason.into()))
        );
        assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(lp::message_count(&ch, &dlq).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dropped_by_a_length_limit_or_purged_are_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let limited = durable_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(2))])).await;
    for n in 1..=5 {
        publish_confirmed(&ch, "", &limited, &n.to_string(), persistent()).await;
    }
    let purged = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=3 {
        publish_confirmed(&ch, "", &purged, &n.to_string(), persistent()).await;
    }
    let count = within(
        "queue.purge-ok",
        ch.queue_purge(purged.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(count, 3);
    publish_confirmed(&ch, "", &purged, "after purge", persistent()).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &limited).await,
        ["4", "5"],
        "drop-head kept the newest"
    );
    assert_eq!(drain(&ch, &purged).await, ["after purge"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_takes_its_messages_for_good() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let gone = durable_queue(&ch, FieldTable::default()).await;
    let reborn = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=3 {
        publish_confirmed(&ch, "", &gone, &format!("old-{n}"), persistent()).await;
        publish_confirmed(&ch, "", &reborn, &format!("old-{n}"), persistent()).await;
    }
    // One of the old messages is out for delivery when its queue goes.
    let consumer_ch = lp::open_channel(&conn).await;
    let got = within(
        "basic.get",
        consumer_ch.basic_get(reborn.as_str().into(), BasicGetOptions::default()),
    )
    .await
    .unwrap()
    .expect("a message");
    lp::delete_queue(&ch, &gone).await;
    lp::delete_queue(&ch, &reborn).await;
    // Declared again before the restart, under the same name: a new, empty queue.
    declare_with(&ch, &reborn, durable(), FieldTable::default()).await;
    publish_confirmed(&ch, "", &reborn, "new", persistent()).await;
    // The ack of a message of the deleted queue must not touch the new one.
    got.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(lp::message_count(&ch, &reborn).await, 1);

    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    assert!(!lp::queue_exists(&conn, &gone).await);
    declare_with(&ch, &gone, durable(), FieldTable::default()).await;
    assert_eq!(
        lp::message_count(&ch, &gone).await,
        0,
        "declared again: empty"
    );
    assert_eq!(drain(&ch, &reborn).await, ["new"]);
    broker.stop().await;
}

/// A queue's deletion removes its definition, then its log. A crash in between leaves the log
/// behind with no queue; a queue declared later under the same name must start empty and stay
/// so across restarts, not inherit (and later bring back) the deleted queue's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_left_behind_by_an_interrupted_queue_deletion_is_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = unique("dq");
    let (_conn, ch) = confirm_connection(&broker).await;
    declare_with(&ch, &q, durable(), FieldTable::default()).await;
    for body in ["old-1", "old-2", "old-3"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    broker.stop().await;
    // Keep a copy of the log as it was before the deletion.
    let dir = queue_log_dir(&data, &q).expect("the queue's log");
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&dir, saved.path());

    let broker = data.start().await.unwrap();
    let (_conn, ch) = lp::connect_channel(&broker).await;
    lp::delete_queue(&ch, &q).await;
    broker.stop().await;
    assert!(
        queue_log_dir(&data, &q).is_none(),
        "the deletion removed the log"
    );
    // The crash between the two steps: the definition is gone, the log is still there.
    copy_dir(saved.path(), &dir);

    let broker = data.start().await.unwrap();
    let (conn, ch) = confirm_connection(&broker).await;
    assert!(!lp::queue_exists(&conn, &q).await);
    declare_with(&ch, &q, durable(), FieldTable::default()).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    publish_confirmed(&ch, "", &q, "new", persistent()).await;
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(drain(&ch, &q).await, ["new"]);
    broker.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Publishers: confirms, transactions, amqprs, MQTT

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_confirms_arrive_for_persistent_messages_and_those_messages_survive() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    // Many in flight at once: they share flushes (group commit), each is confirmed.
    let mut pending = Vec::new();
    for n in 0..500 {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{n}").as_bytes(),
                persistent(),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for confirm in pending {
        assert_eq!(
            within("a confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    // A transaction's commit-ok also means on disk.
    let tx_ch = lp::open_channel(&_conn).await;
    within("tx.select-ok", tx_ch.tx_select()).await.unwrap();
    for n in 500..510 {
        tx_ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{n}").as_bytes(),
                persistent(),
            )
            .await
            .unwrap();
    }
    within("tx.commit-ok", tx_ch.tx_commit()).await.unwrap();

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let expected: Vec<String> = (0..510).map(|n| n.to_string()).collect();
    assert_eq!(drain(&ch, &q).await, expected);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_persistent_messages_survive_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = unique("amqprs-dq");
    {
        let (conn, _) = ar::connect(&broker).await;
        let (ch, mut events) = ar::open_channel(&conn).await;
        ch.confirm_select(ConfirmSelectArguments::default())
            .await
            .unwrap();
        ch.queue_declare(QueueDeclareArguments::new(&q).durable(true).finish())
            .await
            .unwrap();
        for n in 1..=3 {
            let props = amqprs::BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("text/plain")
                .with_message_id(&format!("id-{n}"))
                .finish();
            ch.basic_publish(
                props,
                format!("amqprs-{n}").into_bytes(),
                BasicPublishArguments::new("", &q),
            )
            .await
            .unwrap();
        }
        events.confirmed_up_to(3, &mut 0).await;
    }
    let broker = data.restart(broker).await;
    let (conn, _) = ar::connect(&broker).await;
    let (ch, _events) = ar::open_channel(&conn).await;
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&q, ""))
        .await
        .unwrap();
    for n in 1..=3 {
        let m = ar::next_message(&mut rx).await;
        assert_eq!(ar::body(&m), format!("amqprs-{n}"));
        assert!(!m.deliver.as_ref().unwrap().redelivered());
        let props = m.basic_properties.as_ref().unwrap();
        assert_eq!(props.delivery_mode(), Some(2));
        assert_eq!(props.content_type().map(String::as_str), Some("text/plain"));
        assert_eq!(
            props.message_id().map(String::as_str),
            Some(format!("id-{n}").as_str())
        );
        ch.basic_ack(BasicAckArguments::new(ar::delivery_tag(&m), false))
            .await
            .unwrap();
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_qos1_and_qos2_publishes_to_a_durable_queue_survive_and_qos0_does_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let mqtt_port = |b: &TestBroker| b.server().unwrap().mqtt_addr().unwrap().port();
    let device = unique("dev");
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    // MQTT topic sensors/<device>/temp is routing key sensors.<device>.temp on amq.topic.
    lp::bind(
        &ch,
        &q,
        "amq.topic",
        "sensors.*.temp",
        FieldTable::default(),
    )
    .await;
    let topic = format!("sensors/{device}/temp");
    let mut mqtt = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("pub"),
        "127.0.0.1",
        mqtt_port(&broker),
    ))
    .await;
    // Each waits for PUBACK / PUBCOMP: sent only once the message is on disk.
    mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"qos1")
        .await;
    mqtt.publish(&topic, rumqttc::QoS::AtMostOnce, false, b"qos0")
        .await;
    mqtt.publish(&topic, rumqttc::QoS::ExactlyOnce, false, b"qos2")
        .await;
    wait_for_count(&ch, &q, 3).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for body in ["qos1", "qos2"] {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body);
        assert_eq!(d.routing_key.as_str(), format!("sensors.{device}.temp"));
        assert_eq!(*d.properties.delivery_mode(), Some(2));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    // The binding to amq.topic came back too.
    let mut mqtt = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("pub"),
        "127.0.0.1",
        mqtt_port(&broker),
    ))
    .await;
    mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"after")
        .await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(lp::body(&d), "after");
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
    broker.stop().await;
}

/// "Nothing is confirmed before it is on disk" also when the disk fails: a persistent message
/// the store could not write, or that arrives after the store stopped accepting writes, gets
/// no positive confirm. The failure is provoked by removing a new durable queue's directory
/// before its first message creates the segment file in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_message_the_store_cannot_write_is_never_confirmed() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let setup = lp::open_channel(&conn).await;
    let (broken, healthy) = (unique("broken"), unique("healthy"));
    declare_with(&setup, &broken, durable(), FieldTable::default()).await;
    declare_with(&setup, &healthy, durable(), FieldTable::default()).await;
    let transient = lp::exclusive_queue(&setup).await;
    let dir = queue_log_dir(&data, &broken).expect("the queue's directory");
    std::fs::remove_dir_all(&dir).unwrap();

    // Every channel stays open to the end: closing one would settle its confirms.
    let (first_ch, after_ch, marker_ch) = (
        lp::confirm_channel(&conn).await,
        lp::confirm_channel(&conn).await,
        lp::confirm_channel(&conn).await,
    );
    // Its first write fails, and with it the store.
    let mut first = publish_raw(&first_ch, &broken, persistent()).await;
    // A commit returns once the store synced, or failed, everything appended before it: after
    // it the store has failed, and the commit is refused (its connection closed with 541), not
    // acknowledged for messages that are not on disk.
    let tx_conn = lp::connect(&broker).await;
    let tx = lp::open_channel(&tx_conn).await;
    within("tx.select-ok", tx.tx_select()).await.unwrap();
    drop(publish_raw(&tx, &healthy, persistent()).await);
    let commit = within("tx.commit", tx.tx_commit()).await;
    assert!(
        commit.is_err(),
        "tx.commit-ok for a message the store could not write"
    );
    // Now a new publisher: the store refuses its message.
    let mut after = publish_raw(&after_ch, &healthy, persistent()).await;
    // A transient message is confirmed at once; the confirms above, handled earlier on the
    // same connection, would have arrived before it.
    let marker = publish_raw(&marker_ch, &transient, BasicProperties::default()).await;
    match within("the transient message's confirm", marker).await {
        Ok(confirmation) => assert_eq!(confirmation, Confirmation::Ack(None)),
        Err(e) => panic!("the transient message's confirm failed: {e:?}"),
    }
    for (what, confirm) in [
        ("the failed write", &mut first),
        ("the refused write", &mut after),
    ] {
        // Still waiting, or refused: either is honest.
        match futures_lite::future::poll_once(confirm).await {
            None | Some(Ok(Confirmation::Nack(_))) => {}
            Some(other) => panic!("{what} got {other:?}, yet it is not on disk"),
        }
    }
    drop((first_ch, after_ch, marker_ch, tx));
    broker.stop().await;
}

/// Publishes to `queue` through the default exchange; returns the confirm, unawaited.
async fn publish_raw(
    channel: &Channel,
    queue: &str,
    properties: BasicProperties,
) -> lapin::PublisherConfirm {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"m",
            properties,
        )
        .await
        .unwrap()
}
