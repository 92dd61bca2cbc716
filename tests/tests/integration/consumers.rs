//! Getting messages out: consumers (tags, no-ack, exclusivity, cancel from either side,
//! round-robin), basic.get, and basic.return for mandatory messages (AMQP 0-9-1 class `basic`).
//! Acknowledgements, prefetch and redelivery are in `acks.rs`.

use lapin::options::{BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, ExchangeKind};
use pigeon_tests::lapin_support::{self as lp, assert_code};
use pigeon_tests::reply::{ACCESS_REFUSED, NO_ROUTE};
use pigeon_tests::{unique, within, TestBroker};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_message_with_no_route_is_returned_312_and_others_are_dropped() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let exchange = lp::temp_exchange(&channel, ExchangeKind::Direct).await;

    let confirmation = lp::publish_mandatory(
        &channel,
        &exchange,
        "nowhere",
        b"back to me",
        Default::default(),
    )
    .await;
    let Confirmation::Ack(Some(returned)) = confirmation else {
        panic!("expected basic.return then basic.ack, got {confirmation:?}");
    };
    assert_eq!(returned.reply_code, NO_ROUTE);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), exchange);
    assert_eq!(returned.delivery.routing_key.as_str(), "nowhere");
    assert_eq!(returned.delivery.data, b"back to me");

    // Without the mandatory flag an unroutable message is acked and silently dropped.
    let confirm = channel
        .basic_publish(
            exchange.as_str().into(),
            "nowhere".into(),
            Default::default(),
            b"gone",
            Default::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        within("the confirm", confirm).await.unwrap(),
        Confirmation::Ack(None)
    );
    lp::delete_exchange(&channel, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_carries_routing_details_and_properties_unchanged() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let exchange = lp::temp_exchange(&channel, ExchangeKind::Topic).await;
    let queue = lp::exclusive_queue(&channel).await;
    lp::bind(
        &channel,
        &queue,
        &exchange,
        "orders.*",
        FieldTable::default(),
    )
    .await;
    let mut headers = FieldTable::default();
    headers.insert("trace".into(), AMQPValue::LongString("abc".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("corr-1".into())
        .with_reply_to("replies".into())
        .with_message_id("m-1".into())
        .with_delivery_mode(2)
        .with_priority(4)
        .with_timestamp(1_700_000_000)
        .with_headers(headers);
    lp::publish_with(&channel, &exchange, "orders.new", b"{}", properties.clone()).await;

    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let delivery = lp::next_delivery(&mut consumer).await;
    assert_eq!(delivery.exchange.as_str(), exchange);
    assert_eq!(delivery.routing_key.as_str(), "orders.new");
    assert!(!delivery.redelivered);
    assert_eq!(
        delivery.delivery_tag, 1,
        "delivery tags start at 1 on each channel"
    );
    assert_eq!(delivery.properties, properties);
    lp::delete_exchange(&channel, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_generates_distinct_amq_ctag_consumer_tags() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    let first = lp::consume_acked(&channel, &queue).await;
    let second = lp::consume_acked(&channel, &queue).await;
    assert!(
        first.tag().as_str().starts_with("amq.ctag-"),
        "{}",
        first.tag()
    );
    assert!(second.tag().as_str().starts_with("amq.ctag-"));
    assert_ne!(first.tag(), second.tag());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_consumer_gets_messages_that_never_come_back() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = lp::consume(&consumer_channel, &queue, no_ack).await;
    lp::publish(&channel, "", &queue, b"one").await;
    lp::publish(&channel, "", &queue, b"two").await;
    assert_eq!(lp::next_body(&mut consumer).await, "one");
    assert_eq!(lp::next_body(&mut consumer).await, "two");
    consumer_channel.close(200, "bye".into()).await.unwrap();
    assert_eq!(lp::message_count(&channel, &queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_shuts_out_others_with_403_and_needs_an_unconsumed_queue() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let _only = lp::consume(&channel, &queue, exclusive).await;
    let other = lp::open_channel(&conn).await;
    let second = other
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(second, ACCESS_REFUSED);

    // The other way round: an exclusive consume on a queue that already has a consumer.
    let busy = lp::exclusive_queue(&channel).await;
    let _plain = lp::consume_acked(&channel, &busy).await;
    let other = lp::open_channel(&conn).await;
    let late = other
        .basic_consume(
            busy.as_str().into(),
            "".into(),
            exclusive,
            FieldTable::default(),
        )
        .await;
    assert_code(late, ACCESS_REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_consumer_gets_nothing_more() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    within(
        "basic.cancel-ok",
        channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    lp::consumer_ends(&mut consumer).await;
    lp::publish(&channel, "", &queue, b"after cancel").await;
    // The message waits in the queue instead of going to the cancelled consumer.
    let got = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(got.delivery.data, b"after cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_consumed_queue_sends_basic_cancel_and_keeps_the_channel_open() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let other = lp::open_channel(&conn).await;
    lp::delete_queue(&other, &queue).await;
    lp::consumer_ends(&mut consumer).await;
    assert!(
        channel.status().connected(),
        "basic.cancel is not a channel error"
    );
    lp::declare(&channel, &unique("q"), QueueDeclareOptions::exclusive()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_reports_the_remaining_count_then_get_empty() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    for body in ["a", "b", "c"] {
        lp::publish(&channel, "", &queue, body.as_bytes()).await;
    }
    for (body, remaining) in [("a", 2), ("b", 1), ("c", 0)] {
        let got = lp::get(&channel, &queue).await.unwrap();
        assert_eq!(
            (lp::body(&got.delivery).as_str(), got.message_count),
            (body, remaining)
        );
        assert!(!got.delivery.redelivered);
    }
    assert!(lp::get(&channel, &queue).await.is_none(), "basic.get-empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_one_queue_take_turns() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let (one, two) = (lp::open_channel(&conn).await, lp::open_channel(&conn).await);
    let mut first = lp::consume_acked(&one, &queue).await;
    let mut second = lp::consume_acked(&two, &queue).await;
    for n in 1..=6 {
        lp::publish(&channel, "", &queue, n.to_string().as_bytes()).await;
    }
    let mut got_first = BTreeSet::new();
    let mut got_second = BTreeSet::new();
    for _ in 0..3 {
        got_first.insert(lp::next_body(&mut first).await);
        got_second.insert(lp::next_body(&mut second).await);
    }
    let odd: BTreeSet<String> = ["1", "3", "5"].map(String::from).into();
    let even: BTreeSet<String> = ["2", "4", "6"].map(String::from).into();
    assert!(
        (got_first == odd && got_second == even) || (got_first == even && got_second == odd),
        "alternating delivery, got {got_first:?} and {got_second:?}"
    );
}
