//! Acknowledgements and their absence: ack / nack / reject with `multiple` and `requeue`,
//! basic.recover, prefetch (basic.qos per consumer and, RabbitMQ-style, `global` per channel),
//! the redelivered flag, and unacked messages going back to their queue in order when their
//! channel or connection closes.

use lapin::options::{
    BasicAckOptions, BasicNackOptions, BasicQosOptions, BasicRecoverOptions, BasicRejectOptions,
};
use lapin::{Channel, Consumer};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::reply::PRECONDITION_FAILED;
use pigeon_tests::{within, TestBroker};

async fn publish_all(channel: &Channel, queue: &str, bodies: &[&str]) {
    for body in bodies {
        lp::publish(channel, "", queue, body.as_bytes()).await;
    }
}

/// Receives `n` deliveries and returns `(body, delivery tag, redelivered)` for each.
async fn receive(consumer: &mut Consumer, n: usize) -> Vec<(String, u64, bool)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = lp::next_delivery(consumer).await;
        out.push((lp::body(&d), d.delivery_tag, d.redelivered));
    }
    out
}

fn bodies(received: &[(String, u64, bool)]) -> Vec<&str> {
    received.iter().map(|(b, _, _)| b.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_multiple_settles_every_delivery_up_to_its_tag() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    publish_all(&channel, &queue, &["1", "2", "3", "4"]).await;
    let consumer_channel = lp::open_channel(&conn).await;
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    let got = receive(&mut consumer, 4).await;
    consumer_channel
        .basic_ack(got[2].1, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Closing the channel returns only what was not acked: "4".
    consumer_channel.close(200, "bye".into()).await.unwrap();
    let back = lp::get(&channel, &queue).await.unwrap();
    assert_eq!(
        (lp::body(&back.delivery).as_str(), back.message_count),
        ("4", 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acking_an_unknown_delivery_tag_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let (conn, channel) = lp::connect_channel(&broker).await;
    // basic.ack has no reply; the channel's consumer is told why the channel closed.
    let queue = lp::exclusive_queue(&channel).await;
    let mut witness = lp::consume_acked(&channel, &queue).await;
    channel
        .basic_ack(99, BasicAckOptions::default())
        .await
        .unwrap();
    let error = lp::consumer_error(&mut witness).await;
    assert_eq!(
        lp::reply_code(&error),
        Some(PRECONDITION_FAILED),
        "{error:?}"
    );
    assert!(conn.status().connected());
    lp::exclusive_queue(&lp::open_channel(&conn).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_multiple_with_requeue_redelivers_in_order_flagged_redelivered() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    publish_all(&channel, &queue, &["1", "2", "3"]).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let first = receive(&mut consumer, 3).await;
    assert_eq!(bodies(&first), ["1", "2", "3"]);
    assert!(first.iter().all(|(_, _, redelivered)| !redelivered));
    channel
        .basic_nack(
            first[2].1,
            BasicNackOptions {
                multiple: true,
                requeue: true,
            },
        )
        .await
        .unwrap();
    let again = receive(&mut consumer, 3).await;
    assert_eq!(bodies(&again), ["1", "2", "3"]);
    assert!(again.iter().all(|(_, _, redelivered)| *redelivered));
    assert!(
        again[0].1 > first[2].1,
        "redeliveries get new delivery tags"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_nack_without_requeue_discard_the_message() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    publish_all(&channel, &queue, &["rejected", "nacked", "kept"]).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let got = receive(&mut consumer, 3).await;
    channel
        .basic_reject(got[0].1, BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    channel
        .basic_nack(
            got[1].1,
            BasicNackOptions {
                multiple: false,
                requeue: false,
            },
        )
        .await
        .unwrap();
    channel
        .basic_reject(got[2].1, BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    // Only the requeued one comes back; the discarded ones are gone.
    let back = receive(&mut consumer, 1).await;
    assert_eq!(back[0].0, "kept");
    assert!(back[0].2, "a requeued message is flagged redelivered");
    channel
        .basic_ack(back[0].1, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(lp::message_count(&channel, &queue).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_with_requeue_redelivers_every_unacked_message() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    publish_all(&channel, &queue, &["a", "b", "c"]).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let first = receive(&mut consumer, 3).await;
    channel
        .basic_ack(first[1].1, BasicAckOptions::default())
        .await
        .unwrap();
    within(
        "basic.recover-ok",
        channel.basic_recover(BasicRecoverOptions { requeue: true }),
    )
    .await
    .unwrap();
    let again = receive(&mut consumer, 2).await;
    assert_eq!(bodies(&again), ["a", "c"]);
    assert!(again.iter().all(|(_, _, redelivered)| *redelivered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_limits_each_consumer_to_that_many_unacked_deliveries() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let consumer_channel = lp::open_channel(&conn).await;
    consumer_channel
        .basic_qos(2, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    publish_all(&channel, &queue, &["1", "2", "3", "4", "5"]).await;
    let got = receive(&mut consumer, 2).await;
    assert_eq!(bodies(&got), ["1", "2"]);
    // The server has not sent a third: three are still ready in the queue.
    assert_eq!(lp::message_count(&channel, &queue).await, 3);
    consumer_channel
        .basic_ack(got[0].1, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(bodies(&receive(&mut consumer, 1).await), ["3"]);
    assert_eq!(lp::message_count(&channel, &queue).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_without_global_applies_to_each_consumer_and_global_to_the_whole_channel() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let publisher = lp::confirm_channel(&conn).await;
    let queues = [
        lp::exclusive_queue(&publisher).await,
        lp::exclusive_queue(&publisher).await,
        lp::exclusive_queue(&publisher).await,
        lp::exclusive_queue(&publisher).await,
    ];
    for queue in &queues {
        publish_all(&publisher, queue, &["1", "2", "3", "4"]).await;
    }

    // Per consumer (global=false, RabbitMQ's reading of the flag): 2 each, 4 in all.
    let per_consumer = lp::open_channel(&conn).await;
    per_consumer
        .basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut a = lp::consume_acked(&per_consumer, &queues[0]).await;
    let mut b = lp::consume_acked(&per_consumer, &queues[1]).await;
    receive(&mut a, 2).await;
    receive(&mut b, 2).await;
    assert_eq!(lp::message_count(&publisher, &queues[0]).await, 2);
    assert_eq!(lp::message_count(&publisher, &queues[1]).await, 2);

    // Shared by the channel (global=true): 3 in all, however they fall between the consumers.
    let shared = lp::open_channel(&conn).await;
    shared
        .basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c = lp::consume_acked(&shared, &queues[2]).await;
    let mut d = lp::consume_acked(&shared, &queues[3]).await;
    let mut delivered = 0;
    while delivered < 3 {
        tokio::select! {
            _ = lp::next_delivery(&mut c) => delivered += 1,
            _ = lp::next_delivery(&mut d) => delivered += 1,
        }
    }
    let ready = lp::message_count(&publisher, &queues[2]).await
        + lp::message_count(&publisher, &queues[3]).await;
    assert_eq!(
        ready,
        8 - 3,
        "the channel holds exactly 3 unacked deliveries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_return_to_their_queue_in_order_when_the_channel_closes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    publish_all(&channel, &queue, &["1", "2", "3", "4", "5", "6"]).await;

    // Hold 1..4 (prefetch 4) and ack "2", which frees room for "5"; "6" is never delivered.
    let consumer_channel = lp::open_channel(&conn).await;
    consumer_channel
        .basic_qos(4, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    let held = receive(&mut consumer, 4).await;
    consumer_channel
        .basic_ack(held[1].1, BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(bodies(&receive(&mut consumer, 1).await), ["5"]);
    consumer_channel.close(200, "bye".into()).await.unwrap();

    let mut after = lp::consume_acked(&channel, &queue).await;
    let again = receive(&mut after, 5).await;
    assert_eq!(bodies(&again), ["1", "3", "4", "5", "6"]);
    let flags: Vec<bool> = again.iter().map(|(_, _, r)| *r).collect();
    assert_eq!(flags, [true, true, true, true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_return_to_their_queues_in_order_when_the_connection_closes() {
    let broker = TestBroker::start().await;
    let observer = lp::connect(&broker).await;
    let channel = lp::open_channel(&observer).await;
    let queues = [
        lp::shared_queue(&channel).await,
        lp::shared_queue(&channel).await,
    ];
    for queue in &queues {
        publish_all(&channel, queue, &["1", "2", "3"]).await;
    }

    let consuming = lp::connect(&broker).await;
    // Channels close when dropped; keep them open until the connection closes.
    let mut open_channels = Vec::new();
    for queue in &queues {
        // Two channels, one per queue, and a basic.get left unacked on a third.
        let consumer_channel = lp::open_channel(&consuming).await;
        consumer_channel
            .basic_qos(2, BasicQosOptions::default())
            .await
            .unwrap();
        let mut consumer = lp::consume_acked(&consumer_channel, queue).await;
        receive(&mut consumer, 2).await;
        let getter = lp::open_channel(&consuming).await;
        assert_eq!(
            lp::body(&lp::get(&getter, queue).await.unwrap().delivery),
            "3"
        );
        open_channels.push((consumer_channel, consumer, getter));
    }
    within("connection.close-ok", consuming.close(200, "bye".into()))
        .await
        .unwrap();

    for queue in &queues {
        let mut consumer = lp::consume_acked(&channel, queue).await;
        let again = receive(&mut consumer, 3).await;
        assert_eq!(bodies(&again), ["1", "2", "3"], "queue {queue}");
        assert!(again.iter().all(|(_, _, redelivered)| *redelivered));
    }
    for queue in &queues {
        lp::delete_queue(&channel, queue).await;
    }
}
