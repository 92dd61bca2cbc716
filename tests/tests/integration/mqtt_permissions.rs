//! Permissions over MQTT 3.1.1 and 5.0, as RabbitMQ's MQTT plugin maps them (docs/security.md):
//! CONNECT needs the vhost; SUBSCRIBE configure (new session queue), read (consume) and write
//! (binding) on the session queue plus read on `amq.topic`; PUBLISH write on `amq.topic`.
//! By default a refused PUBLISH or SUBSCRIBE closes the connection (RabbitMQ's
//! `mqtt.disconnect_on_unauthorized`); with it off, MQTT 5 gets 0x87 and 3.1.1 0x80 in SUBACK,
//! a refused QoS 1 PUBLISH a PUBACK (0x87 in 5.0) and is dropped.

use bytes::Bytes;
use mqtt_wire::{Packet, ProtocolVersion, PubAck, PubRec, QoS, ReasonCode};
use pigeon_broker::permission::Permission;
use pigeon_server::ServerConfig;
use pigeon_tests::access::{add_user, perm, PASSWORD, USER};
use pigeon_tests::mqtt_support::{
    connect_packet, publish_packet, subscribe_packet, Mqtt4, Mqtt5, MqttBroker, Raw,
};
use pigeon_tests::unique;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{QoS as Q4, SubscribeReasonCode as Sub4};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker with [`USER`] holding `permission` in `/`; `disconnect` is
/// `mqtt_disconnect_on_unauthorized`.
async fn broker(permission: Option<Permission>, disconnect: bool) -> MqttBroker {
    let config = ServerConfig {
        mqtt_disconnect_on_unauthorized: disconnect,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let access = broker.broker().access();
    add_user(access);
    if let Some(p) = permission {
        access.set_permission(USER, "/", p);
    }
    broker
}

/// A raw CONNECT as [`USER`].
async fn raw_user(
    broker: &MqttBroker,
    version: ProtocolVersion,
    id: &str,
) -> (Raw, mqtt_wire::ConnAck) {
    let mut connect = connect_packet(version, id);
    connect.username = Some(USER.into());
    connect.password = Some(Bytes::from_static(PASSWORD.as_bytes()));
    broker.raw(connect).await
}

async fn user4(broker: &MqttBroker, id: &str) -> Mqtt4 {
    let mut o = broker.v4(id);
    o.set_credentials(USER, PASSWORD);
    Mqtt4::connect(o).await
}

async fn user5(broker: &MqttBroker, id: &str) -> Mqtt5 {
    let mut o = broker.v5(id);
    o.set_credentials(USER, PASSWORD);
    Mqtt5::connect(o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_needs_a_permission_in_the_vhost() {
    let broker = broker(None, true).await;
    let (_, ack4) = raw_user(&broker, V4, &unique("c4")).await;
    assert_eq!(ack4.code, ReasonCode::NotAuthorized, "3.1.1: 0x05");
    let (_, ack5) = raw_user(&broker, V5, &unique("c5")).await;
    assert_eq!(ack5.code, ReasonCode::NotAuthorized, "5.0: 0x87");
    broker
        .broker()
        .access()
        .set_permission(USER, "/", Permission::all());
    let (_, ok) = raw_user(&broker, V5, &unique("c5")).await;
    assert_eq!(ok.code, ReasonCode::Success);
}

/// SUBSCRIBE as the user with `permission`: allowed with every permission, refused with
/// `permission` (0x87 in 5.0, 0x80 in 3.1.1), the connection kept (disconnect off).
async fn subscribe_row(refusing: Permission) {
    let broker = broker(Some(Permission::all()), false).await;
    let mut ok5 = user5(&broker, &unique("ok5")).await;
    ok5.subscribe("row/t", Q5::AtLeastOnce).await;
    broker.broker().access().set_permission(USER, "/", refusing);
    let mut c5 = user5(&broker, &unique("s5")).await;
    let codes = c5
        .subscribe_with(
            pigeon_tests::mqtt_support::filter5("row/t", Q5::AtLeastOnce),
            None,
        )
        .await;
    assert_eq!(codes, vec![Sub5::NotAuthorized]);
    let mut c4 = user4(&broker, &unique("s4")).await;
    assert_eq!(
        c4.subscribe("row/t", Q4::AtLeastOnce).await,
        vec![Sub4::Failure]
    );
    // Still connected: a second request is answered.
    assert_eq!(
        c4.subscribe("row/t", Q4::AtMostOnce).await,
        vec![Sub4::Failure]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_needs_read_on_the_exchange() {
    subscribe_row(perm(".*", ".*", "^mqtt-")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_needs_configure_on_a_new_session_queue() {
    subscribe_row(perm("^nothing$", ".*", ".*")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_needs_read_on_the_session_queue_to_consume() {
    subscribe_row(perm(".*", ".*", "^amq\\.topic$")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_needs_write_on_the_session_queue_to_bind() {
    subscribe_row(perm(".*", "^amq\\.topic$", ".*")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_subscribe_closes_the_connection_by_default_after_the_suback() {
    let broker = broker(Some(perm(".*", ".*", "^mqtt-")), true).await;
    let (mut raw5, _) = raw_user(&broker, V5, &unique("d5")).await;
    raw5.send(subscribe_packet(1, "a/b", QoS::AtLeastOnce))
        .await;
    let seen = raw5.until_closed().await;
    assert!(
        matches!(&seen[..], [Packet::SubAck(s), Packet::Disconnect(d)]
            if s.reasons == vec![ReasonCode::NotAuthorized] && d.reason == ReasonCode::NotAuthorized),
        "{seen:?}"
    );
    let (mut raw4, _) = raw_user(&broker, V4, &unique("d4")).await;
    raw4.send(subscribe_packet(1, "a/b", QoS::AtLeastOnce))
        .await;
    let seen = raw4.until_closed().await;
    assert!(
        matches!(&seen[..], [Packet::SubAck(s)] if s.reasons == vec![ReasonCode::UnspecifiedError]),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_needs_write_on_the_exchange_and_answers_0x87_when_not_disconnecting() {
    let broker = broker(Some(perm(".*", "^mqtt-", ".*")), false).await;
    // A guest subscriber sees only what was allowed.
    let mut sub = broker.connect5(&unique("sub")).await;
    sub.subscribe("pub/t", Q5::AtLeastOnce).await;

    let (mut raw5, _) = raw_user(&broker, V5, &unique("p5")).await;
    raw5.send(publish_packet("pub/t", QoS::AtMostOnce, None, b"q0"))
        .await;
    raw5.send(publish_packet("pub/t", QoS::AtLeastOnce, Some(1), b"q1"))
        .await;
    let mut ack = PubAck::new(1);
    ack.reason = ReasonCode::NotAuthorized;
    assert_eq!(raw5.recv().await, Packet::PubAck(ack));
    raw5.send(publish_packet("pub/t", QoS::ExactlyOnce, Some(2), b"q2"))
        .await;
    let mut rec = PubRec::new(2);
    rec.reason = ReasonCode::NotAuthorized;
    assert_eq!(raw5.recv().await, Packet::PubRec(rec));

    // 3.1.1 has no reason codes: a plain PUBACK, the message dropped (RabbitMQ).
    let (mut raw4, _) = raw_user(&broker, V4, &unique("p4")).await;
    raw4.send(publish_packet("pub/t", QoS::AtLeastOnce, Some(3), b"q1-4"))
        .await;
    assert_eq!(raw4.recv().await, Packet::PubAck(PubAck::new(3)));

    // Allowed now: the first message the subscriber gets is this one.
    broker
        .broker()
        .access()
        .set_permission(USER, "/", Permission::all());
    raw5.send(publish_packet(
        "pub/t",
        QoS::AtLeastOnce,
        Some(4),
        b"allowed",
    ))
    .await;
    assert_eq!(raw5.recv().await, Packet::PubAck(PubAck::new(4)));
    assert_eq!(sub.next_text().await, "allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publish_closes_the_connection_by_default() {
    let broker = broker(Some(perm(".*", "^mqtt-", ".*")), true).await;
    let (mut raw5, _) = raw_user(&broker, V5, &unique("x5")).await;
    raw5.send(publish_packet("pub/t", QoS::AtLeastOnce, Some(1), b"m"))
        .await;
    let seen = raw5.until_closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::NotAuthorized),
        "{seen:?}"
    );
    // 3.1.1: closed without an answer, also for QoS 0.
    let mut c4 = user4(&broker, &unique("x4")).await;
    c4.client
        .publish("pub/t", Q4::AtMostOnce, false, b"m".to_vec())
        .await
        .unwrap();
    c4.closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_come_only_with_an_allowed_subscription() {
    let broker = broker(Some(Permission::all()), false).await;
    let mut guest = broker.connect4(&unique("retainer")).await;
    guest
        .publish("ret/secret", Q4::AtLeastOnce, true, b"secret")
        .await;
    guest
        .publish("ret/open", Q4::AtLeastOnce, true, b"open")
        .await;
    broker.broker().access().set_topic_permission(
        USER,
        "/",
        pigeon_tests::access::topic_perm("amq.topic", ".*", "^ret\\.open$"),
    );
    let mut c4 = user4(&broker, &unique("reader")).await;
    assert_eq!(
        c4.subscribe("ret/secret", Q4::AtLeastOnce).await,
        vec![Sub4::Failure]
    );
    assert_eq!(
        c4.subscribe("ret/open", Q4::AtLeastOnce).await,
        vec![Sub4::Success(Q4::AtLeastOnce)]
    );
    // The first retained message delivered is the allowed one.
    assert_eq!(c4.next_text().await, "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_published_only_where_the_user_may_publish() {
    // The user may publish under `open/` only (topic permission on amq.topic).
    let broker = broker(Some(Permission::all()), false).await;
    broker.broker().access().set_topic_permission(
        USER,
        "/",
        pigeon_tests::access::topic_perm("amq.topic", "^open\\.", ".*"),
    );
    let mut watcher = broker.connect4(&unique("watcher")).await;
    watcher.subscribe("closed/will", Q4::AtLeastOnce).await;
    watcher.subscribe("open/will", Q4::AtLeastOnce).await;
    for (topic, id) in [("closed/will", "dies-closed"), ("open/will", "dies-open")] {
        let mut o = broker.v4(id);
        o.set_credentials(USER, PASSWORD);
        o.set_last_will(rumqttc::LastWill::new(topic, topic, Q4::AtLeastOnce, false));
        Mqtt4::connect(o).await.kill();
    }
    // A new connection with the first client id waits until the dead one has finished (its
    // will decided), so the next message the watcher gets is either that will or this one.
    let mut again = user4(&broker, "dies-closed").await;
    again
        .publish("open/will", Q4::AtLeastOnce, false, b"marker")
        .await;
    let mut seen = vec![watcher.next_text().await, watcher.next_text().await];
    seen.sort();
    assert_eq!(seen, vec!["marker".to_string(), "open/will".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_needs_the_bindings_permissions_and_a_refusal_keeps_the_subscription() {
    let broker = broker(Some(Permission::all()), false).await;
    let (mut raw, _) = raw_user(&broker, V5, &unique("unsub")).await;
    raw.send(subscribe_packet(1, "keep/t", QoS::AtMostOnce))
        .await;
    assert!(
        matches!(raw.recv().await, Packet::SubAck(s) if s.reasons == vec![ReasonCode::Success])
    );
    // No read on the exchange any more: the binding cannot be removed.
    broker
        .broker()
        .access()
        .set_permission(USER, "/", perm(".*", ".*", "^mqtt-"));
    let unsubscribe = |id| mqtt_wire::Unsubscribe {
        packet_id: id,
        properties: Default::default(),
        filters: vec![mqtt_wire::TopicFilter::new("keep/t").unwrap()],
    };
    raw.send(unsubscribe(2)).await;
    assert!(
        matches!(raw.recv().await, Packet::UnsubAck(u) if u.reasons == vec![ReasonCode::NotAuthorized])
    );
    // Still subscribed: a message on the topic arrives.
    let mut guest = broker.connect4(&unique("guest")).await;
    guest
        .publish("keep/t", Q4::AtLeastOnce, false, b"still")
        .await;
    assert_eq!(&raw.recv_publish().await.payload[..], b"still");
    // Allowed again: removed.
    broker
        .broker()
        .access()
        .set_permission(USER, "/", Permission::all());
    raw.send(unsubscribe(3)).await;
    assert!(
        matches!(raw.recv().await, Packet::UnsubAck(u) if u.reasons == vec![ReasonCode::Success])
    );
}
