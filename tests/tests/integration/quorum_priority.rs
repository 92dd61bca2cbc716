//! Consumer priorities (`x-priority` on `basic.consume`) on quorum queues, as RabbitMQ's
//! (rabbit_fifo's service queue is a priority queue; RabbitMQ 4.0 combines them with single
//! active consumer): messages go to the highest-priority consumer with room (prefetch
//! credit), lower ones only while the higher ones are full; with single active consumer a
//! consumer of a higher priority takes over once the active one has settled what it holds.
//! On a node without `[cluster]` (a cluster of one), through the same state machine as a
//! cluster's.

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, Consumer};
use pigeon_tests::lapin_support::{self as lp, durable, table};
use pigeon_tests::{unique, within, DataDir};

fn quorum(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut pairs = vec![("x-queue-type", lp::text("quorum"))];
    pairs.extend(extra.iter().cloned());
    table(&pairs)
}

/// A consumer on a channel of its own with prefetch 1 and `x-priority` `priority` (none
/// for `None`).
async fn consumer(conn: &Connection, queue: &str, priority: Option<i32>) -> (Channel, Consumer) {
    let ch = lp::open_channel(conn).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let args = match priority {
        Some(p) => table(&[("x-priority", AMQPValue::LongInt(p))]),
        None => FieldTable::default(),
    };
    let c = within(
        "basic.consume-ok",
        ch.basic_consume(
            queue.into(),
            unique("c").as_str().into(),
            BasicConsumeOptions::default(),
            args,
        ),
    )
    .await
    .unwrap();
    (ch, c)
}

async fn next(consumer: &mut Consumer) -> Delivery {
    within("a delivery", consumer.next())
        .await
        .expect("the consumer ended")
        .expect("a delivery")
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    lp::publish(ch, "", queue, body.as_bytes()).await;
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), durable(), args),
    )
    .await
    .unwrap();
}

async fn ack(d: &Delivery) {
    d.ack(BasicAckOptions::default()).await.unwrap();
}

#[tokio::test]
async fn the_high_priority_consumer_gets_messages_while_it_has_room() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let q = unique("qq-prio");
    declare(&ch, &q, quorum(&[])).await;
    // The low one first: in turn, it would get the first message.
    let (_low_ch, mut low) = consumer(&conn, &q, None).await;
    let (_high_ch, mut high) = consumer(&conn, &q, Some(10)).await;

    publish(&ch, &q, "1").await;
    let h1 = next(&mut high).await;
    assert_eq!(lp::body(&h1), "1");
    // The high one is full (prefetch 1): the low one gets the next.
    publish(&ch, &q, "2").await;
    let l2 = next(&mut low).await;
    assert_eq!(lp::body(&l2), "2");
    // Both have room again: the high one first, the low one once it is full.
    ack(&h1).await;
    ack(&l2).await;
    publish(&ch, &q, "3").await;
    let h3 = next(&mut high).await;
    assert_eq!(lp::body(&h3), "3");
    publish(&ch, &q, "4").await;
    let l4 = next(&mut low).await;
    assert_eq!(lp::body(&l4), "4");
    // Both full: the next waits for the first with room, whichever acks.
    publish(&ch, &q, "5").await;
    ack(&l4).await;
    assert_eq!(lp::body(&next(&mut low).await), "5");
    conn.close(200, "done".into()).await.unwrap();
}

#[tokio::test]
async fn single_active_consumer_hands_over_to_a_higher_priority() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let q = unique("qq-sac-prio");
    declare(
        &ch,
        &q,
        quorum(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let (_a_ch, mut a) = consumer(&conn, &q, None).await;
    publish(&ch, &q, "1").await;
    let a1 = next(&mut a).await;
    assert_eq!(lp::body(&a1), "1");
    // B has a higher priority: it takes over once A has settled what it holds (A gets
    // nothing more meanwhile: "2" waits for B).
    let (b_ch, mut b) = consumer(&conn, &q, Some(5)).await;
    publish(&ch, &q, "2").await;
    ack(&a1).await;
    let b2 = next(&mut b).await;
    assert_eq!(lp::body(&b2), "2");
    // C has B's priority: it waits behind B (arrival order among equals) and ahead of A.
    let (_c_ch, mut c) = consumer(&conn, &q, Some(5)).await;
    ack(&b2).await;
    publish(&ch, &q, "3").await;
    let b3 = next(&mut b).await;
    assert_eq!(lp::body(&b3), "3");
    ack(&b3).await;
    // B goes: C, not A, is next.
    drop(b);
    b_ch.close(200, "gone".into()).await.unwrap();
    publish(&ch, &q, "4").await;
    assert_eq!(lp::body(&next(&mut c).await), "4");
    conn.close(200, "done".into()).await.unwrap();
}
