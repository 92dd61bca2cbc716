//! TTL: part of the `queue_features` tests (helpers in `mod.rs`).

use super::*;

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
