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

// ---------------------------------------------------------------------------------------------
// TTL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_past_the_queue_ttl_is_never_delivered() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-message-ttl", int(50))])).await;
    lp::publish(&channel, "", &queue, b"stale").await;
    wait_for_count(&channel, &queue, 0).await;
    lp::publish(&channel, "", &queue, b"fresh").await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    assert_eq!(lp::next_body(&mut consumer).await, "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shorter_of_message_expiration_and_queue_ttl_applies() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let dead = table(&[("x-dead-letter-exchange", text(&dlx))]);
    let mut long_queue_ttl = dead.clone();
    long_queue_ttl.insert("x-message-ttl".into(), int(600_000));
    let mut short_queue_ttl = dead;
    short_queue_ttl.insert("x-message-ttl".into(), int(20));
    let q_long = new_queue(&channel, long_queue_ttl).await;
    let q_short = new_queue(&channel, short_queue_ttl).await;
    let mut dead = consume_no_ack(&channel, &dlq).await;

    let short_message = BasicProperties::default().with_expiration("20".into());
    lp::publish_with(&channel, "", &q_long, b"own ttl", short_message).await;
    assert_eq!(lp::next_body(&mut dead).await, "own ttl");
    let long_message = BasicProperties::default().with_expiration("600000".into());
    lp::publish_with(&channel, "", &q_short, b"queue ttl", long_message).await;
    assert_eq!(lp::next_body(&mut dead).await, "queue ttl");
    lp::delete_exchange(&channel, &dlx).await;
}

/// A message whose own TTL runs out while an older one without TTL sits at the head is never
/// delivered, and is dead-lettered. Pigeon dead-letters it while it is still behind the head;
/// RabbitMQ's classic queues only once it reaches the head (documented), so against RabbitMQ
/// the test waits for a clock instead: a message published after it to a queue whose TTL is
/// as long, which dead-letters into the same place once that time has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_behind_an_unexpired_head_is_never_delivered_and_is_dead_lettered() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let dead_letters = table(&[("x-dead-letter-exchange", text(&dlx))]);
    let queue = new_queue(&channel, dead_letters.clone()).await;
    let mut clock_args = dead_letters;
    clock_args.insert("x-message-ttl".into(), int(20));
    let clock = new_queue(&channel, clock_args).await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    lp::publish(&channel, "", &queue, b"head").await;
    let short = BasicProperties::default().with_expiration("20".into());
    lp::publish_with(&channel, "", &queue, b"short", short).await;
    lp::publish(&channel, "", &queue, b"tail").await;
    lp::publish(&channel, "", &clock, b"clock").await;
    let mut seen = Vec::new();
    let wanted = if broker.is_external() { 1 } else { 2 };
    while seen.len() < wanted {
        seen.push(lp::next_body(&mut dead).await);
    }
    seen.sort();
    if broker.is_external() {
        assert_eq!(seen, ["clock"]);
    } else {
        assert_eq!(
            seen,
            ["clock", "short"],
            "dead-lettered from behind the head"
        );
        assert_eq!(lp::message_count(&channel, &queue).await, 2);
    }
    let consumer_channel = lp::open_channel(&conn).await;
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    assert_eq!(lp::next_body(&mut consumer).await, "head");
    assert_eq!(
        lp::next_body(&mut consumer).await,
        "tail",
        "the expired message in between is skipped"
    );
    if broker.is_external() {
        assert_eq!(lp::next_body(&mut dead).await, "short");
    }
    lp::delete_exchange(&channel, &dlx).await;
}

/// A requeued message keeps its original expiry: given back after its TTL ran out, it is
/// dead-lettered instead of being delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_message_past_its_ttl_is_dead_lettered_not_redelivered() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let args = table(&[
        ("x-dead-letter-exchange", text(&dlx)),
        ("x-message-ttl", int(50)),
    ]);
    let queue = new_queue(&channel, args.clone()).await;
    let clock = new_queue(&channel, args).await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    lp::publish(&channel, "", &queue, b"held too long").await;
    let d = lp::next_delivery(&mut consumer).await;
    // Published after the held message with the same TTL: once it is dead, so is that TTL.
    lp::publish(&channel, "", &clock, b"clock").await;
    assert_eq!(lp::next_body(&mut dead).await, "clock");
    consumer_channel
        .basic_nack(
            d.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(lp::next_body(&mut dead).await, "held too long");
    lp::publish(&channel, "", &queue, b"marker").await;
    assert_eq!(
        lp::next_body(&mut consumer).await,
        "marker",
        "the expired message was not redelivered"
    );
    lp::delete_exchange(&channel, &dlx).await;
}

/// In a priority queue, a message that expired in a lower priority level is dead-lettered when
/// its TTL runs out, not only once the higher-priority messages ahead of it are gone. Each has
/// its own expiration, the high one's ten times longer, so the order does not hang on timer
/// precision.
/// RabbitMQ 3.10 waits until the low one reaches the head (both then die together, the head
/// first), so against RabbitMQ the test only checks that both die.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_in_a_lower_priority_level_dies_before_younger_higher_ones() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-dead-letter-exchange", text(&dlx)),
            ("x-max-priority", int(5)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let low = BasicProperties::default()
        .with_priority(0)
        .with_expiration("300".into());
    lp::publish_with(&channel, "", &queue, b"low, older", low).await;
    let high = BasicProperties::default()
        .with_priority(5)
        .with_expiration("3000".into());
    lp::publish_with(&channel, "", &queue, b"high, younger", high).await;
    let first = lp::next_body(&mut dead).await;
    if broker.is_external() {
        let second = lp::next_body(&mut dead).await;
        let got = [first.as_str(), second.as_str()];
        assert!(got.contains(&"low, older") && got.contains(&"high, younger"));
    } else {
        assert_eq!(
            first, "low, older",
            "the low one dies when its own TTL runs out"
        );
        assert_eq!(
            lp::message_count(&channel, &queue).await,
            1,
            "the high one, ahead of it, is still there"
        );
        assert_eq!(lp::next_body(&mut dead).await, "high, younger");
    }
    lp::delete_exchange(&channel, &dlx).await;
}

/// RabbitMQ: "A TTL value of 0 causes messages to be expired upon reaching a queue unless they
/// can be delivered to a consumer immediately."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_reaches_a_waiting_consumer_and_expires_otherwise() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlx, dlq) = dead_letter_target(&channel).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-message-ttl", int(0)),
            ("x-dead-letter-exchange", text(&dlx)),
        ]),
    )
    .await;
    let mut dead = consume_no_ack(&channel, &dlq).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let mut consumer = consume_no_ack(&consumer_channel, &queue).await;
    lp::publish(&channel, "", &queue, b"caught").await;
    assert_eq!(lp::next_body(&mut consumer).await, "caught");
    within(
        "basic.cancel-ok",
        consumer_channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    lp::publish(&channel, "", &queue, b"missed").await;
    assert_eq!(lp::next_body(&mut dead).await, "missed");
    lp::delete_exchange(&channel, &dlx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_expires_deletes_a_queue_only_once_it_has_been_unused_that_long() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let declare = |name: String| {
        let channel = channel.clone();
        async move {
            within(
                "queue.declare-ok",
                channel.queue_declare(
                    name.as_str().into(),
                    QueueDeclareOptions::default(),
                    table(&[("x-expires", int(300))]),
                ),
            )
            .await
            .unwrap();
            name
        }
    };
    // `consumed` has a consumer; `idle`, declared after it with the same x-expires, has none.
    let consumed = declare(unique("consumed")).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let consumer = lp::consume_acked(&consumer_channel, &consumed).await;
    let idle = declare(unique("idle")).await;
    assert!(lp::routed(&channel, "", &idle, b"publishing does not count as use").await);
    wait_until_deleted(&channel, &idle).await;
    assert!(
        lp::queue_exists(&conn, &consumed).await,
        "a queue with a consumer is in use"
    );
    within(
        "basic.cancel-ok",
        consumer_channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    wait_until_deleted(&channel, &consumed).await;
    assert!(!lp::queue_exists(&conn, &consumed).await);
}

// ---------------------------------------------------------------------------------------------
// Length limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_drop_head_keeps_the_newest_messages() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-length", int(3))])).await;
    for i in 1..=5 {
        let c = publish_confirmed(&channel, &queue, &i.to_string(), Default::default()).await;
        assert!(c.is_ack(), "drop-head accepts every publish: {c:?}");
    }
    assert_eq!(lp::message_count(&channel, &queue).await, 3);
    assert_eq!(drain(&channel, &queue).await, ["3", "4", "5"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_length_bytes_drop_head_counts_body_bytes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-length-bytes", int(10))])).await;
    for body in ["aaaa", "bbbb", "cccc"] {
        lp::publish(&channel, "", &queue, body.as_bytes()).await;
    }
    assert_eq!(
        lp::message_count(&channel, &queue).await,
        2,
        "12 bytes > 10"
    );
    lp::publish(&channel, "", &queue, b"dd").await;
    assert_eq!(
        lp::message_count(&channel, &queue).await,
        3,
        "exactly 10 bytes fit"
    );
    assert_eq!(drain(&channel, &queue).await, ["bbbb", "cccc", "dd"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_nacks_what_does_not_fit_until_there_is_room() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-max-length", int(2)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    for body in ["1", "2"] {
        assert!(
            publish_confirmed(&channel, &queue, body, Default::default())
                .await
                .is_ack()
        );
    }
    let refused = publish_confirmed(&channel, &queue, "3", Default::default()).await;
    assert!(refused.is_nack(), "over the limit: {refused:?}");
    assert_eq!(lp::message_count(&channel, &queue).await, 2);
    // A delivered (even unacked) message no longer counts against the limit.
    let taken = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(lp::body(&taken.delivery), "1");
    assert!(publish_confirmed(&channel, &queue, "4", Default::default())
        .await
        .is_ack());
    assert_eq!(drain(&channel, &queue).await, ["2", "4"]);
    assert!(
        channel.status().connected(),
        "a nack does not close the channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_applies_to_max_length_bytes_too() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[
            ("x-max-length-bytes", int(5)),
            ("x-overflow", text("reject-publish")),
        ]),
    )
    .await;
    let outcomes: Vec<bool> = {
        let mut v = Vec::new();
        for body in ["abc", "de", "f"] {
            v.push(
                publish_confirmed(&channel, &queue, body, Default::default())
                    .await
                    .is_ack(),
            );
        }
        v
    };
    assert_eq!(outcomes, [true, true, false]);
    assert_eq!(drain(&channel, &queue).await, ["abc", "de"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_queue_arguments_are_refused_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let cases: [(&str, &[(&str, AMQPValue)]); 9] = [
        ("negative ttl", &[("x-message-ttl", int(-1))]),
        ("zero expires", &[("x-expires", int(0))]),
        ("negative max-length", &[("x-max-length", int(-1))]),
        ("unknown overflow", &[("x-overflow", text("drop-tail"))]),
        ("priority above 255", &[("x-max-priority", int(256))]),
        (
            "non-boolean single active consumer",
            &[("x-single-active-consumer", text("yes"))],
        ),
        (
            "non-string dead-letter exchange",
            &[("x-dead-letter-exchange", int(5))],
        ),
        (
            "routing key without exchange",
            &[("x-dead-letter-routing-key", text("k"))],
        ),
        ("ttl as text", &[("x-message-ttl", text("1000"))]),
    ];
    for (what, args) in cases {
        let channel = lp::open_channel(&conn).await;
        let result = within(
            "queue.declare answer",
            channel.queue_declare(
                unique("bad").into(),
                QueueDeclareOptions::exclusive(),
                table(args),
            ),
        )
        .await;
        match result {
            Ok(q) => panic!("{what}: declared {q:?}"),
            Err(e) => assert_eq!(
                lp::reply_code(&e),
                Some(PRECONDITION_FAILED),
                "{what}: {e:?}"
            ),
        }
    }
    // RabbitMQ accepts x-max-priority 0 (one level) and x-max-length 0.
    let channel = lp::open_channel(&conn).await;
    new_queue(&channel, table(&[("x-max-priority", int(0))])).await;
    new_queue(&channel, table(&[("x-max-length", int(0))])).await;
}

// ---------------------------------------------------------------------------------------------
// Priority queues

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_and_fifo_within_a_priority() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-priority", int(5))])).await;
    for (body, priority) in [
        ("none-1", None),
        ("low-1", Some(1)),
        ("high-1", Some(5)),
        ("low-2", Some(1)),
        ("above-max", Some(9)),
        ("high-2", Some(5)),
        ("zero", Some(0)),
        ("mid", Some(3)),
    ] {
        publish_priority(&channel, &queue, body, priority).await;
    }
    assert_eq!(
        drain(&channel, &queue).await,
        [
            "high-1",
            "above-max",
            "high-2",
            "mid",
            "low-1",
            "low-2",
            "none-1",
            "zero"
        ],
        "a priority above x-max-priority counts as the maximum; no priority counts as 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_message_returns_to_its_place_within_its_priority() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-priority", int(5))])).await;
    for (body, priority) in [("h1", 5), ("h2", 5), ("l1", 1)] {
        publish_priority(&channel, &queue, body, Some(priority)).await;
    }
    let first = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(lp::body(&first.delivery), "h1");
    channel
        .basic_nack(
            first.delivery.delivery_tag,
            BasicNackOptions {
                multiple: false,
                requeue: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(drain(&channel, &queue).await, ["h1", "h2", "l1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_with_prefetch_reorder_only_what_is_still_queued() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, table(&[("x-max-priority", int(10))])).await;
    let consumer_channel = lp::open_channel(&conn).await;
    qos(&consumer_channel, 2).await;
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    // The consumer has room for two: those go out in publish order whatever their priority.
    publish_priority(&channel, &queue, "low-1", Some(1)).await;
    publish_priority(&channel, &queue, "low-2", Some(1)).await;
    let a = lp::next_delivery(&mut consumer).await;
    let b = lp::next_delivery(&mut consumer).await;
    assert_eq!(
        (lp::body(&a), lp::body(&b)),
        ("low-1".into(), "low-2".into())
    );
    // Now the consumer is full: the backlog is ordered by priority.
    for (body, priority) in [("low-3", 1), ("mid", 5), ("high", 9), ("mid-2", 5)] {
        publish_priority(&channel, &queue, body, Some(priority)).await;
    }
    assert_eq!(lp::message_count(&channel, &queue).await, 4);
    ack(&consumer_channel, &a).await;
    ack(&consumer_channel, &b).await;
    let mut rest = Vec::new();
    for _ in 0..4 {
        let d = lp::next_delivery(&mut consumer).await;
        rest.push(lp::body(&d));
        ack(&consumer_channel, &d).await;
    }
    assert_eq!(rest, ["high", "mid", "mid-2", "low-3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_without_x_max_priority_ignores_message_priority() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, FieldTable::default()).await;
    for (body, priority) in [("a", 1), ("b", 9), ("c", 5)] {
        publish_priority(&channel, &queue, body, Some(priority)).await;
    }
    assert_eq!(drain(&channel, &queue).await, ["a", "b", "c"]);
}

// ---------------------------------------------------------------------------------------------
// Consumers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_consumer_gets_messages_while_it_has_credit() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, FieldTable::default()).await;
    let low_channel = lp::open_channel(&conn).await;
    qos(&low_channel, 10).await;
    let mut low = consume_with(
        &low_channel,
        &queue,
        BasicConsumeOptions::default(),
        table(&[("x-priority", int(1))]),
    )
    .await
    .unwrap();
    let high_channel = lp::open_channel(&conn).await;
    qos(&high_channel, 2).await;
    let mut high = consume_with(
        &high_channel,
        &queue,
        BasicConsumeOptions::default(),
        table(&[("x-priority", int(10))]),
    )
    .await
    .unwrap();
    for i in 0..5 {
        lp::publish(&channel, "", &queue, format!("m{i}").as_bytes()).await;
    }
    let h0 = lp::next_delivery(&mut high).await;
    let h1 = lp::next_delivery(&mut high).await;
    assert_eq!((lp::body(&h0), lp::body(&h1)), ("m0".into(), "m1".into()));
    let mut to_low = Vec::new();
    for _ in 0..3 {
        to_low.push(lp::next_body(&mut low).await);
    }
    assert_eq!(
        to_low,
        ["m2", "m3", "m4"],
        "only what the high one has no room for"
    );
    // Credit back: the high-priority consumer is served first again.
    ack(&high_channel, &h0).await;
    lp::publish(&channel, "", &queue, b"m5").await;
    assert_eq!(lp::next_body(&mut high).await, "m5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_delivers_to_one_consumer_until_it_cancels() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let first_channel = lp::open_channel(&conn).await;
    let mut first = consume_no_ack(&first_channel, &queue).await;
    let second_channel = lp::open_channel(&conn).await;
    let mut second = consume_no_ack(&second_channel, &queue).await;
    assert_eq!(
        lp::declare(&channel, &queue, QueueDeclareOptions::default().passive())
            .await
            .consumer_count(),
        2
    );
    for i in 0..4 {
        lp::publish(&channel, "", &queue, format!("m{i}").as_bytes()).await;
    }
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(lp::next_body(&mut first).await);
    }
    assert_eq!(got, ["m0", "m1", "m2", "m3"]);
    within(
        "basic.cancel-ok",
        first_channel.basic_cancel(first.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    lp::publish(&channel, "", &queue, b"m4").await;
    assert_eq!(
        lp::next_body(&mut second).await,
        "m4",
        "the second consumer received nothing while the first was active"
    );
}

/// RabbitMQ 3.10 keeps the first registered consumer active whatever the consumers'
/// `x-priority` (3.12 lets a higher-priority consumer take over, but only once the active one
/// has no unacknowledged messages left): never two active consumers at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_is_not_taken_over_by_a_later_higher_priority_consumer() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let active_channel = lp::open_channel(&conn).await;
    qos(&active_channel, 1).await;
    let mut active = lp::consume_acked(&active_channel, &queue).await;
    lp::publish(&channel, "", &queue, b"m0").await;
    let m0 = lp::next_delivery(&mut active).await;
    let eager_channel = lp::open_channel(&conn).await;
    let _eager = consume_with(
        &eager_channel,
        &queue,
        BasicConsumeOptions::default(),
        table(&[("x-priority", int(10))]),
    )
    .await
    .unwrap();
    lp::publish(&channel, "", &queue, b"m1").await;
    assert_eq!(
        lp::message_count(&channel, &queue).await,
        1,
        "m1 waits for the active consumer, which still holds m0"
    );
    ack(&active_channel, &m0).await;
    assert_eq!(lp::next_body(&mut active).await, "m1");
}

/// When the active consumer's channel closes, its unacknowledged messages go back to the queue
/// before the next consumer takes over: it sees them first, in their original order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_fails_over_in_order_when_the_active_channel_closes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(
        &channel,
        table(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let active_channel = lp::open_channel(&conn).await;
    qos(&active_channel, 2).await;
    let mut active = lp::consume_acked(&active_channel, &queue).await;
    let standby_channel = lp::open_channel(&conn).await;
    let mut standby = lp::consume_acked(&standby_channel, &queue).await;
    for i in 0..5 {
        lp::publish(&channel, "", &queue, format!("m{i}").as_bytes()).await;
    }
    assert_eq!(lp::next_body(&mut active).await, "m0");
    assert_eq!(lp::next_body(&mut active).await, "m1");
    assert_eq!(lp::message_count(&channel, &queue).await, 3);
    within("channel.close-ok", active_channel.close(200, "bye".into()))
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = lp::next_delivery(&mut standby).await;
        got.push((lp::body(&d), d.redelivered));
    }
    assert_eq!(
        got,
        [
            ("m0".to_string(), true),
            ("m1".to_string(), true),
            ("m2".to_string(), false),
            ("m3".to_string(), false),
            ("m4".to_string(), false),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_keeps_other_consumers_out_until_it_cancels() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = new_queue(&channel, FieldTable::default()).await;
    let owner_channel = lp::open_channel(&conn).await;
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let owner = consume_with(&owner_channel, &queue, exclusive, FieldTable::default())
        .await
        .unwrap();
    let other = lp::open_channel(&conn).await;
    let refused = consume_with(&other, &queue, Default::default(), FieldTable::default()).await;
    assert_code(refused, ACCESS_REFUSED);
    within(
        "basic.cancel-ok",
        owner_channel.basic_cancel(owner.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    let other = lp::open_channel(&conn).await;
    let mut next = lp::consume_acked(&other, &queue).await;
    lp::publish(&channel, "", &queue, b"after").await;
    assert_eq!(lp::next_body(&mut next).await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consume_on_a_queue_that_has_a_consumer_is_refused() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = new_queue(&channel, FieldTable::default()).await;
    let _existing = lp::consume_acked(&channel, &queue).await;
    let other = lp::open_channel(&conn).await;
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    assert_code(
        consume_with(&other, &queue, exclusive, FieldTable::default()).await,
        ACCESS_REFUSED,
    );
}

/// RabbitMQ (quorum queues): a message returned more than `x-delivery-limit` times is dropped
/// (or dead-lettered); each redelivery carries `x-delivery-count`, the number of earlier returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_carry_x_delivery_count_until_the_delivery_limit_drops_the_message() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = delivery_limited_queue(&broker, &channel, 2).await;
    lp::publish(&channel, "", &queue, b"poison").await;
    let work_channel = lp::open_channel(&conn).await;
    let mut work = lp::consume_acked(&work_channel, &queue).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let d = lp::next_delivery(&mut work).await;
        assert_eq!(lp::body(&d), "poison");
        counts.push((d.redelivered, delivery_count(&d)));
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
    assert_eq!(
        counts,
        [
            (false, None),
            (true, Some(AMQPValue::LongLongInt(1))),
            (true, Some(AMQPValue::LongLongInt(2))),
        ]
    );
    // Returned a third time: over the limit, so the next delivery is the marker.
    lp::publish(&channel, "", &queue, b"marker").await;
    let d = lp::next_delivery(&mut work).await;
    assert_eq!((lp::body(&d), delivery_count(&d)), ("marker".into(), None));
    ack(&work_channel, &d).await;
    lp::delete_queue(&channel, &queue).await;
}
