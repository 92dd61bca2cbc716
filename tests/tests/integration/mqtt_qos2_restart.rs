//! Exactly-once across a restart: the packet id of a QoS 2 PUBLISH that a persistent session
//! has acknowledged with PUBREC, and not yet seen released (PUBREL), is kept on disk. A client
//! that resends the PUBLISH (DUP) after the broker restarted gets PUBREC again and the message is
//! not routed a second time; PUBREL then completes with PUBCOMP, and the id is free again, also
//! across the next restart.
//!
//! The broker runs in-process on a data directory and is restarted on it, as in `durability.rs`;
//! these tests need their own server configuration, so they pass without checking anything
//! against an external broker (reference mode).

use bytes::BytesMut;
use mqtt_wire::{
    encode, Connect, Disconnect, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, QoS,
    ReasonCode,
};
use pigeon_tests::mqtt_support::{connect_packet, publish_packet, subscribe_packet, Raw};
use pigeon_tests::{unique, DataDir, TestBroker};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A 5.0 CONNECT that keeps its session for ever (clean start 0, expiry 0xFFFFFFFF). (A finite
/// expiry would leave the session's expiry timer, and with it the store, alive after the
/// in-process server shut down, and the restart could not reopen the directory.)
fn persistent(client_id: &str) -> Connect {
    let mut c = connect_packet(V5, client_id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(u32::MAX);
    c
}

/// Connects a raw 5.0 client with a persistent session; returns it and the session present
/// flag.
async fn connect(broker: &TestBroker, client_id: &str) -> (Raw, bool) {
    let addr = broker.server().unwrap().mqtt_addr().unwrap();
    let (raw, ack) = Raw::connect(addr, persistent(client_id)).await;
    assert_eq!(ack.code, ReasonCode::Success);
    (raw, ack.session_present)
}

/// A PINGREQ / PINGRESP round trip: everything sent before it has been handled.
async fn round_trip(raw: &mut Raw) {
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Packet::PingResp);
}

/// A subscriber with a persistent session, subscribed to `topic` at QoS 1.
async fn subscriber(broker: &TestBroker, client_id: &str, topic: &str) -> Raw {
    let (mut sub, _) = connect(broker, client_id).await;
    sub.send(subscribe_packet(1, topic, QoS::AtLeastOnce)).await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    sub
}

/// Receives the next PUBLISH, acknowledges it, and returns its payload.
async fn receive(sub: &mut Raw) -> String {
    let p = sub.recv_publish().await;
    sub.send(PubAck::new(p.packet_id.unwrap())).await;
    String::from_utf8_lossy(&p.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_publish_resent_after_a_restart_before_pubrel_is_not_routed_twice() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (sub_id, pub_id, topic) = (unique("q2-sub"), unique("q2-pub"), unique("q2/t"));
    let mut sub = subscriber(&broker, &sub_id, &topic).await;
    let (mut publisher, _) = connect(&broker, &pub_id).await;
    let once = publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"once");
    publisher.send(once.clone()).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubRec::new(7)));
    assert_eq!(receive(&mut sub).await, "once");
    round_trip(&mut sub).await; // the PUBACK is handled before the restart

    drop((sub, publisher));
    let broker = data.restart(broker).await;
    let (mut sub, present) = connect(&broker, &sub_id).await;
    assert!(present, "the subscriber's session came back");
    let (mut publisher, present) = connect(&broker, &pub_id).await;
    assert!(present, "the publisher's session came back");
    // [MQTT-4.3.3-2]: the PUBLISH is resent with DUP until PUBREC is seen; the broker answers
    // PUBREC again and does not route it a second time [MQTT-4.3.3-10].
    let mut again = once.clone();
    again.dup = true;
    publisher.send(again).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubRec::new(7)));
    // A later message on the same connection reaches the subscriber first, so `once` was not
    // routed again.
    publisher
        .send(publish_packet(&topic, QoS::AtLeastOnce, Some(8), b"marker"))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubAck(PubAck::new(8)));
    assert_eq!(receive(&mut sub).await, "marker");
    // The release completes with success: the id was known.
    publisher.send(PubRel::new(7)).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubComp::new(7)));
    round_trip(&mut sub).await;

    // Released, the id is free: after another restart it starts a new message.
    drop((sub, publisher));
    let broker = data.restart(broker).await;
    let (mut sub, _) = connect(&broker, &sub_id).await;
    let (mut publisher, _) = connect(&broker, &pub_id).await;
    publisher
        .send(publish_packet(&topic, QoS::ExactlyOnce, Some(7), b"new"))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubRec::new(7)));
    assert_eq!(receive(&mut sub).await, "new");
    publisher.send(PubRel::new(7)).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubComp::new(7)));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrel_after_a_restart_completes_a_qos2_publish_received_before_it() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let pub_id = unique("q2-rel");
    let topic = unique("q2/rel");
    let (mut publisher, _) = connect(&broker, &pub_id).await;
    for id in [1, 2, 3] {
        publisher
            .send(publish_packet(&topic, QoS::ExactlyOnce, Some(id), b"x"))
            .await;
    }
    for id in [1, 2, 3] {
        assert_eq!(publisher.recv().await, Packet::PubRec(PubRec::new(id)));
    }
    publisher.send(PubRel::new(2)).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubComp::new(2)));

    drop(publisher);
    let broker = data.restart(broker).await;
    let (mut publisher, _) = connect(&broker, &pub_id).await;
    for id in [1, 3] {
        publisher.send(PubRel::new(id)).await;
        assert_eq!(publisher.recv().await, Packet::PubComp(PubComp::new(id)));
    }
    // Released before the restart: unknown now.
    publisher.send(PubRel::new(2)).await;
    let mut unknown = PubComp::new(2);
    unknown.reason = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(publisher.recv().await, Packet::PubComp(unknown));
    broker.stop().await;
}

/// A QoS 2 PUBLISH followed by DISCONNECT in the same read batch: the connection ends inside the
/// batch, before the packet loop writes the batch's inbound QoS 2 ids at its end; the close
/// writes them. After a restart the resent PUBLISH is recognised, not routed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_id_of_a_batch_ended_by_disconnect_survives_a_restart() {
    let data = DataDir::with(|_| {});
    let Some(broker) = data.start().await else {
        return;
    };
    let (sub_id, pub_id, topic) = (unique("q2d-sub"), unique("q2d-pub"), unique("q2d/t"));
    let mut sub = subscriber(&broker, &sub_id, &topic).await;
    let (mut publisher, _) = connect(&broker, &pub_id).await;
    let once = publish_packet(&topic, QoS::ExactlyOnce, Some(9), b"once");
    // One write, so that the broker reads both packets in one batch.
    let mut bytes = BytesMut::new();
    encode(&Packet::Publish(once.clone()), V5, &mut bytes).unwrap();
    let disconnect = Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION));
    encode(&disconnect, V5, &mut bytes).unwrap();
    publisher.send_bytes(&bytes).await;
    // The broker closes once the session is detached (and the id written).
    publisher.until_closed().await;
    assert_eq!(receive(&mut sub).await, "once");
    round_trip(&mut sub).await;

    drop((sub, publisher));
    let broker = data.restart(broker).await;
    let (mut sub, _) = connect(&broker, &sub_id).await;
    let (mut publisher, present) = connect(&broker, &pub_id).await;
    assert!(present, "the publisher's session came back");
    let mut again = once.clone();
    again.dup = true;
    publisher.send(again).await;
    assert_eq!(publisher.recv().await, Packet::PubRec(PubRec::new(9)));
    // `marker` is the next message the subscriber gets: `once` was not routed again.
    publisher
        .send(publish_packet(
            &topic,
            QoS::AtLeastOnce,
            Some(10),
            b"marker",
        ))
        .await;
    assert_eq!(publisher.recv().await, Packet::PubAck(PubAck::new(10)));
    assert_eq!(receive(&mut sub).await, "marker");
    publisher.send(PubRel::new(9)).await;
    assert_eq!(publisher.recv().await, Packet::PubComp(PubComp::new(9)));
    broker.stop().await;
}
