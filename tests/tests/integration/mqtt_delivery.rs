//! MQTT delivery guarantees and retained messages: QoS 0, 1 and 2 in both directions, the
//! downgrade to the subscription's QoS, exactly-once for inbound QoS 2 (a PUBLISH resent before
//! PUBREL is routed once), ordered flow under a small receive maximum, and retained messages
//! (set, replace, clear, the RETAIN flag, 5.0 retain handling and retain-as-published).

use mqtt_wire::{Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, QoS};
use pigeon_tests::mqtt_support::{
    connect_packet, filter5, publish_packet, subscribe_packet, Mqtt5, MqttBroker,
};
use pigeon_tests::unique;
use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule};
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::QoS as Q4;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

const QOS4: [Q4; 3] = [Q4::AtMostOnce, Q4::AtLeastOnce, Q4::ExactlyOnce];
const QOS5: [Q5; 3] = [Q5::AtMostOnce, Q5::AtLeastOnce, Q5::ExactlyOnce];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_qos_is_delivered_at_the_lower_of_publish_and_subscription_qos_in_3_1_1() {
    let broker = MqttBroker::start().await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    for (s, sub_qos) in QOS4.into_iter().enumerate() {
        let topic = unique("qos4/t");
        let mut sub = broker.connect4(&unique("sub")).await;
        sub.subscribe(&topic, sub_qos).await;
        for (p, pub_qos) in QOS4.into_iter().enumerate() {
            publisher.publish(&topic, pub_qos, false, b"m").await;
            let got = sub.next_publish().await;
            let expected = QOS4[p.min(s)];
            assert_eq!(
                got.qos, expected,
                "published {pub_qos:?}, subscribed {sub_qos:?}"
            );
            assert!(!got.retain && !got.dup);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_qos_is_delivered_at_the_lower_of_publish_and_subscription_qos_in_5_0() {
    let broker = MqttBroker::start().await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    for (s, sub_qos) in QOS5.into_iter().enumerate() {
        let topic = unique("qos5/t");
        let mut sub = broker.connect5(&unique("sub")).await;
        sub.subscribe(&topic, sub_qos).await;
        for (p, pub_qos) in QOS5.into_iter().enumerate() {
            publisher.publish(&topic, pub_qos, false, b"m").await;
            let got = sub.next_publish().await;
            let expected = QOS5[p.min(s)];
            assert_eq!(
                got.qos, expected,
                "published {pub_qos:?}, subscribed {sub_qos:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_answers_inbound_qos1_and_qos2_with_the_packet_id() {
    let broker = MqttBroker::start().await;
    let (mut raw, _) = broker.raw(connect_packet(V4, &unique("acks"))).await;
    raw.send(publish_packet("acks/t", QoS::AtLeastOnce, Some(41), b"1"))
        .await;
    assert_eq!(raw.recv().await, Packet::PubAck(PubAck::new(41)));
    raw.send(publish_packet("acks/t", QoS::ExactlyOnce, Some(42), b"2"))
        .await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(42)));
    raw.send(PubRel::new(42)).await;
    assert_eq!(raw.recv().await, Packet::PubComp(PubComp::new(42)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_resent_before_pubrel_is_delivered_once() {
    let broker = MqttBroker::start().await;
    let topic = unique("once/t");
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&topic, Q4::ExactlyOnce).await;
    let (mut raw, _) = broker.raw(connect_packet(V4, &unique("twice"))).await;
    let mut publish = publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"once");
    raw.send(publish.clone()).await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(7)));
    publish.dup = true;
    raw.send(publish).await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(7)));
    raw.send(PubRel::new(7)).await;
    assert_eq!(raw.recv().await, Packet::PubComp(PubComp::new(7)));
    // After the release the id is free: the same id is a new message.
    raw.send(publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"new"))
        .await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(7)));
    raw.send(PubRel::new(7)).await;
    assert_eq!(raw.recv().await, Packet::PubComp(PubComp::new(7)));

    assert_eq!(sub.next_text().await, "once");
    assert_eq!(sub.next_text().await, "new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_qos2_completes_the_four_way_handshake() {
    let broker = MqttBroker::start().await;
    let topic = unique("four/t");
    let (mut raw, _) = broker.raw(connect_packet(V4, &unique("sub"))).await;
    raw.send(subscribe_packet(1, &topic, QoS::ExactlyOnce))
        .await;
    assert!(matches!(raw.recv().await, Packet::SubAck(_)));
    let mut publisher = broker.connect4(&unique("pub")).await;
    for n in 0..3 {
        publisher
            .publish(&topic, Q4::ExactlyOnce, false, format!("m{n}").as_bytes())
            .await;
        let p = raw.recv_publish().await;
        assert_eq!(
            (p.qos, &p.payload[..]),
            (QoS::ExactlyOnce, format!("m{n}").as_bytes())
        );
        let id = p.packet_id.unwrap();
        raw.send(PubRec::new(id)).await;
        assert_eq!(raw.recv().await, Packet::PubRel(PubRel::new(id)));
        raw.send(PubComp::new(id)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_qos1_messages_arrive_in_order_under_a_small_receive_maximum() {
    let broker = MqttBroker::start().await;
    let topic = unique("flow/t");
    let mut o = broker.v5(&unique("slow"));
    o.set_receive_maximum(Some(3));
    let mut sub = Mqtt5::connect(o).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    for n in 0..200 {
        publisher
            .publish(&topic, Q4::AtLeastOnce, false, format!("{n}").as_bytes())
            .await;
    }
    for n in 0..200 {
        assert_eq!(sub.next_text().await, format!("{n}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_delivered_on_subscribe_with_the_retain_flag() {
    let broker = MqttBroker::start().await;
    let topic = unique("ret/t");
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, true, b"kept")
        .await;

    let mut s4 = broker.connect4(&unique("s4")).await;
    s4.subscribe(&topic, Q4::AtLeastOnce).await;
    let p = s4.next_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain, p.qos),
        (&b"kept"[..], true, Q4::AtLeastOnce)
    );
    let mut s5 = broker.connect5(&unique("s5")).await;
    s5.subscribe(&topic, Q5::AtMostOnce).await;
    let p = s5.next_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain, p.qos),
        (&b"kept"[..], true, Q5::AtMostOnce)
    );

    // A retained PUBLISH reaching an existing subscriber has RETAIN 0 [MQTT-3.3.1-9].
    publisher
        .publish(&topic, Q4::AtLeastOnce, true, b"live")
        .await;
    let p = s4.next_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"live"[..], false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_retained_message_replaces_the_older_one() {
    let broker = MqttBroker::start().await;
    let topic = unique("ret/t");
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, true, b"first")
        .await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, true, b"second")
        .await;
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&topic, Q4::AtLeastOnce).await;
    assert_eq!(sub.next_text().await, "second");
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"marker")
        .await;
    assert_eq!(
        sub.next_text().await,
        "marker",
        "only one retained message per topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_retained_payload_clears_the_retained_message() {
    let broker = MqttBroker::start().await;
    let topic = unique("ret/t");
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, true, b"kept")
        .await;
    publisher.publish(&topic, Q4::AtLeastOnce, true, b"").await;
    for v5 in [false, true] {
        let id = unique("late");
        let first = if v5 {
            let mut s = broker.connect5(&id).await;
            s.subscribe(&topic, Q5::AtLeastOnce).await;
            publisher
                .publish(&topic, Q4::AtLeastOnce, false, b"marker")
                .await;
            s.next_text().await
        } else {
            let mut s = broker.connect4(&id).await;
            s.subscribe(&topic, Q4::AtLeastOnce).await;
            publisher
                .publish(&topic, Q4::AtLeastOnce, false, b"marker")
                .await;
            s.next_text().await
        };
        assert_eq!(first, "marker", "no retained message is left (v5: {v5})");
    }
}

/// A 5.0 subscription with retain handling `rule` (0, 1 or 2).
fn with_rule(topic: &str, rule: usize) -> Filter {
    let mut f = filter5(topic, Q5::AtLeastOnce);
    f.retain_forward_rule = match rule {
        0 => RetainForwardRule::OnEverySubscribe,
        1 => RetainForwardRule::OnNewSubscribe,
        _ => RetainForwardRule::Never,
    };
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_decides_when_retained_messages_are_sent_in_5_0() {
    let broker = MqttBroker::start().await;
    let topic = unique("rh/t");
    let mut publisher = broker.connect5(&unique("pub")).await;
    publisher
        .publish(&topic, Q5::AtLeastOnce, true, b"kept")
        .await;
    let marker = |s: &'static str| s.as_bytes();
    for (rule, on_first, on_again) in [(0, true, true), (1, true, false), (2, false, false)] {
        let mut sub = broker.connect5(&unique("rh")).await;
        for expected in [on_first, on_again] {
            sub.subscribe_with(with_rule(&topic, rule), None).await;
            publisher
                .publish(&topic, Q5::AtLeastOnce, false, marker("marker"))
                .await;
            if expected {
                let p = sub.next_publish().await;
                assert_eq!(
                    (&p.payload[..], p.retain),
                    (&b"kept"[..], true),
                    "retain handling {rule}"
                );
            }
            assert_eq!(
                sub.next_text().await,
                "marker",
                "retain handling {rule}, retained expected: {expected}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_keeps_the_retain_flag_on_live_deliveries() {
    let broker = MqttBroker::start().await;
    let topic = unique("rap/t");
    let mut keep = broker.connect5(&unique("keep")).await;
    let mut f = filter5(&topic, Q5::AtLeastOnce);
    f.preserve_retain = true;
    keep.subscribe_with(f, None).await;
    let mut plain = broker.connect5(&unique("plain")).await;
    plain.subscribe(&topic, Q5::AtLeastOnce).await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    publisher.publish(&topic, Q5::AtLeastOnce, true, b"r").await;
    publisher
        .publish(&topic, Q5::AtLeastOnce, false, b"n")
        .await;
    let (r, n) = (keep.next_publish().await, keep.next_publish().await);
    assert_eq!(
        (&r.payload[..], r.retain, &n.payload[..], n.retain),
        (&b"r"[..], true, &b"n"[..], false)
    );
    let (r, n) = (plain.next_publish().await, plain.next_publish().await);
    assert_eq!(
        (&r.payload[..], r.retain, &n.payload[..], n.retain),
        (&b"r"[..], false, &b"n"[..], false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_resent_after_a_reconnect_is_still_delivered_once() {
    let broker = MqttBroker::start().await;
    let topic = unique("once/t");
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&topic, Q4::ExactlyOnce).await;
    let id = unique("resender");
    let mut connect = connect_packet(V4, &id);
    connect.clean_start = false;
    let (mut raw, _) = broker.raw(connect.clone()).await;
    raw.send(publish_packet(&topic, QoS::ExactlyOnce, Some(9), b"once"))
        .await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(9)));
    drop(raw); // before PUBREL

    let (mut raw, ack) = broker.raw(connect).await;
    assert!(ack.session_present);
    let mut again = publish_packet(&topic, QoS::ExactlyOnce, Some(9), b"once");
    again.dup = true;
    raw.send(again).await;
    assert_eq!(raw.recv().await, Packet::PubRec(PubRec::new(9)));
    raw.send(PubRel::new(9)).await;
    assert_eq!(raw.recv().await, Packet::PubComp(PubComp::new(9)));
    raw.send(publish_packet(
        &topic,
        QoS::AtLeastOnce,
        Some(10),
        b"marker",
    ))
    .await;
    assert_eq!(raw.recv().await, Packet::PubAck(PubAck::new(10)));
    assert_eq!(sub.next_text().await, "once");
    assert_eq!(sub.next_text().await, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_flow_keeps_going_while_publishers_and_acks_race() {
    // Publishers enqueue (queue, then session) while the subscriber's PUBACKs settle (session,
    // then queue): a broker that takes the two locks in both orders deadlocks here.
    let broker = MqttBroker::start().await;
    let topic = unique("race/t");
    let mut o = broker.v5(&unique("sub"));
    o.set_receive_maximum(Some(8));
    let mut sub = pigeon_tests::mqtt_support::Mqtt5::connect(o).await;
    sub.subscribe(&topic, Q5::AtLeastOnce).await;
    const PER_PUBLISHER: usize = 4000;
    let mut publishers = Vec::new();
    for _ in 0..2 {
        let p = broker.connect4(&unique("pub")).await;
        let topic = topic.clone();
        publishers.push(tokio::spawn(async move {
            for n in 0..PER_PUBLISHER {
                p.client
                    .publish(&topic, Q4::AtLeastOnce, false, n.to_string().into_bytes())
                    .await
                    .unwrap();
            }
            p // keeps the connection open until the test reads everything
        }));
    }
    for _ in 0..2 * PER_PUBLISHER {
        sub.next_publish().await;
    }
}
