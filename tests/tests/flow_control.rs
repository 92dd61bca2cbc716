//! The memory alarm: when queued messages pass `memory_high_watermark`, connections that
//! publish are blocked (AMQP `connection.blocked`, reads paused; MQTT reads paused) until the
//! queues drain. Publishers are slowed, never disconnected, and nothing is dropped.

use lapin::options::{BasicPublishOptions, QueuePurgeOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::MqttBroker;
use pigeon_tests::{unique, within, TestBroker};
use rumqttc::QoS;
use std::time::Duration;

/// A limit small enough to reach with a few hundred kilobytes.
const LIMIT: u64 = 64 * 1024;

fn alarmed_config() -> ServerConfig {
    ServerConfig {
        memory_high_watermark_bytes: Some(LIMIT),
        ..ServerConfig::for_tests()
    }
}

/// Waits (bounded) until the lapin connection has been told `connection.blocked` or
/// `unblocked`.
async fn wait_blocked(conn: &lapin::Connection, blocked: bool) {
    within("connection.blocked / unblocked", async {
        while conn.status().blocked() != blocked {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Publishes just over the limit in 1 KiB messages on a channel without confirms (all of it is
/// sent before the alarm's next check), then waits for `connection.blocked`.
async fn fill_until_blocked(conn: &lapin::Connection, queue: &str) {
    let channel = lp::open_channel(conn).await;
    let body = vec![b'x'; 1024];
    for _ in 0..(LIMIT / 1024 + 8) {
        let _not_confirmed = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
    }
    wait_blocked(conn, true).await;
}

async fn purge(channel: &lapin::Channel, queue: &str) {
    within(
        "queue.purge-ok",
        channel.queue_purge(queue.into(), QueuePurgeOptions::default()),
    )
    .await
    .expect("queue.purge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_an_amqp_publisher_until_the_queue_drains() {
    let Some(broker) = TestBroker::start_with(alarmed_config()).await else {
        return;
    };
    let publisher = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&publisher).await;
    let queue = lp::shared_queue(&channel).await;
    fill_until_blocked(&publisher, &queue).await;
    // Published while blocked: the broker does not read it until the alarm clears, so it
    // lands after the purge below (a broker that read it would purge it with the rest).
    let blocked_publish = {
        let (channel, queue) = (channel.clone(), queue.clone());
        tokio::spawn(async move {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    b"while blocked",
                    BasicProperties::default(),
                )
                .await
                .expect("basic.publish")
                .await
                .expect("confirm")
        })
    };
    let (_admin_conn, admin) = lp::connect_channel(&broker).await;
    purge(&admin, &queue).await;
    within("the blocked publish to be confirmed", blocked_publish)
        .await
        .expect("publisher task");
    wait_blocked(&publisher, false).await;
    assert_eq!(lp::message_count(&admin, &queue).await, 1);
    let kept = lp::get(&admin, &queue).await.expect("a message");
    assert_eq!(
        lp::body(&kept.delivery),
        "while blocked",
        "the message published while blocked was kept, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_pauses_an_mqtt_publisher_without_disconnecting_it() {
    let broker = MqttBroker::start_with(alarmed_config()).await;
    let amqp = lapin::Connection::connect(&broker.amqp_url(), Default::default())
        .await
        .expect("lapin connect");
    let channel = lp::confirm_channel(&amqp).await;
    let queue = lp::shared_queue(&channel).await;
    let topic = unique("alarm");
    lp::bind(
        &channel,
        &queue,
        "amq.topic",
        &format!("{topic}.#"),
        FieldTable::default(),
    )
    .await;
    let mut mqtt = broker.connect4(&unique("alarm-pub")).await;
    // It has published (so the alarm applies to it) before the alarm goes off.
    mqtt.publish(&format!("{topic}/first"), QoS::AtLeastOnce, false, b"first")
        .await;
    fill_until_blocked(&amqp, &queue).await;
    let admin_conn = lapin::Connection::connect(&broker.amqp_url(), Default::default())
        .await
        .expect("lapin connect");
    let admin = lp::open_channel(&admin_conn).await;
    let publish = tokio::spawn(async move {
        mqtt.publish(
            &format!("{topic}/blocked"),
            QoS::AtLeastOnce,
            false,
            b"while blocked",
        )
        .await;
        mqtt
    });
    purge(&admin, &queue).await;
    let _mqtt = within("the paused PUBACK", publish)
        .await
        .expect("publisher task");
    assert_eq!(
        lp::message_count(&admin, &queue).await,
        1,
        "the PUBLISH sent while paused was read after the purge, and kept"
    );
}
