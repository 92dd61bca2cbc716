//! Purge and restart: part of the `paging` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_counts_the_tail_and_purged_messages_stay_gone_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        publish_persistent(&ch, &q, 0..100).await;
        let purged = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(purged, 100);
        assert_eq!(paged(&broker, &q), (0, 0));
        publish_persistent(&ch, &q, 100..130).await;
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 30);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(100..130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_back_only_the_head_and_delivers_everything_in_order() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        publish_persistent(&ch, &q, 0..500).await;
        // Three deliveries that are never acknowledged: they come back redelivered.
        for i in 0..3 {
            let m = lp::get(&ch, &q).await.unwrap();
            assert_eq!(lp::body(&m.delivery), format!("m{i}"));
        }
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready, 500);
    assert_eq!(
        out as usize,
        500 - RESIDENT,
        "only a head-full was read at start"
    );
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 500);
    let got = drain(&ch, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (0..500)
        .map(|i| (format!("m{i}"), Some(i as i64), i < 3))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_in_the_tail_are_gone_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        for c in publish_range(&ch, &q, 0..60, |i| i % 2 == 1).await {
            assert_eq!(c, Confirmation::Ack(None));
        }
        assert_eq!(paged(&broker, &q), (60, 50));
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies((0..60).filter(|i| i % 2 == 0)));
    assert_eq!(lp::message_count(&ch, &q).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Requeue and TTL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_go_back_ahead_of_the_paged_out_ones() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    publish_persistent(&ch, &q, 0..100).await;

    // A consumer takes 8, is cancelled, gives back 3 with nack-requeue and the rest (but one
    // acked) when its channel closes.
    ch.basic_qos(8, BasicQosOptions::default()).await.unwrap();
    let mut consumer = lp::consume_acked(&ch, &q).await;
    let mut held = Vec::new();
    for i in 0..8 {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), format!("m{i}"));
        held.push(d);
    }
    // Cancelled first, so that the consumer takes nothing more.
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    for d in &held[2..5] {
        d.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    held[0].ack(BasicAckOptions::default()).await.unwrap();
    // Cancelling does not give back unacknowledged messages; closing the channel does.
    ch.close(200, "bye".into()).await.unwrap();

    let (_conn2, ch2) = confirm_connection(&broker).await;
    within("the requeued messages", async {
        while lp::message_count(&ch2, &q).await != 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let got = drain(&ch2, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (1..100)
        .map(|i| (format!("m{i}"), Some(i as i64), i < 8))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_ttl_applies_to_paged_out_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    let mut pending = Vec::new();
    for i in 0..40 {
        // Messages 15..25 (in the tail) expire after 1 ms.
        let mut p = props(i, false);
        if (15..25).contains(&i) {
            p = p.with_expiration("1".into());
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                p,
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for c in pending {
        assert_eq!(
            within("a confirm", c).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    assert_eq!(paged(&broker, &q).1, 30);
    // Their expiry time is absolute: once it has passed they are dead wherever they are.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies((0..15).chain(25..40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_expires_paged_out_messages_once_they_reach_the_head() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-message-ttl", AMQPValue::LongInt(50))])).await;
    publish_persistent(&ch, &q, 0..100).await;
    assert_eq!(paged(&broker, &q), (100, 90));
    // The timer expires the head, pages the tail in and expires it in turn.
    within("the queue to expire", async {
        while lp::message_count(&ch, &q).await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    publish_persistent(&ch, &q, 100..101).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(100..101));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queues_page_out_too() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(
        &ch,
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await;
    publish_persistent(&ch, &q, 0..50).await;
    assert_eq!(paged(&broker, &q), (50, 50 - RESIDENT as u32));

    // At a restart the priority queue reads its log through (a message's priority is in its
    // record) and keeps a head-full in memory. More in tests/priority_paging.rs.
    drop(ch);
    drop(conn);
    let broker = data.restart(broker).await;
    assert_eq!(paged(&broker, &q), (50, 50 - RESIDENT as u32));
    let (_conn, ch) = confirm_connection(&broker).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(0..50));
}
