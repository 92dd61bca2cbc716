//! Queues: declaration (passive, durable, exclusive, auto-delete, server-named), the counts that
//! declare-ok reports, binding, purging and conditional deletion (AMQP 0-9-1 class `queue`).

use lapin::options::{
    BasicCancelOptions, BasicQosOptions, QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use pigeon_tests::lapin_support::{self as lp, assert_code};
use pigeon_tests::reply::{ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED, RESOURCE_LOCKED};
use pigeon_tests::{unique, within, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_queue_closes_only_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, channel) = lp::connect_channel(&broker).await;
    let result = channel
        .queue_declare(
            unique("missing").into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await;
    assert_code(result, NOT_FOUND);
    assert!(!channel.status().connected());
    let other = lp::open_channel(&conn).await;
    lp::exclusive_queue(&other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_named_queue_gets_an_amq_gen_name_that_routes() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::declare(&channel, "", QueueDeclareOptions::exclusive()).await;
    let name = queue.name().to_string();
    assert!(name.starts_with("amq.gen-"), "{name}");
    lp::publish(&channel, "", &name, b"to the generated name").await;
    let got = lp::get(&channel, &name).await.unwrap();
    assert_eq!(got.delivery.data, b"to the generated name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_a_queue_with_the_reserved_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let result = channel
        .queue_declare(
            unique("amq.mine").into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(result, ACCESS_REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_ok_counts_ready_messages_and_consumers() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    for body in ["1", "2", "3"] {
        lp::publish(&channel, "", &queue, body.as_bytes()).await;
    }
    let declared = lp::declare(&channel, &queue, QueueDeclareOptions::exclusive()).await;
    assert_eq!(
        (declared.message_count(), declared.consumer_count()),
        (3, 0)
    );

    // A consumer holding one unacknowledged message: that one is no longer "ready".
    let consumer_channel = lp::open_channel(&conn).await;
    consumer_channel
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    assert_eq!(lp::next_body(&mut consumer).await, "1");
    let passive = lp::declare(&channel, &queue, QueueDeclareOptions::default().passive()).await;
    assert_eq!((passive.message_count(), passive.consumer_count()), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_a_queue_with_other_durability_is_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let name = unique("durable");
    lp::declare(&channel, &name, QueueDeclareOptions::durable()).await;
    lp::declare(&channel, &name, QueueDeclareOptions::durable()).await;
    let result = channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(result, PRECONDITION_FAILED);
    let channel = lp::open_channel(&conn).await;
    lp::delete_queue(&channel, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_queue_receives_until_it_is_unbound() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let exchange = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let queue = lp::exclusive_queue(&channel).await;
    assert!(!lp::routed(&channel, &exchange, "k", b"before").await);
    lp::bind(&channel, &queue, &exchange, "k", FieldTable::default()).await;
    assert!(lp::routed(&channel, &exchange, "k", b"bound").await);
    within(
        "queue.unbind-ok",
        channel.queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "k".into(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert!(!lp::routed(&channel, &exchange, "k", b"after").await);
    assert_eq!(lp::message_count(&channel, &queue).await, 1);
    lp::delete_exchange(&channel, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_removes_ready_messages_returns_their_count_and_spares_unacked_ones() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    for body in ["held", "a", "b", "c"] {
        lp::publish(&channel, "", &queue, body.as_bytes()).await;
    }
    let holder = lp::open_channel(&conn).await;
    let held = lp::get(&holder, &queue).await.unwrap();
    assert_eq!(held.delivery.data, b"held");

    let purged = within(
        "queue.purge-ok",
        channel.queue_purge(queue.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(purged, 3);
    assert_eq!(lp::message_count(&channel, &queue).await, 0);
    // The unacknowledged message survived the purge and returns when its channel closes.
    holder.close(200, "bye".into()).await.unwrap();
    let back = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(back.delivery.data, b"held");
    assert!(back.delivery.redelivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_if_empty_and_if_unused_refuse_with_406_and_delete_reports_the_count() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    lp::publish(&channel, "", &queue, b"keep me").await;

    let if_empty = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    assert_code(
        channel.queue_delete(queue.as_str().into(), if_empty).await,
        PRECONDITION_FAILED,
    );

    let channel = lp::confirm_channel(&conn).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let consumer = lp::consume_acked(&consumer_channel, &queue).await;
    let if_unused = QueueDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    assert_code(
        channel.queue_delete(queue.as_str().into(), if_unused).await,
        PRECONDITION_FAILED,
    );

    let channel = lp::confirm_channel(&conn).await;
    consumer_channel
        .basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Cancelling leaves a delivered message unacknowledged on the consumer's channel; closing
    // that channel puts it back, so the queue holds it again.
    consumer_channel.close(200, "bye".into()).await.unwrap();
    lp::publish(&channel, "", &queue, b"second").await;
    let deleted = within(
        "queue.delete-ok",
        channel.queue_delete(queue.as_str().into(), if_unused),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 2);
    assert!(!lp::queue_exists(&conn, &queue).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_to_other_connections_with_405() {
    let broker = TestBroker::start().await;
    let (_owner, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;

    let other = lp::connect(&broker).await;
    let channel = lp::open_channel(&other).await;
    let passive = channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await;
    assert_code(passive, RESOURCE_LOCKED);

    let channel = lp::open_channel(&other).await;
    let consume = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(consume, RESOURCE_LOCKED);

    let channel = lp::open_channel(&other).await;
    let delete = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    assert_code(delete, RESOURCE_LOCKED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_deleted_when_its_connection_closes() {
    let broker = TestBroker::start().await;
    let (owner, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    within("connection.close-ok", owner.close(200, "bye".into()))
        .await
        .unwrap();

    let other = lp::connect(&broker).await;
    assert!(!lp::queue_exists(&other, &queue).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_is_deleted_when_its_last_consumer_cancels() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = unique("auto");
    lp::declare(
        &channel,
        &queue,
        QueueDeclareOptions::default().auto_delete(),
    )
    .await;
    assert!(
        lp::queue_exists(&conn, &queue).await,
        "never consumed: it stays"
    );

    let first = lp::consume_acked(&channel, &queue).await;
    let second = lp::consume_acked(&channel, &queue).await;
    channel
        .basic_cancel(first.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert!(
        lp::queue_exists(&conn, &queue).await,
        "one consumer is left"
    );
    channel
        .basic_cancel(second.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    assert!(!lp::queue_exists(&conn, &queue).await);
}
