//! The disk alarm (free space under `disk_free_limit`) and publisher flow control: publishers
//! are blocked (AMQP `connection.blocked`, reads paused; MQTT reads paused) or slowed, never
//! disconnected, and nothing is dropped. The memory alarm: tests/memory_flood.rs.

use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::MqttBroker;
use pigeon_tests::{unique, within, DataDir, TestBroker};
use rumqttc::QoS;
use std::time::Duration;

// The memory alarm (the process's RSS past the watermark): tests/memory_flood.rs.

// ---------------------------------------------------------------------------------------------
// The disk alarm: free space of the data directory's filesystem under `disk_free_limit`.

/// A broker on a fresh data directory whose disk free limit no disk can meet, so the disk alarm
/// is on from the server's first check; `None` in reference mode.
async fn disk_alarmed_broker() -> Option<(DataDir, TestBroker)> {
    let data = DataDir::with(|c| c.disk_free_limit = u64::MAX / 2);
    let broker = data.start().await?;
    Some((data, broker))
}

/// The next `connection.blocked` reason (or `None` for `connection.unblocked`) lapin reports.
async fn next_blocked_event(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> Option<String> {
    use futures_lite::StreamExt;
    within("connection.blocked / unblocked", async {
        loop {
            match events.next().await.expect("the connection's events") {
                lapin::Event::ConnectionBlocked(reason) => return Some(reason),
                lapin::Event::ConnectionUnblocked => return None,
                _ => {}
            }
        }
    })
    .await
}

async fn publish_confirmed(channel: &lapin::Channel, queue: &str, body: &[u8]) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .expect("basic.publish")
        .await
        .expect("confirm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_blocks_an_amqp_publisher_saying_why_until_the_limit_is_lowered() {
    let Some((_dir, broker)) = disk_alarmed_broker().await else {
        return;
    };
    let publisher = lp::connect(&broker).await;
    let mut events = Box::pin(publisher.events_listener());
    let channel = lp::confirm_channel(&publisher).await;
    let queue = lp::shared_queue(&channel).await;
    // Read and confirmed: the alarm applies to connections that have published, from the end
    // of the read that made them publishers.
    publish_confirmed(&channel, &queue, b"first").await;
    assert_eq!(
        next_blocked_event(&mut events).await.as_deref(),
        Some("low on disk"),
        "connection.blocked names the disk alarm"
    );
    let blocked_publish = {
        let (channel, queue) = (channel.clone(), queue.clone());
        tokio::spawn(async move { publish_confirmed(&channel, &queue, b"while blocked").await })
    };
    // A connection that never published is not blocked: it still gets answers.
    let (_admin_conn, admin) = lp::connect_channel(&broker).await;
    assert_eq!(
        lp::message_count(&admin, &queue).await,
        1,
        "the publish sent while blocked is not read"
    );
    broker
        .server()
        .expect("in-process broker")
        .set_disk_free_limit(0);
    assert_eq!(next_blocked_event(&mut events).await, None, "unblocked");
    within("the blocked publish to be confirmed", blocked_publish)
        .await
        .expect("publisher task");
    assert_eq!(
        lp::message_count(&admin, &queue).await,
        2,
        "nothing was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_pauses_an_mqtt_publisher_until_the_limit_is_lowered() {
    let Some((_dir, broker)) = disk_alarmed_broker().await else {
        return;
    };
    // An AMQP publisher told connection.blocked proves the alarm is on.
    let amqp = lp::connect(&broker).await;
    let mut events = Box::pin(amqp.events_listener());
    let channel = lp::confirm_channel(&amqp).await;
    let queue = lp::shared_queue(&channel).await;
    publish_confirmed(&channel, &queue, b"amqp").await;
    assert_eq!(
        next_blocked_event(&mut events).await.as_deref(),
        Some("low on disk")
    );
    let topic = unique("disk");
    let (_admin_conn, admin) = lp::connect_channel(&broker).await;
    lp::bind(
        &admin,
        &queue,
        "amq.topic",
        &format!("{topic}.#"),
        FieldTable::default(),
    )
    .await;
    let port = broker
        .server()
        .expect("in-process")
        .mqtt_addr()
        .expect("MQTT")
        .port();
    let mut mqtt = pigeon_tests::mqtt_support::Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("disk-pub"),
        "127.0.0.1",
        port,
    ))
    .await;
    // The read that makes it a publisher is handled (and acknowledged); the next waits.
    mqtt.publish(&format!("{topic}/first"), QoS::AtLeastOnce, false, b"first")
        .await;
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
    assert_eq!(
        lp::message_count(&admin, &queue).await,
        2,
        "the PUBLISH sent while paused is not read (only `amqp` and `first` are queued)"
    );
    broker.server().expect("in-process").set_disk_free_limit(0);
    let _mqtt = within("the paused PUBACK", publish)
        .await
        .expect("publisher task");
    assert_eq!(
        lp::message_count(&admin, &queue).await,
        3,
        "the PUBLISH sent while paused was kept"
    );
    assert_eq!(next_blocked_event(&mut events).await, None, "unblocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn there_is_no_disk_alarm_without_a_data_directory() {
    let config = ServerConfig {
        disk_free_limit: u64::MAX / 2,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let publisher = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&publisher).await;
    let queue = lp::shared_queue(&channel).await;
    // Confirms keep coming over several alarm checks (200 ms apart).
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        publish_confirmed(&channel, &queue, b"x").await;
    }
    assert!(!publisher.status().blocked());
}

// ---------------------------------------------------------------------------------------------
// Publisher flow control: a fast publisher is slowed to its subscriber's pace instead of having
// the subscriber's queue (limited to `mqtt_max_queued_messages`, drop-head) drop its messages.

mod publisher_flow {
    use super::*;
    use bytes::BytesMut;
    use mqtt_wire::{Packet, ProtocolVersion, QoS as WireQoS};
    use pigeon_tests::mqtt_support::{connect_packet, publish_packet, subscribe_packet, Raw};

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    /// Large enough that the subscriber's socket and outbound buffer hold only a few thousand.
    const PAYLOAD: usize = 1024;

    fn config() -> ServerConfig {
        ServerConfig {
            mqtt_max_queued_messages: 1000,
            mqtt_sys_interval: 0,
            ..ServerConfig::for_tests()
        }
    }

    /// A raw QoS 0 subscriber of `topic` (SUBACK received).
    async fn subscriber(broker: &MqttBroker, topic: &str) -> Raw {
        let (mut sub, _) = broker.raw(connect_packet(V4, &unique("flow-sub"))).await;
        sub.send(subscribe_packet(1, topic, WireQoS::AtMostOnce))
            .await;
        assert!(matches!(sub.recv().await, Packet::SubAck(_)));
        sub
    }

    /// Publishes `n` QoS 0 messages numbered from 0 as fast as the socket takes them (100 per
    /// write), then waits for a PINGRESP: the broker has read them all.
    async fn publish_all(mut publisher: Raw, topic: String, n: usize) -> Raw {
        let mut buf = BytesMut::new();
        for i in 0..n {
            let mut payload = format!("{i:08}").into_bytes();
            payload.resize(PAYLOAD, b'.');
            let p = publish_packet(&topic, WireQoS::AtMostOnce, None, &payload);
            mqtt_wire::encode(&Packet::Publish(p), V4, &mut buf).expect("encode PUBLISH");
            if i % 100 == 99 || i == n - 1 {
                publisher.send_bytes(&buf).await;
                buf.clear();
            }
        }
        publisher.send(Packet::PingReq).await;
        assert_eq!(publisher.recv().await, Packet::PingResp);
        publisher
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fast_qos0_publisher_loses_nothing_to_a_slow_subscriber() {
        const N: usize = 20_000;
        let broker = MqttBroker::start_with(config()).await;
        let topic = unique("flow/slow");
        let mut sub = subscriber(&broker, &topic).await;
        let (publisher, _) = broker.raw(connect_packet(V4, &unique("flow-pub"))).await;
        let publishing = tokio::spawn(publish_all(publisher, topic, N));
        // Several times slower than the publisher: without flow control the queue overflows.
        for i in 0..N {
            let p = sub.recv_publish().await;
            assert_eq!(
                &p.payload[..8],
                format!("{i:08}").as_bytes(),
                "message {i} arrives next: none dropped, in order"
            );
            if i % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        within("the publisher to finish", publishing)
            .await
            .expect("publisher task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_subscriber_does_not_freeze_its_publisher() {
        const N: usize = 20_000;
        let broker = MqttBroker::start_with(config()).await;
        let topic = unique("flow/stuck");
        // Subscribed, and never reads again.
        let _stuck = subscriber(&broker, &topic).await;
        let (publisher, _) = broker.raw(connect_packet(V4, &unique("flow-pub"))).await;
        // Every message is read (PINGRESP) within the test's timeout: the publisher waited for
        // the stuck queue once, then drop-head took over.
        let _publisher = publish_all(publisher, topic, N).await;
    }
}
