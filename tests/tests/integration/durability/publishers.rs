//! Publishers: confirms, transactions, amqprs, MQTT: part of the `durability` tests (helpers in
//! `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_confirms_arrive_for_persistent_messages_and_those_messages_survive() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    // Many in flight at once: they share flushes (group commit), each is confirmed.
    let mut pending = Vec::new();
    for n in 0..500 {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{n}").as_bytes(),
                persistent(),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for confirm in pending {
        assert_eq!(
            within("a confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    // A transaction's commit-ok also means on disk.
    let tx_ch = lp::open_channel(&_conn).await;
    within("tx.select-ok", tx_ch.tx_select()).await.unwrap();
    for n in 500..510 {
        tx_ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("{n}").as_bytes(),
                persistent(),
            )
            .await
            .unwrap();
    }
    within("tx.commit-ok", tx_ch.tx_commit()).await.unwrap();

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let expected: Vec<String> = (0..510).map(|n| n.to_string()).collect();
    assert_eq!(drain(&ch, &q).await, expected);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_persistent_messages_survive_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = unique("amqprs-dq");
    {
        let (conn, _) = ar::connect(&broker).await;
        let (ch, mut events) = ar::open_channel(&conn).await;
        ch.confirm_select(ConfirmSelectArguments::default())
            .await
            .unwrap();
        ch.queue_declare(QueueDeclareArguments::new(&q).durable(true).finish())
            .await
            .unwrap();
        for n in 1..=3 {
            let props = amqprs::BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("text/plain")
                .with_message_id(&format!("id-{n}"))
                .finish();
            ch.basic_publish(
                props,
                format!("amqprs-{n}").into_bytes(),
                BasicPublishArguments::new("", &q),
            )
            .await
            .unwrap();
        }
        events.confirmed_up_to(3, &mut 0).await;
    }
    let broker = data.restart(broker).await;
    let (conn, _) = ar::connect(&broker).await;
    let (ch, _events) = ar::open_channel(&conn).await;
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&q, ""))
        .await
        .unwrap();
    for n in 1..=3 {
        let m = ar::next_message(&mut rx).await;
        assert_eq!(ar::body(&m), format!("amqprs-{n}"));
        assert!(!m.deliver.as_ref().unwrap().redelivered());
        let props = m.basic_properties.as_ref().unwrap();
        assert_eq!(props.delivery_mode(), Some(2));
        assert_eq!(props.content_type().map(String::as_str), Some("text/plain"));
        assert_eq!(
            props.message_id().map(String::as_str),
            Some(format!("id-{n}").as_str())
        );
        ch.basic_ack(BasicAckArguments::new(ar::delivery_tag(&m), false))
            .await
            .unwrap();
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_qos1_and_qos2_publishes_to_a_durable_queue_survive_and_qos0_does_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let mqtt_port = |b: &TestBroker| b.server().unwrap().mqtt_addr().unwrap().port();
    let device = unique("dev");
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    // MQTT topic sensors/<device>/temp is routing key sensors.<device>.temp on amq.topic.
    lp::bind(
        &ch,
        &q,
        "amq.topic",
        "sensors.*.temp",
        FieldTable::default(),
    )
    .await;
    let topic = format!("sensors/{device}/temp");
    let mut mqtt = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("pub"),
        "127.0.0.1",
        mqtt_port(&broker),
    ))
    .await;
    // Each waits for PUBACK / PUBCOMP: sent only once the message is on disk.
    mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"qos1")
        .await;
    mqtt.publish(&topic, rumqttc::QoS::AtMostOnce, false, b"qos0")
        .await;
    mqtt.publish(&topic, rumqttc::QoS::ExactlyOnce, false, b"qos2")
        .await;
    wait_for_count(&ch, &q, 3).await;

    let broker = data.restart(broker).await;
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for body in ["qos1", "qos2"] {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), body);
        assert_eq!(d.routing_key.as_str(), format!("sensors.{device}.temp"));
        assert_eq!(*d.properties.delivery_mode(), Some(2));
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    // The binding to amq.topic came back too.
    let mut mqtt = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("pub"),
        "127.0.0.1",
        mqtt_port(&broker),
    ))
    .await;
    mqtt.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"after")
        .await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(lp::body(&d), "after");
    d.acker.ack(BasicAckOptions::default()).await.unwrap();
    broker.stop().await;
}

/// "Nothing is confirmed before it is on disk" also when the disk fails: a persistent message
/// the store could not write, or that arrives after the store stopped accepting writes, gets
/// no positive confirm. The failure is provoked by removing a new durable queue's directory
/// before its first message creates the segment file in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_message_the_store_cannot_write_is_never_confirmed() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let setup = lp::open_channel(&conn).await;
    let (broken, healthy) = (unique("broken"), unique("healthy"));
    declare_with(&setup, &broken, durable(), FieldTable::default()).await;
    declare_with(&setup, &healthy, durable(), FieldTable::default()).await;
    let transient = lp::exclusive_queue(&setup).await;
    let dir = queue_log_dir(&data, &broken).expect("the queue's directory");
    std::fs::remove_dir_all(&dir).unwrap();

    // Every channel stays open to the end: closing one would settle its confirms.
    let (first_ch, after_ch, marker_ch) = (
        lp::confirm_channel(&conn).await,
        lp::confirm_channel(&conn).await,
        lp::confirm_channel(&conn).await,
    );
    // Its first write fails, and with it the store.
    let mut first = publish_raw(&first_ch, &broken, persistent()).await;
    // A commit returns once the store synced, or failed, everything appended before it: after
    // it the store has failed, and the commit is refused (its connection closed with 541), not
    // acknowledged for messages that are not on disk.
    let tx_conn = lp::connect(&broker).await;
    let tx = lp::open_channel(&tx_conn).await;
    within("tx.select-ok", tx.tx_select()).await.unwrap();
    drop(publish_raw(&tx, &healthy, persistent()).await);
    let commit = within("tx.commit", tx.tx_commit()).await;
    assert!(
        commit.is_err(),
        "tx.commit-ok for a message the store could not write"
    );
    // Now a new publisher: the store refuses its message.
    let mut after = publish_raw(&after_ch, &healthy, persistent()).await;
    // A transient message is confirmed at once; the confirms above, handled earlier on the
    // same connection, would have arrived before it.
    let marker = publish_raw(&marker_ch, &transient, BasicProperties::default()).await;
    match within("the transient message's confirm", marker).await {
        Ok(confirmation) => assert_eq!(confirmation, Confirmation::Ack(None)),
        Err(e) => panic!("the transient message's confirm failed: {e:?}"),
    }
    for (what, confirm) in [
        ("the failed write", &mut first),
        ("the refused write", &mut after),
    ] {
        // Still waiting, or refused: either is honest.
        match futures_lite::future::poll_once(confirm).await {
            None | Some(Ok(Confirmation::Nack(_))) => {}
            Some(other) => panic!("{what} got {other:?}, yet it is not on disk"),
        }
    }
    drop((first_ch, after_ch, marker_ch, tx));
    broker.stop().await;
}

/// Publishes to `queue` through the default exchange; returns the confirm, unawaited.
async fn publish_raw(
    channel: &Channel,
    queue: &str,
    properties: BasicProperties,
) -> lapin::PublisherConfirm {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"m",
            properties,
        )
        .await
        .unwrap()
}
