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

// ---------------------------------------------------------------------------------------------
// Why a message dies, and what x-death says about it

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_without_requeue_dead_letters_with_an_x_death_entry_as_rabbitmq_writes_it() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[("x-dead-letter-exchange", text(&dlx))]),
    )
    .await;
    let mut custom = FieldTable::default();
    custom.insert("app".into(), text("kept"));
    let properties = BasicProperties::default()
        .with_correlation_id("c-1".into())
        .with_headers(custom);
    let from = now_secs();
    lp::publish_with(&channel, "", &src, b"doomed", properties).await;

    let mut work = lp::consume_acked(&channel, &src).await;
    let delivery = lp::next_delivery(&mut work).await;
    nack(&channel, delivery.delivery_tag).await;

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(lp::body(&d), "doomed");
    assert_eq!(
        d.exchange.as_str(),
        dlx,
        "republished to the dead-letter exchange"
    );
    assert_eq!(
        d.routing_key.as_str(),
        src,
        "without x-dead-letter-routing-key the original routing key is kept"
    );
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.correlation_id().as_ref().unwrap().as_str(),
        "c-1"
    );
    assert_eq!(
        long_str(headers(&d).inner().get("app")).as_deref(),
        Some("kept")
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "rejected", &src, "");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_routing_key_replaces_the_key_but_x_death_keeps_the_original_ones() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let published_to = lp::temp_exchange(&channel, ExchangeKind::Topic).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let dlq = new_queue(&channel, "dlq", FieldTable::default()).await;
    lp::bind(&channel, &dlq, &dlx, "dead.key", FieldTable::default()).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-dead-letter-routing-key", text("dead.key")),
        ]),
    )
    .await;
    lp::bind(
        &channel,
        &src,
        &published_to,
        "orders.#",
        FieldTable::default(),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, &published_to, "orders.eu.new", b"order").await;

    let mut work = lp::consume_acked(&channel, &src).await;
    let delivery = lp::next_delivery(&mut work).await;
    channel
        .basic_reject(delivery.delivery_tag, BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(
        (d.exchange.as_str(), d.routing_key.as_str()),
        (dlx.as_str(), "dead.key")
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &src,
            exchange: &published_to,
            routing_keys: &["orders.eu.new"],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "rejected", &src, &published_to);
    lp::delete_exchange(&channel, &published_to).await;
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_its_own_expiration_dies_expired_and_keeps_it_as_original_expiration() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[("x-dead-letter-exchange", text(&dlx))]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    let properties = BasicProperties::default().with_expiration("30".into());
    lp::publish_with(&channel, "", &src, b"short-lived", properties).await;

    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(lp::body(&d), "short-lived");
    assert_eq!(
        d.properties.expiration(),
        &None,
        "the dead letter no longer carries the expiration that killed it"
    );
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "expired",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: Some("30"),
        },
        (from, to),
    );
    assert_first_death(&d, "expired", &src, "");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_the_queue_ttl_dies_expired_without_original_expiration() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-message-ttl", int(30)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    for body in ["a", "b"] {
        lp::publish(&channel, "", &src, body.as_bytes()).await;
    }
    let first = lp::next_delivery(&mut dead).await;
    let second = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    assert_eq!(
        (lp::body(&first), lp::body(&second)),
        ("a".into(), "b".into())
    );
    for d in [&first, &second] {
        let deaths = x_death(d);
        assert_eq!(deaths.len(), 1);
        assert_death(
            &deaths[0],
            &Death {
                count: 1,
                reason: "expired",
                queue: &src,
                exchange: "",
                routing_keys: &[&src],
                original_expiration: None,
            },
            (from, to),
        );
    }
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_overflow_dead_letters_the_oldest_with_reason_maxlen() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-max-length", int(2)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    for body in ["1", "2", "3", "4"] {
        lp::publish(&channel, "", &src, body.as_bytes()).await;
    }
    let mut dropped = Vec::new();
    for _ in 0..2 {
        let d = lp::next_delivery(&mut dead).await;
        let deaths = x_death(&d);
        assert_eq!(deaths.len(), 1);
        assert_death(
            &deaths[0],
            &Death {
                count: 1,
                reason: "maxlen",
                queue: &src,
                exchange: "",
                routing_keys: &[&src],
                original_expiration: None,
            },
            (from, now_secs()),
        );
        assert_first_death(&d, "maxlen", &src, "");
        dropped.push(lp::body(&d));
    }
    assert_eq!(dropped, ["1", "2"], "the oldest make room");
    let kept: Vec<String> = [lp::get(&channel, &src).await, lp::get(&channel, &src).await]
        .into_iter()
        .map(|m| lp::body(&m.unwrap().delivery))
        .collect();
    assert_eq!(kept, ["3", "4"]);
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_dlx_nacks_the_refused_message_and_dead_letters_it() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = new_queue(
        &channel,
        "src",
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-max-length", int(1)),
            ("x-overflow", text("reject-publish-dlx")),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let from = now_secs();
    let first = publish_confirmed(&channel, "", &src, "fits", BasicProperties::default()).await;
    assert!(first.is_ack(), "{first:?}");
    let second = publish_confirmed(&channel, "", &src, "refused", BasicProperties::default()).await;
    assert!(second.is_nack(), "over the limit: nacked, got {second:?}");

    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "refused");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "maxlen",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    assert_eq!(lp::message_count(&channel, &src).await, 1);
    let kept = lp::get(&channel, &src).await.unwrap();
    assert_eq!(lp::body(&kept.delivery), "fits");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_death_is_prepended_and_the_first_death_headers_keep_the_first() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx2, dlq) = dead_letter_target(&channel).await;
    let dlx1 = lp::temp_exchange(&channel, ExchangeKind::Fanout).await;
    // q1 lets messages expire into q2; q2's consumer rejects them into the final queue.
    let q2 = new_queue(
        &channel,
        "q2",
        table(&[("x-dead-letter-exchange", text(&dlx2))]),
    )
    .await;
    lp::bind(&channel, &q2, &dlx1, "", FieldTable::default()).await;
    let q1 = new_queue(
        &channel,
        "q1",
        table(&[
            ("x-dead-letter-exchange", text(&dlx1)),
            ("x-message-ttl", int(20)),
        ]),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, "", &q1, b"twice dead").await;
    let mut work = lp::consume_acked(&channel, &q2).await;
    let in_q2 = lp::next_delivery(&mut work).await;
    assert_eq!(in_q2.exchange.as_str(), dlx1);
    nack(&channel, in_q2.delivery_tag).await;

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    let to = now_secs();
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 2, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "rejected",
            queue: &q2,
            exchange: &dlx1,
            routing_keys: &[&q1],
            original_expiration: None,
        },
        (from, to),
    );
    assert_death(
        &deaths[1],
        &Death {
            count: 1,
            reason: "expired",
            queue: &q1,
            exchange: "",
            routing_keys: &[&q1],
            original_expiration: None,
        },
        (from, to),
    );
    assert_first_death(&d, "expired", &q1, "");
    lp::delete_exchange(&channel, &dlx1).await;
    lp::delete_exchange(&channel, &dlx2).await;
}

/// A queue whose dead letters come straight back to it through the default exchange: each
/// rejection bumps the count of the one (queue, reason) entry, which moves to the front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dying_again_in_the_same_queue_for_the_same_reason_increments_that_entrys_count() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let name = unique("boomerang");
    queue(
        &channel,
        &name,
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&name)),
        ]),
    )
    .await;
    let from = now_secs();
    lp::publish(&channel, "", &name, b"again").await;
    let mut work = lp::consume_acked(&channel, &name).await;
    let mut seen = Vec::new();
    for round in 1..=3i64 {
        let d = lp::next_delivery(&mut work).await;
        assert!(
            !d.redelivered,
            "a dead letter is a new message, not a redelivery"
        );
        let count = if round == 1 { None } else { Some(x_death(&d)) };
        seen.push(count);
        if round < 3 {
            nack(&channel, d.delivery_tag).await;
        } else {
            channel
                .basic_ack(d.delivery_tag, BasicAckOptions::default())
                .await
                .unwrap();
            assert_first_death(&d, "rejected", &name, "");
        }
    }
    let to = now_secs();
    assert!(seen[0].is_none());
    for (round, deaths) in seen.iter().skip(1).enumerate() {
        let deaths = deaths.as_ref().unwrap();
        assert_eq!(deaths.len(), 1, "one entry per (queue, reason): {deaths:?}");
        assert_death(
            &deaths[0],
            &Death {
                count: round as i64 + 1,
                reason: "rejected",
                queue: &name,
                exchange: "",
                routing_keys: &[&name],
                original_expiration: None,
            },
            (from, to),
        );
    }
}

/// RabbitMQ updates an existing (queue, reason) entry by incrementing its count only: the
/// exchange, routing keys and time stay those of the first such death.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremented_x_death_entry_keeps_the_exchange_and_routing_keys_of_its_first_death() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let dlx = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let name = unique("again");
    queue(
        &channel,
        &name,
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-dead-letter-routing-key", text("retry")),
        ]),
    )
    .await;
    lp::bind(&channel, &name, &dlx, "retry", FieldTable::default()).await;
    let from = now_secs();
    lp::publish(&channel, "", &name, b"m").await;
    let mut work = lp::consume_acked(&channel, &name).await;
    let first = lp::next_delivery(&mut work).await;
    nack(&channel, first.delivery_tag).await;
    let second = lp::next_delivery(&mut work).await;
    assert_eq!(
        (second.exchange.as_str(), second.routing_key.as_str()),
        (dlx.as_str(), "retry")
    );
    nack(&channel, second.delivery_tag).await;
    let third = lp::next_delivery(&mut work).await;
    channel
        .basic_ack(third.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let deaths = x_death(&third);
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_death(
        &deaths[0],
        &Death {
            count: 2,
            reason: "rejected",
            queue: &name,
            exchange: "",
            routing_keys: &[&name],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    lp::delete_exchange(&channel, &dlx).await;
}

// ---------------------------------------------------------------------------------------------
// Cycles

/// Two queues that let messages expire into each other, both also dead-lettering into an
/// observer queue. Returns (q1, q2, observer, exchanges to delete).
async fn expiry_cycle(channel: &Channel, ttl: i32) -> (String, String, String, [String; 2]) {
    let x1 = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let x2 = lp::temp_exchange(channel, ExchangeKind::Fanout).await;
    let observer = new_queue(channel, "observer", FieldTable::default()).await;
    let q1 = new_queue(
        channel,
        "q1",
        table(&[
            ("x-dead-letter-exchange", text(&x1)),
            ("x-message-ttl", int(ttl)),
        ]),
    )
    .await;
    let q2 = new_queue(
        channel,
        "q2",
        table(&[
            ("x-dead-letter-exchange", text(&x2)),
            ("x-message-ttl", int(ttl)),
        ]),
    )
    .await;
    lp::bind(channel, &q2, &x1, "", FieldTable::default()).await;
    lp::bind(channel, &observer, &x1, "", FieldTable::default()).await;
    lp::bind(channel, &q1, &x2, "", FieldTable::default()).await;
    lp::bind(channel, &observer, &x2, "", FieldTable::default()).await;
    (q1, q2, observer, [x1, x2])
}

fn death_queues(d: &Delivery) -> Vec<String> {
    x_death(d)
        .iter()
        .map(|t| long_str(t.inner().get("queue")).unwrap())
        .collect()
}

/// Waits on the observer until the marker arrives having died in both queues, and returns the
/// bodies and death histories seen until then. Had the cycle gone on, `looping` would have died
/// in q1 a second time one TTL after it re-entered q1, which is before the marker (published
/// after that moment) could die twice: a looping message shows up before the marker's end.
async fn observe_until_marker_died_twice(observer: &mut Consumer) -> Vec<(String, Vec<String>)> {
    let mut seen = Vec::new();
    loop {
        let d = lp::next_delivery(observer).await;
        let entry = (lp::body(&d), death_queues(&d));
        let done = entry.0 == "marker" && entry.1.len() == 2;
        seen.push(entry);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_cycle_between_two_queues_is_broken_by_dropping_the_message() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (q1, q2, observer, exchanges) = expiry_cycle(&channel, 300).await;
    let mut watch = consume_no_ack(&channel, &observer).await;
    lp::publish(&channel, "", &q1, b"looping").await;
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q1.clone()])
    );
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q2.clone(), q1.clone()])
    );
    // Back to q1 would close the cycle q1 -> q2 -> q1 without a rejection: RabbitMQ drops it.
    lp::publish(&channel, "", &q1, b"marker").await;
    let seen = observe_until_marker_died_twice(&mut watch).await;
    assert_eq!(
        seen,
        [
            ("marker".to_string(), vec![q1.clone()]),
            ("marker".to_string(), vec![q2.clone(), q1.clone()]),
        ],
        "the looping message must not die again"
    );
    assert_eq!(lp::message_count(&channel, &q1).await, 0);
    for x in exchanges {
        lp::delete_exchange(&channel, &x).await;
    }
}

/// RabbitMQ looks for a rejection only in the part of the history since the message last died
/// in the queue it is about to re-enter (`rabbit_dead_letter:is_cycle/2`): a rejection before
/// the cycle began does not make the cycle safe.
///
/// Pigeon only: RabbitMQ 3.10 reverses the older x-death entries whenever the array already
/// holds two or more (`group_by_queue_and_reason/1` folds into a list by prepending), contrary
/// to its documented most-recent-first order; here that puts the rejection in front of q1's
/// entry, so RabbitMQ 3.10 itself loops this message forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_cycle_is_broken_even_after_an_earlier_rejection() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        println!("skipped against an external broker: RabbitMQ 3.10 reorders x-death here");
        return;
    }
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (q1, q2, observer, exchanges) = expiry_cycle(&channel, 300).await;
    let q0 = new_queue(
        &channel,
        "q0",
        table(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&q1)),
        ]),
    )
    .await;
    let mut watch = consume_no_ack(&channel, &observer).await;
    lp::publish(&channel, "", &q0, b"looping").await;
    let mut work = lp::consume_acked(&channel, &q0).await;
    let d = lp::next_delivery(&mut work).await;
    nack(&channel, d.delivery_tag).await;
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q1.clone(), q0.clone()])
    );
    let d = lp::next_delivery(&mut watch).await;
    assert_eq!(
        (lp::body(&d), death_queues(&d)),
        ("looping".into(), vec![q2.clone(), q1.clone(), q0.clone()])
    );
    lp::publish(&channel, "", &q1, b"marker").await;
    let seen = observe_until_marker_died_twice(&mut watch).await;
    assert_eq!(
        seen,
        [
            ("marker".to_string(), vec![q1.clone()]),
            ("marker".to_string(), vec![q2.clone(), q1.clone()]),
        ],
        "the looping message must not die again"
    );
    for x in exchanges {
        lp::delete_exchange(&channel, &x).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Delivery limit (RabbitMQ: quorum queues)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_returned_more_often_than_the_delivery_limit_dies_with_reason_delivery_limit() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let src = unique("limited");
    within(
        "queue.declare-ok",
        channel.queue_declare(
            src.as_str().into(),
            QueueDeclareOptions::durable(),
            table(
                &[
                    lp::delivery_limit(&broker, 1),
                    vec![("x-dead-letter-exchange", text(&dlx))],
                ]
                .concat(),
            ),
        ),
    )
    .await
    .unwrap();
    let from = now_secs();
    lp::publish(&channel, "", &src, b"poison").await;
    let work_channel = lp::open_channel(&conn).await;
    let mut work = lp::consume_acked(&work_channel, &src).await;
    for _ in 0..2 {
        let d = lp::next_delivery(&mut work).await;
        work_channel
            .basic_nack(
                d.delivery_tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .unwrap();
    }
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let d = lp::next_delivery(&mut dead).await;
    assert_eq!(lp::body(&d), "poison");
    let deaths = x_death(&d);
    assert_eq!(deaths.len(), 1);
    assert_death(
        &deaths[0],
        &Death {
            count: 1,
            reason: "delivery_limit",
            queue: &src,
            exchange: "",
            routing_keys: &[&src],
            original_expiration: None,
        },
        (from, now_secs()),
    );
    assert_first_death(&d, "delivery_limit", &src, "");
    lp::delete_queue(&channel, &src).await;
    lp::delete_exchange(&channel, &dlx).await;
}

// ---------------------------------------------------------------------------------------------
// Under concurrent consumers

/// Three consumers on their own connections work through a queue whose messages partly carry a
/// 1 ms TTL; each consumer rejects every third message. Every message ends exactly one way:
/// acked once, or delivered once and dead-lettered as rejected, or never delivered and
/// dead-lettered as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_and_rejections_under_concurrent_consumers_account_for_every_message_once() {
    const N: usize = 150;
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let work = unique("work");
    within(
        "queue.declare-ok",
        channel.queue_declare(
            work.as_str().into(),
            QueueDeclareOptions::default(),
            table(&[("x-dead-letter-exchange", text(&dlx))]),
        ),
    )
    .await
    .unwrap();

    #[derive(Debug)]
    enum Event {
        Delivered(String),
        Acked(String),
    }
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let mut workers = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..3 {
        let c = lp::connect(&broker).await;
        let ch = lp::open_channel(&c).await;
        ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
        let mut consumer = lp::consume_acked(&ch, &work).await;
        let events = events.clone();
        workers.push(tokio::spawn(async move {
            while let Some(Ok(d)) = consumer.next().await {
                let body = lp::body(&d);
                let _ = events.send(Event::Delivered(body.clone()));
                tokio::time::sleep(Duration::from_millis(2)).await; // the work
                let i: usize = body[1..].parse().unwrap();
                if i % 3 == 1 {
                    nack(&ch, d.delivery_tag).await;
                } else {
                    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await
                        .unwrap();
                    let _ = events.send(Event::Acked(body));
                }
            }
        }));
        connections.push(c);
    }
    drop(events);

    let mut dead = consume_no_ack(&channel, &dlq).await;
    let mut short_lived = BTreeSet::new();
    for i in 0..N {
        let body = format!("m{i}");
        let properties = if i % 2 == 1 {
            short_lived.insert(body.clone());
            BasicProperties::default().with_expiration("1".into())
        } else {
            BasicProperties::default()
        };
        let confirmation = publish_confirmed(&channel, "", &work, &body, properties).await;
        assert!(confirmation.is_ack());
    }

    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut acked: BTreeMap<String, usize> = BTreeMap::new();
    let mut died: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let settled = |acked: &BTreeMap<String, usize>, died: &BTreeMap<String, Vec<String>>| {
        acked.values().sum::<usize>() + died.values().map(Vec::len).sum::<usize>()
    };
    while settled(&acked, &died) < N {
        tokio::select! {
            event = seen.recv() => match event.expect("a worker stopped") {
                Event::Delivered(b) => *delivered.entry(b).or_default() += 1,
                Event::Acked(b) => *acked.entry(b).or_default() += 1,
            },
            d = within("the next ack or dead letter", lp::next_delivery(&mut dead)) => {
                let deaths = x_death(&d);
                assert_eq!(deaths.len(), 1);
                let reason = long_str(deaths[0].inner().get("reason")).unwrap();
                died.entry(lp::body(&d)).or_default().push(reason);
            }
        }
    }
    // A delivery is reported before its nack, but may be read after the dead letter.
    while let Ok(event) = seen.try_recv() {
        match event {
            Event::Delivered(b) => *delivered.entry(b).or_default() += 1,
            Event::Acked(b) => *acked.entry(b).or_default() += 1,
        }
    }

    let mut expired = 0;
    let mut rejected = 0;
    for i in 0..N {
        let body = format!("m{i}");
        let times_delivered = delivered.get(&body).copied().unwrap_or(0);
        let times_acked = acked.get(&body).copied().unwrap_or(0);
        let deaths = died.get(&body).cloned().unwrap_or_default();
        match (times_delivered, times_acked, deaths.as_slice()) {
            (1, 1, []) => assert_ne!(i % 3, 1, "{body} should have been rejected"),
            (1, 0, [reason]) if reason == "rejected" => {
                assert_eq!(i % 3, 1, "{body} was not rejected by its consumer");
                rejected += 1;
            }
            (0, 0, [reason]) if reason == "expired" => {
                assert!(short_lived.contains(&body), "{body} had no TTL");
                expired += 1;
            }
            other => panic!("{body}: delivered, acked, died = {other:?}"),
        }
    }
    assert!(expired > 0, "the backlog let some 1 ms messages expire");
    assert!(rejected > 0);
    for w in workers {
        w.abort();
    }
    drop(connections);
    lp::delete_queue(&channel, &work).await;
    lp::delete_exchange(&channel, &dlx).await;
}
