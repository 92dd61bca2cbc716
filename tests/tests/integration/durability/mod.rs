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

mod definitions;
mod messages;
mod publishers;
