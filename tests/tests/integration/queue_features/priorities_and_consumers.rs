//! Priority queues: part of the `queue_features` tests (helpers in `mod.rs`).

use super::*;

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
