//! Priority queues (`x-max-priority`) larger than memory: like any queue they keep only a few
//! messages in memory (here 10) and page the rest out, per priority level, yet deliver in
//! exactly the order they would from memory: highest priority first, FIFO within a priority,
//! requeued messages back at their place, drop-head taking the next message to deliver (as
//! RabbitMQ's `rabbit_priority_queue` does), and a durable one restores exactly its persistent
//! messages at a restart.
//!
//! These tests need their own server configuration (a tiny resident limit and a data
//! directory), so they pass without checking anything against an external broker.

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use pigeon_tests::lapin_support::{self as lp, confirm_connection, durable, table};
use pigeon_tests::{unique, within, DataDir, TestBroker};

/// Messages a queue keeps in memory in these tests.
const RESIDENT: usize = 10;
/// The queues' `x-max-priority`.
const MAX_PRIORITY: u8 = 10;

/// A data directory whose server pages: fsync off, [`RESIDENT`] messages (or 1 MiB) in memory.
fn data_dir() -> DataDir {
    DataDir::with(|c| {
        c.fsync = false;
        c.queue_resident_messages = RESIDENT;
        c.queue_resident_bytes = 1024 * 1024;
    })
}

/// The broker's own view of queue `name`: (ready messages, of which paged out).
fn paged(broker: &TestBroker, name: &str) -> (u32, u32) {
    let q = broker
        .server()
        .unwrap()
        .broker()
        .vhost("/")
        .unwrap()
        .queue(name)
        .unwrap();
    (q.message_count(), q.paged_out_count())
}

async fn priority_queue(
    channel: &Channel,
    options: QueueDeclareOptions,
    extra: &[(&str, AMQPValue)],
) -> String {
    let name = unique("prq");
    let mut args = vec![("x-max-priority", AMQPValue::ShortShortUInt(MAX_PRIORITY))];
    args.extend(extra.iter().cloned());
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), options, table(&args)),
    )
    .await
    .unwrap();
    name
}

/// Message `i` of a mixed batch: body `m{i}`, priority `i * 7 % 13` (11 and 12 count as the
/// queue's 10), persistent unless `i % 5 == 0`.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    body: String,
    priority: u8,
    persistent: bool,
}

fn mixed(i: usize) -> Item {
    Item {
        body: format!("m{i}"),
        priority: (i * 7 % 13) as u8,
        persistent: !i.is_multiple_of(5),
    }
}

/// Publishes `items` in order on a confirm channel, all in flight at once; every one is
/// confirmed.
async fn publish(channel: &Channel, queue: &str, items: &[Item]) {
    let mut pending = Vec::new();
    for item in items {
        let props = BasicProperties::default()
            .with_priority(item.priority)
            .with_delivery_mode(if item.persistent { 2 } else { 1 });
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                item.body.as_bytes(),
                props,
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for confirm in pending {
        assert_eq!(
            within("a publisher confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
}

/// The order a priority queue delivers `items` (published in this order) in.
fn delivery_order(items: &[Item]) -> Vec<String> {
    let mut sorted: Vec<(usize, &Item)> = items.iter().enumerate().collect();
    sorted.sort_by_key(|(i, m)| (std::cmp::Reverse(m.priority.min(MAX_PRIORITY)), *i));
    sorted.into_iter().map(|(_, m)| m.body.clone()).collect()
}

/// Every message left in `queue`, taken with basic.get (auto-ack): (body, redelivered).
async fn drain(channel: &Channel, queue: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = within(
        "basic.get",
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push((lp::body(&m.delivery), m.delivery.redelivered));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_priority_queue_pages_out_and_a_consumer_gets_exact_priority_order() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = priority_queue(&ch, QueueDeclareOptions::default(), &[]).await;
    let items: Vec<Item> = (0..600).map(mixed).collect();
    publish(&ch, &q, &items).await;
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready, 600);
    assert!(out > 0, "nothing paged out");
    assert_eq!(out, 600 - RESIDENT as u32, "all but a head-full");

    // A consumer with a small prefetch that gives the first delivery back once: it comes
    // again first (it is the oldest of the highest priority), marked redelivered.
    let expected = delivery_order(&items);
    let consumer_ch = lp::open_channel(&conn).await;
    within(
        "basic.qos",
        consumer_ch.basic_qos(5, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = within(
        "basic.consume",
        consumer_ch.basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let first = within("a delivery", consumer.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lp::body(&first), expected[0]);
    within(
        "basic.nack",
        first.nack(BasicNackOptions {
            requeue: true,
            ..BasicNackOptions::default()
        }),
    )
    .await
    .unwrap();
    // Four more were delivered with it (prefetch 5); then it comes back, then the rest.
    let mut want: Vec<(String, bool)> = expected[1..5].iter().map(|b| (b.clone(), false)).collect();
    want.push((expected[0].clone(), true));
    want.extend(expected[5..].iter().map(|b| (b.clone(), false)));
    let mut got = Vec::new();
    while got.len() < want.len() {
        let d = within("a delivery", consumer.next())
            .await
            .unwrap()
            .unwrap();
        got.push((lp::body(&d), d.redelivered));
        within("basic.ack", d.ack(BasicAckOptions::default()))
            .await
            .unwrap();
    }
    assert_eq!(got, want, "exact priority order, FIFO within a priority");
    // Every message was delivered: none is ready, in memory or paged out.
    assert_eq!(paged(&broker, &q), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_priority_queue_pages_out_and_restores_exactly_its_persistent_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = priority_queue(&ch, durable(), &[]).await;
    let items: Vec<Item> = (0..400).map(mixed).collect();
    publish(&ch, &q, &items).await;
    assert_eq!(paged(&broker, &q), (400, 400 - RESIDENT as u32));

    drop(ch);
    drop(conn);
    let broker = data.restart(broker).await;
    let persistent: Vec<Item> = items.iter().filter(|m| m.persistent).cloned().collect();
    let (ready, out) = paged(&broker, &q);
    assert_eq!(
        ready as usize,
        persistent.len(),
        "transient messages are dropped"
    );
    assert!(out > 0, "a restart keeps only a head-full in memory");
    let (_conn, ch) = confirm_connection(&broker).await;
    // More at the top and the bottom after the restart: they take their places too.
    let late = [
        Item {
            body: "late-top".into(),
            priority: MAX_PRIORITY,
            persistent: true,
        },
        Item {
            body: "late-low".into(),
            priority: 0,
            persistent: false,
        },
    ];
    publish(&ch, &q, &late).await;
    let mut all = persistent.clone();
    all.extend(late);
    let got = drain(&ch, &q).await;
    let expected: Vec<(String, bool)> = delivery_order(&all)
        .into_iter()
        .map(|b| (b, false))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(paged(&broker, &q), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_dead_letters_the_highest_priority_oldest_message_while_paged_out() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let dead = unique("dead");
    within(
        "queue.declare-ok",
        ch.queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    const MAX: usize = 50;
    let q = priority_queue(
        &ch,
        durable(),
        &[
            ("x-max-length", AMQPValue::LongInt(MAX as i32)),
            ("x-overflow", AMQPValue::LongString("drop-head".into())),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(dead.as_str().into()),
            ),
        ],
    )
    .await;
    let items: Vec<Item> = (0..200).map(mixed).collect();
    publish(&ch, &q, &items).await;
    // The model: after each publish, while over the limit, the next message to deliver goes.
    let mut kept: Vec<(usize, &Item)> = Vec::new();
    let mut dropped = Vec::new();
    for (i, m) in items.iter().enumerate() {
        kept.push((i, m));
        if kept.len() > MAX {
            let next = (0..kept.len())
                .min_by_key(|&k| {
                    (
                        std::cmp::Reverse(kept[k].1.priority.min(MAX_PRIORITY)),
                        kept[k].0,
                    )
                })
                .unwrap();
            dropped.push(kept.remove(next).1.body.clone());
        }
    }
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready as usize, MAX);
    assert!(out > 0, "nothing paged out");
    let left: Vec<Item> = kept.into_iter().map(|(_, m)| m.clone()).collect();
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, delivery_order(&left));
    // Dead letters arrive in the order they were dropped.
    let got: Vec<String> = drain(&ch, &dead).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_dead_letters_every_paged_out_message_once() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let dead = unique("dead");
    within(
        "queue.declare-ok",
        ch.queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    let q = priority_queue(
        &ch,
        durable(),
        &[
            ("x-message-ttl", AMQPValue::LongInt(50)),
            ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
            (
                "x-dead-letter-routing-key",
                AMQPValue::LongString(dead.as_str().into()),
            ),
        ],
    )
    .await;
    let items: Vec<Item> = (0..200).map(mixed).collect();
    publish(&ch, &q, &items).await;
    assert!(paged(&broker, &q).1 > 0, "nothing paged out");
    // The timer expires every level's head, pages its tail in and expires it in turn.
    within("every message dead-lettered", async {
        while lp::message_count(&ch, &dead).await != 200 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(paged(&broker, &q), (0, 0));
    let mut got: Vec<String> = drain(&ch, &dead).await.into_iter().map(|m| m.0).collect();
    got.sort();
    let mut want: Vec<String> = items.into_iter().map(|m| m.body).collect();
    want.sort();
    assert_eq!(got, want, "each exactly once");
}
