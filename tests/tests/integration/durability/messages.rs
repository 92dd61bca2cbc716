//! Messages: part of the `durability` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_with_properties_headers_and_order_transient_ones_do_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let x = unique("dx");
    lp::declare_exchange(
        &ch,
        &x,
        ExchangeKind::Topic,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = durable_queue(&ch, FieldTable::default()).await;
    lp::bind(&ch, &q, &x, "orders.#", FieldTable::default()).await;

    let mut nested = FieldTable::default();
    nested.insert("inner".into(), AMQPValue::LongString("deep".into()));
    let rich = |n: i32| {
        let headers = table(&[
            ("trace", AMQPValue::LongString(format!("t-{n}").into())),
            ("attempt", AMQPValue::LongInt(n)),
            ("big", AMQPValue::LongLongInt(1 << 40)),
            ("flag", AMQPValue::Boolean(n % 2 == 0)),
            ("ratio", AMQPValue::Double(0.25)),
            ("nested", AMQPValue::FieldTable(nested.clone())),
            (
                "list",
                AMQPValue::FieldArray(FieldArray::from(vec![
                    AMQPValue::LongInt(1),
                    AMQPValue::LongString("two".into()),
                ])),
            ),
        ]);
        persistent()
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_correlation_id(format!("corr-{n}").into())
            .with_reply_to("replies".into())
            .with_message_id(format!("m-{n}").into())
            .with_priority(3)
            .with_timestamp(1_700_000_000 + n as u64)
            .with_type("order".into())
            .with_user_id("guest".into())
            .with_app_id("durability-test".into())
            // Far in the future: it must not expire across the restart.
            .with_expiration("600000".into())
            .with_headers(headers)
    };
    let mut expected = Vec::new();
    for n in 0..20 {
        let body = format!("persistent-{n}");
        publish_confirmed(&ch, &x, &format!("orders.{n}"), &body, rich(n)).await;
        expected.push((body, format!("orders.{n}"), rich(n)));
        // Transient messages in between (no delivery mode, and delivery mode 1).
        let transient = if n % 2 == 0 {
            BasicProperties::default()
        } else {
            BasicProperties::default().with_delivery_mode(1)
        };
        publish_confirmed(&ch, &x, "orders.t", &format!("transient-{n}"), transient).await;
    }
    assert_eq!(lp::message_count(&ch, &q).await, 40);

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        lp::message_count(&ch, &q).await,
        20,
        "only the persistent messages come back"
    );
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for (body, key, properties) in expected {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body, "in publish order");
        assert_eq!(d.exchange.as_str(), x);
        assert_eq!(d.routing_key.as_str(), key);
        assert!(!d.redelivered, "{body} was never delivered before");
        assert_eq!(d.properties, properties, "{body} keeps its properties");
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_stay_gone_and_delivered_unacked_ones_come_back_redelivered() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=8 {
        publish_confirmed(&ch, "", &q, &n.to_string(), persistent()).await;
    }
    let consumer_ch = lp::open_channel(&conn).await;
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(4, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = lp::consume_acked(&consumer_ch, &q).await;
    let mut delivered = Vec::new();
    for _ in 0..4 {
        delivered.push(lp::next_delivery(&mut consumer).await);
    }
    let bodies: Vec<String> = delivered.iter().map(lp::body).collect();
    assert_eq!(bodies, ["1", "2", "3", "4"]);
    // basic.get with no_ack takes 5 for good (an auto-acked delivery).
    let get_ch = lp::open_channel(&conn).await;
    let got = within(
        "basic.get",
        get_ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(lp::body(&got.delivery), "5");
    // The consumer stops taking messages (its unacked ones stay with it), then acks 1, 2 and
    // 4 and leaves 3 delivered and unacked; 6..8 are never delivered.
    within(
        "basic.cancel-ok",
        consumer_ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()),
    )
    .await
    .unwrap();
    for i in [0, 1, 3] {
        delivered[i]
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    // A round trip on the consumer's channel: the broker has handled the acks before it.
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(4, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(lp::message_count(&ch, &q).await, 3);

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 4);
    let mut consumer = lp::consume_acked(&ch, &q).await;
    let mut back = Vec::new();
    for _ in 0..4 {
        let d = lp::next_delivery(&mut consumer).await;
        back.push((lp::body(&d), d.redelivered));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(
        back,
        [
            ("3".to_string(), true),
            ("6".to_string(), false),
            ("7".to_string(), false),
            ("8".to_string(), false),
        ],
        "only the unacked message comes back flagged redelivered, in its place"
    );
    // Acked after the restart: gone after the next one too.
    within("basic.qos-ok", ch.basic_qos(0, BasicQosOptions::default()))
        .await
        .unwrap();
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_after_a_restart_follow_the_recovered_ones_across_the_next() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for body in ["a", "b", "c"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    // Take "a" for good, then publish more behind the recovered ones.
    let got = within(
        "basic.get",
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .expect("a message");
    assert_eq!(lp::body(&got.delivery), "a");
    for body in ["d", "e"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    publish_confirmed(&ch, "", &q, "f", persistent()).await;
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(drain(&ch, &q).await, ["b", "c", "d", "e", "f"]);
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0, "drained for good");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_priority_queue_comes_back_in_priority_order() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-max-priority", AMQPValue::LongInt(9))])).await;
    for (body, priority) in [
        ("low-1", 1),
        ("high-1", 9),
        ("none", 0),
        ("high-2", 9),
        ("mid", 5),
    ] {
        publish_confirmed(&ch, "", &q, body, persistent().with_priority(priority)).await;
    }
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &q).await,
        ["high-1", "high-2", "mid", "low-1", "none"]
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_rejected_messages_are_dead_lettered_once_and_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let dlx = unique("dlx");
    lp::declare_exchange(
        &ch,
        &dlx,
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let dlq = durable_queue(&ch, FieldTable::default()).await;
    lp::bind(&ch, &dlq, &dlx, "", FieldTable::default()).await;
    let src = durable_queue(
        &ch,
        table(&[(
            "x-dead-letter-exchange",
            AMQPValue::LongString(dlx.as_str().into()),
        )]),
    )
    .await;
    // Two expire (per-message TTL), one is rejected, one stays.
    for body in ["expired-1", "expired-2"] {
        publish_confirmed(
            &ch,
            "",
            &src,
            body,
            persistent().with_expiration("50".into()),
        )
        .await;
    }
    wait_for_count(&ch, &dlq, 2).await;
    publish_confirmed(&ch, "", &src, "rejected", persistent()).await;
    publish_confirmed(&ch, "", &src, "kept", persistent()).await;
    let consumer_ch = lp::open_channel(&conn).await;
    within(
        "basic.qos-ok",
        consumer_ch.basic_qos(1, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = lp::consume_acked(&consumer_ch, &src).await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(lp::body(&d), "rejected");
    d.acker
        .nack(BasicNackOptions {
            requeue: false,
            ..Default::default()
        })
        .await
        .unwrap();
    wait_for_count(&ch, &dlq, 3).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &src).await,
        ["kept"],
        "the dead letters stayed dead"
    );
    let mut consumer = lp::consume_acked(&ch, &dlq).await;
    for (body, reason) in [
        ("expired-1", "expired"),
        ("expired-2", "expired"),
        ("rejected", "rejected"),
    ] {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body);
        let headers = d.properties.headers().clone().unwrap();
        let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
            panic!("{body} has an x-death header: {headers:?}");
        };
        assert_eq!(deaths.as_slice().len(), 1, "{body} died once");
        let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
            panic!("x-death entry of {body}");
        };
        assert_eq!(
            death.inner().get("reason"),
            Some(&AMQPValue::LongString(reason.into()))
        );
        assert_eq!(death.inner().get("count"), Some(&AMQPValue::LongLongInt(1)));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(lp::message_count(&ch, &dlq).await, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_dropped_by_a_length_limit_or_purged_are_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let limited = durable_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(2))])).await;
    for n in 1..=5 {
        publish_confirmed(&ch, "", &limited, &n.to_string(), persistent()).await;
    }
    let purged = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=3 {
        publish_confirmed(&ch, "", &purged, &n.to_string(), persistent()).await;
    }
    let count = within(
        "queue.purge-ok",
        ch.queue_purge(purged.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(count, 3);
    publish_confirmed(&ch, "", &purged, "after purge", persistent()).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(
        drain(&ch, &limited).await,
        ["4", "5"],
        "drop-head kept the newest"
    );
    assert_eq!(drain(&ch, &purged).await, ["after purge"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_takes_its_messages_for_good() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let gone = durable_queue(&ch, FieldTable::default()).await;
    let reborn = durable_queue(&ch, FieldTable::default()).await;
    for n in 1..=3 {
        publish_confirmed(&ch, "", &gone, &format!("old-{n}"), persistent()).await;
        publish_confirmed(&ch, "", &reborn, &format!("old-{n}"), persistent()).await;
    }
    // One of the old messages is out for delivery when its queue goes.
    let consumer_ch = lp::open_channel(&conn).await;
    let got = within(
        "basic.get",
        consumer_ch.basic_get(reborn.as_str().into(), BasicGetOptions::default()),
    )
    .await
    .unwrap()
    .expect("a message");
    lp::delete_queue(&ch, &gone).await;
    lp::delete_queue(&ch, &reborn).await;
    // Declared again before the restart, under the same name: a new, empty queue.
    declare_with(&ch, &reborn, durable(), FieldTable::default()).await;
    publish_confirmed(&ch, "", &reborn, "new", persistent()).await;
    // The ack of a message of the deleted queue must not touch the new one.
    got.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    assert_eq!(lp::message_count(&ch, &reborn).await, 1);

    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    assert!(!lp::queue_exists(&conn, &gone).await);
    declare_with(&ch, &gone, durable(), FieldTable::default()).await;
    assert_eq!(
        lp::message_count(&ch, &gone).await,
        0,
        "declared again: empty"
    );
    assert_eq!(drain(&ch, &reborn).await, ["new"]);
    broker.stop().await;
}

/// A queue's deletion removes its definition, then its log. A crash in between leaves the log
/// behind with no queue; a queue declared later under the same name must start empty and stay
/// so across restarts, not inherit (and later bring back) the deleted queue's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_left_behind_by_an_interrupted_queue_deletion_is_not_resurrected() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = unique("dq");
    let (_conn, ch) = confirm_connection(&broker).await;
    declare_with(&ch, &q, durable(), FieldTable::default()).await;
    for body in ["old-1", "old-2", "old-3"] {
        publish_confirmed(&ch, "", &q, body, persistent()).await;
    }
    broker.stop().await;
    // Keep a copy of the log as it was before the deletion.
    let dir = queue_log_dir(&data, &q).expect("the queue's log");
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&dir, saved.path());

    let broker = data.start().await.unwrap();
    let (_conn, ch) = lp::connect_channel(&broker).await;
    lp::delete_queue(&ch, &q).await;
    broker.stop().await;
    assert!(
        queue_log_dir(&data, &q).is_none(),
        "the deletion removed the log"
    );
    // The crash between the two steps: the definition is gone, the log is still there.
    copy_dir(saved.path(), &dir);

    let broker = data.start().await.unwrap();
    let (conn, ch) = confirm_connection(&broker).await;
    assert!(!lp::queue_exists(&conn, &q).await);
    declare_with(&ch, &q, durable(), FieldTable::default()).await;
    assert_eq!(lp::message_count(&ch, &q).await, 0);
    publish_confirmed(&ch, "", &q, "new", persistent()).await;
    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    assert_eq!(drain(&ch, &q).await, ["new"]);
    broker.stop().await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
