//! RabbitMQ's queue features through a real client: message TTL (`x-message-ttl`, per-message
//! `expiration`), unused-queue expiry (`x-expires`), length limits (`x-max-length`,
//! `x-max-length-bytes`, `x-overflow`), priority queues (`x-max-priority`), consumer priorities
//! (`x-priority`), single active consumer, exclusive consumers, and the delivery limit with
//! `x-delivery-count`. Dead-letter headers are checked in `dead_lettering.rs`.

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Consumer, ExchangeKind};
use pigeon_tests::lapin_support::{self as lp, assert_code, int, table, text};
use pigeon_tests::reply::{ACCESS_REFUSED, PRECONDITION_FAILED};
use pigeon_tests::{unique, within, TestBroker};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh exclusive queue with `args`; returns its name.
async fn new_queue(channel: &Channel, args: FieldTable) -> String {
    let name = unique("q");
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), QueueDeclareOptions::exclusive(), args),
    )
    .await
    .unwrap();
    name
}

/// A fresh durable queue with a delivery limit (a quorum queue against RabbitMQ, see
/// [`lp::delivery_limit`]). The test deletes it.
async fn delivery_limited_queue(broker: &TestBroker, channel: &Channel, limit: i32) -> String {
    let name = unique("qq");
    let args = table(&lp::delivery_limit(broker, limit));
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), QueueDeclareOptions::durable(), args),
    )
    .await
    .unwrap();
    name
}

/// An exclusive queue bound to a fresh fanout exchange, for dead letters: (exchange, queue).
async fn dead_letter_target(channel: &Channel) -> (String, String) {
    let exchange = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let dlq = new_queue(channel, FieldTable::default()).await;
    lp::bind(channel, &dlq, &exchange, "", FieldTable::default()).await;
    (exchange, dlq)
}

async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    body: &str,
    properties: BasicProperties,
) -> Confirmation {
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await
        .unwrap();
    within("the publisher confirm", confirm).await.unwrap()
}

async fn publish_priority(channel: &Channel, queue: &str, body: &str, priority: Option<u8>) {
    let mut properties = BasicProperties::default();
    if let Some(p) = priority {
        properties = properties.with_priority(p);
    }
    lp::publish_with(channel, "", queue, body.as_bytes(), properties).await;
}

async fn consume_with(
    channel: &Channel,
    queue: &str,
    options: BasicConsumeOptions,
    args: FieldTable,
) -> lapin::Result<Consumer> {
    within(
        "basic.consume-ok",
        channel.basic_consume(queue.into(), "".into(), options, args),
    )
    .await
}

async fn consume_no_ack(channel: &Channel, queue: &str) -> Consumer {
    lp::consume(
        channel,
        queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await
}

async fn ack(channel: &Channel, d: &Delivery) {
    channel
        .basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
}

async fn qos(channel: &Channel, prefetch: u16) {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
}

/// Every message left in `queue`, taken with basic.get (auto-ack) until it is empty.
async fn drain(channel: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = within(
            "basic.get",
            channel.basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            ),
        )
        .await
        .unwrap();
        match got {
            Some(m) => out.push(lp::body(&m.delivery)),
            None => return out,
        }
    }
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

/// Polls with mandatory publishes (which, unlike a declare, do not count as using the queue)
/// until a message to `queue` comes back unroutable: the queue is gone.
async fn wait_until_deleted(channel: &Channel, queue: &str) {
    within(&format!("{queue} to be deleted"), async {
        while lp::routed(channel, "", queue, b"probe").await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn delivery_count(d: &Delivery) -> Option<AMQPValue> {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned())
}

mod length_limits;
mod priorities_and_consumers;
mod ttl;
