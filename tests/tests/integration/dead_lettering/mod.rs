//! Dead-lettering (`x-dead-letter-exchange`, `x-dead-letter-routing-key`): messages rejected
//! without requeue, expired, dropped or refused by a length limit, or over the delivery limit are
//! republished to the dead-letter exchange with the `x-death` header and the `x-first-death-*`
//! headers exactly as RabbitMQ writes them; dead-letter cycles without a rejection end.

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Consumer, ExchangeKind};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::lapin_support::{int, table, text};
use pigeon_tests::{unique, within, TestBroker};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Helpers

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Declares an exclusive queue `name` with `args`.
async fn queue(channel: &Channel, name: &str, args: FieldTable) {
    within(
        "queue.declare-ok",
        channel.queue_declare(name.into(), QueueDeclareOptions::exclusive(), args),
    )
    .await
    .unwrap();
}

/// A fresh exclusive queue with `args`; returns its name.
async fn new_queue(channel: &Channel, prefix: &str, args: FieldTable) -> String {
    let name = unique(prefix);
    queue(channel, &name, args).await;
    name
}

/// An exclusive queue bound to a fresh fanout exchange: the dead-letter exchange and the queue
/// its dead letters land in. The test deletes the exchange.
async fn dead_letter_target(channel: &Channel) -> (String, String) {
    let exchange = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let dlq = new_queue(channel, "dlq", FieldTable::default()).await;
    lp::bind(channel, &dlq, &exchange, "", FieldTable::default()).await;
    (exchange, dlq)
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

async fn nack(channel: &Channel, tag: u64) {
    channel
        .basic_nack(
            tag,
            BasicNackOptions {
                multiple: false,
                requeue: false,
            },
        )
        .await
        .unwrap();
}

fn headers(d: &Delivery) -> FieldTable {
    d.properties.headers().clone().unwrap_or_default()
}

fn long_str(v: Option<&AMQPValue>) -> Option<String> {
    match v {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

/// The `x-death` entries of a delivery, most recent first.
fn x_death(d: &Delivery) -> Vec<FieldTable> {
    match headers(d).inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|v| match v {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death holds a non-table {other:?}"),
            })
            .collect(),
        other => panic!("expected an x-death array, got {other:?}"),
    }
}

/// What one `x-death` entry must say.
struct Death<'a> {
    count: i64,
    reason: &'a str,
    queue: &'a str,
    exchange: &'a str,
    routing_keys: &'a [&'a str],
    original_expiration: Option<&'a str>,
}

/// Asserts every field of an `x-death` entry, with RabbitMQ's field types: `count` a long
/// (signed 64-bit), `time` a timestamp within `[from, to]`, `routing-keys` an array of long
/// strings, and no field besides these (and `original-expiration` for per-message TTLs).
fn assert_death(entry: &FieldTable, want: &Death<'_>, (from, to): (u64, u64)) {
    let fields = entry.inner();
    let mut keys: BTreeSet<&str> = fields.keys().map(|k| k.as_str()).collect();
    let mut expected: BTreeSet<&str> = [
        "count",
        "reason",
        "queue",
        "time",
        "exchange",
        "routing-keys",
    ]
    .into();
    if want.original_expiration.is_some() {
        expected.insert("original-expiration");
    }
    assert_eq!(keys, expected, "x-death entry fields: {entry:?}");
    keys.clear();
    assert_eq!(
        fields.get("count"),
        Some(&AMQPValue::LongLongInt(want.count)),
        "count is a long: {entry:?}"
    );
    assert_eq!(long_str(fields.get("reason")).as_deref(), Some(want.reason));
    assert_eq!(long_str(fields.get("queue")).as_deref(), Some(want.queue));
    assert_eq!(
        long_str(fields.get("exchange")).as_deref(),
        Some(want.exchange)
    );
    let Some(AMQPValue::FieldArray(keys)) = fields.get("routing-keys") else {
        panic!("routing-keys is an array: {entry:?}");
    };
    let keys: Vec<Option<String>> = keys.as_slice().iter().map(|k| long_str(Some(k))).collect();
    let want_keys: Vec<Option<String>> = want
        .routing_keys
        .iter()
        .map(|k| Some(k.to_string()))
        .collect();
    assert_eq!(keys, want_keys, "routing-keys");
    match fields.get("time") {
        Some(AMQPValue::Timestamp(t)) => {
            assert!((from..=to).contains(t), "time {t} outside [{from}, {to}]")
        }
        other => panic!("time is a timestamp, got {other:?}"),
    }
    assert_eq!(
        long_str(fields.get("original-expiration")).as_deref(),
        want.original_expiration
    );
}

/// Asserts the `x-first-death-reason`, `-queue` and `-exchange` headers.
fn assert_first_death(d: &Delivery, reason: &str, queue: &str, exchange: &str) {
    let h = headers(d);
    let h = h.inner();
    assert_eq!(
        long_str(h.get("x-first-death-reason")).as_deref(),
        Some(reason)
    );
    assert_eq!(
        long_str(h.get("x-first-death-queue")).as_deref(),
        Some(queue)
    );
    assert_eq!(
        long_str(h.get("x-first-death-exchange")).as_deref(),
        Some(exchange)
    );
}

/// Publishes on a confirm channel and returns the broker's confirmation.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    key: &str,
    body: &str,
    properties: BasicProperties,
) -> Confirmation {
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
    within("the publisher confirm", confirm).await.unwrap()
}

mod cycles;
mod deaths;
mod limits;
