//! MQTT sessions and wills: clean and persistent sessions and the session present flag, what a
//! persistent session keeps while its client is away (subscriptions, QoS 1 messages, the
//! unfinished QoS 1/2 exchanges it resends), 5.0 session expiry, and when the will is published
//! (abnormal end, 5.0 DISCONNECT 0x04) or not (normal DISCONNECT, reconnect within the delay).

use bytes::Bytes;
use mqtt_wire::{
    Connect, Disconnect, LastWill, Packet, ProtocolVersion, PubAck, PubComp, PubRec, QoS,
    ReasonCode, TopicName,
};
use pigeon_tests::mqtt_support::{connect_packet, subscribe_packet, Mqtt4, Mqtt5, MqttBroker};
use pigeon_tests::{unique, TIMEOUT};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::QoS as Q4;
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A raw CONNECT that keeps its session: clean session 0 (3.1.1), or clean start 0 with a
/// session expiry of `expiry` seconds (5.0).
fn persistent(version: ProtocolVersion, client_id: &str, expiry: u32) -> Connect {
    let mut c = connect_packet(version, client_id);
    c.clean_start = false;
    if version == V5 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// A raw CONNECT with a will on `topic`.
fn with_will(mut c: Connect, topic: &str, payload: &str, delay: Option<u32>) -> Connect {
    let mut will = LastWill {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    };
    will.properties.will_delay_interval = delay;
    c.will = Some(will);
    c
}

/// A 3.1.1 client that publishes `payload` to `topic` at QoS 1.
async fn publish_once(broker: &MqttBroker, topic: &str, payload: &str) {
    let mut p = broker.connect4(&unique("pub")).await;
    p.publish(topic, Q4::AtLeastOnce, false, payload.as_bytes())
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_session_flag_decides_whether_the_session_is_resumed_in_3_1_1() {
    let broker = MqttBroker::start().await;
    let id = unique("clean4");
    let topic = unique("clean4/t");
    let mut o = broker.v4(&id);
    o.set_clean_session(false);
    let mut c = Mqtt4::connect(o.clone()).await;
    assert!(!c.session_present, "a new session is not present");
    c.subscribe(&topic, Q4::AtLeastOnce).await;
    c.disconnect().await;

    let c = Mqtt4::connect(o.clone()).await;
    assert!(c.session_present, "clean session 0 resumes the session");
    c.disconnect().await;

    let mut c = broker.connect4(&id).await;
    assert!(!c.session_present, "clean session 1 starts afresh");
    // The old subscription went with the old session: only the marker arrives.
    let marker = unique("clean4/marker");
    c.subscribe(&marker, Q4::AtLeastOnce).await;
    publish_once(&broker, &topic, "old subscription").await;
    publish_once(&broker, &marker, "marker").await;
    assert_eq!(c.next_text().await, "marker");
    c.disconnect().await;
    let c = Mqtt4::connect(o).await;
    assert!(!c.session_present, "a clean session ends at disconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_session_keeps_subscriptions_and_queues_qos1_messages_while_offline() {
    let broker = MqttBroker::start().await;
    let topic = unique("offline/t");
    let mut o4 = broker.v4(&unique("offline4"));
    o4.set_clean_session(false);
    let mut o5 = broker.v5(&unique("offline5"));
    o5.set_clean_start(false)
        .set_session_expiry_interval(Some(60));
    let mut c4 = Mqtt4::connect(o4.clone()).await;
    c4.subscribe(&topic, Q4::AtLeastOnce).await;
    c4.disconnect().await;
    let mut c5 = Mqtt5::connect(o5.clone()).await;
    c5.subscribe(&topic, Q5::AtLeastOnce).await;
    c5.disconnect().await;

    for n in 1..=3 {
        publish_once(&broker, &topic, &format!("m{n}")).await;
    }

    let mut c4 = Mqtt4::connect(o4).await;
    assert!(c4.session_present);
    let mut c5 = Mqtt5::connect(o5).await;
    assert!(c5.session_present());
    for n in 1..=3 {
        let p = c4.next_publish().await;
        assert_eq!(
            (p.qos, &p.payload[..]),
            (Q4::AtLeastOnce, format!("m{n}").as_bytes())
        );
        let p = c5.next_publish().await;
        assert_eq!(
            (p.qos, &p.payload[..]),
            (Q5::AtLeastOnce, format!("m{n}").as_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_zero_ends_the_5_0_session_at_disconnect() {
    let broker = MqttBroker::start().await;
    let mut o = broker.v5(&unique("expiry0"));
    o.set_clean_start(false);
    let mut c = Mqtt5::connect(o.clone()).await;
    c.subscribe(&unique("expiry0/t"), Q5::AtLeastOnce).await;
    c.disconnect().await;
    let c = Mqtt5::connect(o).await;
    assert!(!c.session_present(), "no session expiry interval means 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_with_a_short_expiry_is_gone_after_it_expires() {
    let broker = MqttBroker::start().await;
    let topic = unique("expiry/t");
    let mut o = broker.v5(&unique("expiry1"));
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(1));
    let mut c = Mqtt5::connect(o.clone()).await;
    c.subscribe(&topic, Q5::AtLeastOnce).await;
    c.disconnect().await;
    publish_once(&broker, &topic, "for an expiring session").await;

    // Each attempt waits longer than the expiry: a resumed session restarts its clock.
    let deadline = Instant::now() + TIMEOUT;
    let mut c = loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let c = Mqtt5::connect(o.clone()).await;
        if !c.session_present() {
            break c;
        }
        assert!(Instant::now() < deadline, "the session never expired");
        c.disconnect().await;
    };
    // The new session has no subscription and nothing queued from the old one.
    let marker = unique("expiry/marker");
    c.subscribe(&marker, Q5::AtLeastOnce).await;
    publish_once(&broker, &topic, "after expiry").await;
    publish_once(&broker, &marker, "marker").await;
    assert_eq!(c.next_text().await, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_publish_is_resent_with_dup_and_the_same_packet_id() {
    let broker = MqttBroker::start().await;
    for version in [V4, V5] {
        let id = unique("dup");
        let topic = unique("dup/t");
        let (mut raw, _) = broker.raw(persistent(version, &id, 60)).await;
        raw.send(subscribe_packet(1, &topic, QoS::AtLeastOnce))
            .await;
        assert!(matches!(raw.recv().await, Packet::SubAck(_)));
        publish_once(&broker, &topic, "once").await;
        let first = raw.recv_publish().await;
        assert!(!first.dup, "{version:?}: a first delivery has DUP 0");
        drop(raw); // no PUBACK

        let (mut raw, ack) = broker.raw(persistent(version, &id, 60)).await;
        assert!(ack.session_present);
        let again = raw.recv_publish().await;
        assert!(
            again.dup,
            "{version:?}: the resend has DUP 1 [MQTT-3.3.1-1]"
        );
        assert_eq!(
            again.packet_id, first.packet_id,
            "{version:?}: same packet id"
        );
        assert_eq!(again.payload, first.payload);
        raw.send(PubAck::new(again.packet_id.unwrap())).await;
        // Acknowledged now: the next delivery is the next message, not a third copy.
        publish_once(&broker, &topic, "next").await;
        let next = raw.recv_publish().await;
        assert_eq!((&next.payload[..], next.dup), (&b"next"[..], false));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_qos2_delivery_resends_pubrel_after_reconnect() {
    let broker = MqttBroker::start().await;
    let id = unique("rel");
    let topic = unique("rel/t");
    let (mut raw, _) = broker.raw(persistent(V4, &id, 0)).await;
    raw.send(subscribe_packet(1, &topic, QoS::ExactlyOnce))
        .await;
    assert!(matches!(raw.recv().await, Packet::SubAck(_)));
    let mut p = broker.connect4(&unique("pub")).await;
    p.publish(&topic, Q4::ExactlyOnce, false, b"exactly").await;
    let publish = raw.recv_publish().await;
    let packet_id = publish.packet_id.unwrap();
    raw.send(PubRec::new(packet_id)).await;
    assert_eq!(
        raw.recv().await,
        Packet::PubRel(mqtt_wire::PubRel::new(packet_id))
    );
    drop(raw); // no PUBCOMP

    let (mut raw, ack) = broker.raw(persistent(V4, &id, 0)).await;
    assert!(ack.session_present);
    // [MQTT-4.4.0-1]: the PUBREL is resent, the PUBLISH is not.
    assert_eq!(
        raw.recv().await,
        Packet::PubRel(mqtt_wire::PubRel::new(packet_id))
    );
    raw.send(PubComp::new(packet_id)).await;
    p.publish(&topic, Q4::ExactlyOnce, false, b"marker").await;
    assert_eq!(&raw.recv_publish().await.payload[..], b"marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_right_after_disconnect_is_not_taken_over() {
    let broker = MqttBroker::start().await;
    let id = unique("quick");
    let (mut current, _) = broker.raw(persistent(V4, &id, 0)).await;
    for round in 0..100 {
        current.send(Disconnect::new(ReasonCode::Success)).await;
        let (mut next, ack) = broker.raw(persistent(V4, &id, 0)).await;
        assert_eq!(ack.code, ReasonCode::Success, "round {round}");
        next.send(Packet::PingReq).await;
        assert_eq!(
            next.next().await,
            Some(Packet::PingResp),
            "round {round}: the new connection must stay, the old one said DISCONNECT"
        );
        current = next;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_connection_drops() {
    let broker = MqttBroker::start().await;
    let topic = unique("will/t");
    let mut watcher = broker.connect4(&unique("watch")).await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;

    let mut o4 = broker.v4(&unique("dies4"));
    o4.set_last_will(rumqttc::LastWill::new(
        &topic,
        "gone4",
        Q4::AtLeastOnce,
        false,
    ));
    Mqtt4::connect(o4).await.kill();
    assert_eq!(watcher.next_text().await, "gone4");

    let mut o5 = broker.v5(&unique("dies5"));
    o5.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
        &topic,
        "gone5",
        Q5::AtLeastOnce,
        false,
        None,
    ));
    Mqtt5::connect(o5).await.kill();
    assert_eq!(watcher.next_text().await, "gone5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_not_published_after_a_normal_disconnect() {
    let broker = MqttBroker::start().await;
    let topic = unique("will/t");
    let mut watcher = broker.connect4(&unique("watch")).await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;
    let mut o4 = broker.v4(&unique("polite4"));
    o4.set_last_will(rumqttc::LastWill::new(
        &topic,
        "will4",
        Q4::AtLeastOnce,
        false,
    ));
    Mqtt4::connect(o4).await.disconnect().await;
    let (mut raw5, _) = broker
        .raw(with_will(
            connect_packet(V5, &unique("polite5")),
            &topic,
            "will5",
            None,
        ))
        .await;
    raw5.send(Disconnect::new(ReasonCode::Success)).await;
    assert!(raw5.until_closed().await.is_empty());
    publish_once(&broker, &topic, "marker").await;
    assert_eq!(watcher.next_text().await, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_with_will_message_0x04_publishes_the_will() {
    let broker = MqttBroker::start().await;
    let topic = unique("will/t");
    let mut watcher = broker.connect4(&unique("watch")).await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;
    let (mut raw, _) = broker
        .raw(with_will(
            connect_packet(V5, &unique("w04")),
            &topic,
            "asked for",
            None,
        ))
        .await;
    raw.send(Disconnect::new(ReasonCode::DisconnectWithWillMessage))
        .await;
    assert!(raw.until_closed().await.is_empty());
    assert_eq!(watcher.next_text().await, "asked for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_will_is_not_published_when_the_client_reconnects_within_the_delay() {
    let broker = MqttBroker::start().await;
    let topic = unique("will/t");
    let mut watcher = broker.connect4(&unique("watch")).await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;
    let back_id = unique("back");
    let back = with_will(
        persistent(V5, &back_id, 60),
        &topic,
        "back: must not come",
        Some(2),
    );
    let (raw, _) = broker.raw(back.clone()).await;
    drop(raw);
    // A control client whose will is due a second after the first one's would be.
    let gone = with_will(persistent(V5, &unique("gone"), 60), &topic, "gone", Some(3));
    let (control, _) = broker.raw(gone).await;
    drop(control);
    let (_back_again, ack) = broker.raw(back).await;
    assert!(ack.session_present);
    let started = Instant::now();
    assert_eq!(watcher.next_text().await, "gone");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "a will with delay 3 was published after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_takeover_hands_the_persistent_session_to_the_new_connection() {
    let broker = MqttBroker::start().await;
    let id = unique("handover");
    let topic = unique("handover/t");
    let mut o = broker.v4(&id);
    o.set_clean_session(false);
    let mut first = Mqtt4::connect(o.clone()).await;
    first.subscribe(&topic, Q4::AtLeastOnce).await;
    let mut second = Mqtt4::connect(o).await;
    assert!(second.session_present);
    first.closed().await;
    publish_once(&broker, &topic, "to the new connection").await;
    assert_eq!(second.next_text().await, "to the new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_in_disconnect_replaces_the_one_from_connect() {
    let broker = MqttBroker::start().await;
    // 60 s at CONNECT, 0 at DISCONNECT: the session ends with the connection.
    let id = unique("shorten");
    let (mut raw, _) = broker.raw(persistent(V5, &id, 60)).await;
    let mut bye = Disconnect::new(ReasonCode::Success);
    bye.properties.session_expiry_interval = Some(0);
    raw.send(bye).await;
    assert!(raw.until_closed().await.is_empty());
    let (_raw, ack) = broker.raw(persistent(V5, &id, 60)).await;
    assert!(!ack.session_present);

    // 0 at CONNECT cannot be raised at DISCONNECT [MQTT-3.14.2-2]: a protocol error.
    let (mut raw, _) = broker.raw(persistent(V5, &unique("raise"), 0)).await;
    let mut bye = Disconnect::new(ReasonCode::Success);
    bye.properties.session_expiry_interval = Some(60);
    raw.send(bye).await;
    let sent = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::ProtocolError),
        "got {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_queue_keeps_the_newest_messages_up_to_its_limit() {
    let config = pigeon_server::ServerConfig {
        mqtt_max_queued_messages: 3,
        ..pigeon_server::ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let topic = unique("limit/t");
    let mut o = broker.v4(&unique("away"));
    o.set_clean_session(false);
    let mut c = Mqtt4::connect(o.clone()).await;
    c.subscribe(&topic, Q4::AtLeastOnce).await;
    c.disconnect().await;
    let mut p = broker.connect4(&unique("pub")).await;
    for n in 1..=5 {
        p.publish(&topic, Q4::AtLeastOnce, false, format!("m{n}").as_bytes())
            .await;
    }
    p.publish(&topic, Q4::AtLeastOnce, false, b"m6").await;
    let mut c = Mqtt4::connect(o).await;
    for n in 4..=6 {
        assert_eq!(
            c.next_text().await,
            format!("m{n}"),
            "the oldest are dropped first"
        );
    }
    p.publish(&topic, Q4::AtLeastOnce, false, b"live").await;
    assert_eq!(c.next_text().await, "live");
}
