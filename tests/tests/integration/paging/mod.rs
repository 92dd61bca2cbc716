//! Queues larger than memory: a queue keeps only a few messages in memory (here 10) and the
//! rest only in its log (a transient queue's own log, opened when it first pages out), read back in order as the queue drains. Whatever is paged
//! out must behave exactly as if it were in memory: order, content, counts, length limits,
//! purge, TTL, requeue, and a restart (which reads only the head back).
//!
//! These tests need their own server configuration (a tiny resident limit and a data
//! directory), so they pass without checking anything against an external broker.

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support::{self as lp, confirm_connection, durable, table};
use pigeon_tests::{unique, within, DataDir, TestBroker};
use std::time::Duration;

/// Messages a queue keeps in memory in these tests.
const RESIDENT: usize = 10;

// ---------------------------------------------------------------------------------------------
// Helpers

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

async fn durable_queue(channel: &Channel, args: FieldTable) -> String {
    let name = unique("pq");
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), durable(), args),
    )
    .await
    .unwrap();
    name
}

/// Message `i`: body `m{i}`, header `i`, persistent unless `transient`.
fn props(i: usize, transient: bool) -> BasicProperties {
    let headers = table(&[("i", AMQPValue::LongLongInt(i as i64))]);
    BasicProperties::default()
        .with_delivery_mode(if transient { 1 } else { 2 })
        .with_headers(headers)
}

/// Publishes messages `range` to `queue` on a confirm channel, all in flight at once, and
/// returns each one's confirmation.
async fn publish_range(
    channel: &Channel,
    queue: &str,
    range: std::ops::Range<usize>,
    transient: impl Fn(usize) -> bool,
) -> Vec<Confirmation> {
    let mut pending = Vec::new();
    for i in range {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props(i, transient(i)),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    let mut out = Vec::new();
    for confirm in pending {
        out.push(within("a publisher confirm", confirm).await.unwrap());
    }
    out
}

async fn publish_persistent(channel: &Channel, queue: &str, range: std::ops::Range<usize>) {
    for c in publish_range(channel, queue, range, |_| false).await {
        assert_eq!(c, Confirmation::Ack(None));
    }
}

fn header_i(props: &BasicProperties) -> Option<i64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(&ShortString::from("i"))? {
        AMQPValue::LongLongInt(i) => Some(*i),
        _ => None,
    }
}

/// Every message left in `queue`, taken with basic.get (auto-ack) until it is empty:
/// (body, header `i`, redelivered).
async fn drain(channel: &Channel, queue: &str) -> Vec<(String, Option<i64>, bool)> {
    let mut out = Vec::new();
    while let Some(m) = within(
        "basic.get",
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push((
            lp::body(&m.delivery),
            header_i(&m.delivery.properties),
            m.delivery.redelivered,
        ));
    }
    out
}

fn bodies(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// A transient queue under a fresh name.
async fn declare_transient(channel: &Channel, options: QueueDeclareOptions) -> String {
    let name = unique("tq");
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), options, FieldTable::default()),
    )
    .await
    .unwrap();
    name
}

mod measurement;
mod order_and_limits;
mod purge_requeue_ttl;
mod transient;
