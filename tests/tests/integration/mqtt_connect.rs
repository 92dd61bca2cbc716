//! MQTT CONNECT and the life of a connection: who may log in (anonymous from loopback,
//! guest/guest, wrong passwords, `vhost:user`), client identifiers, keep-alive, session
//! takeover, and input no client should send (garbage, a malformed CONNECT, an oversized
//! packet), after which the broker must go on serving others.

use mqtt_wire::{Packet, ProtocolVersion, QoS, ReasonCode};
use pigeon_server::ServerConfig;
use pigeon_tests::mqtt_support::{
    connect_packet, publish_packet, subscribe_packet, Mqtt4, Mqtt5, MqttBroker, Raw,
};
use pigeon_tests::unique;
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{ConnectReturnCode as V4Code, QoS as Q4};
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The 3.1.1 return code a refused rumqttc client saw.
fn refused4(result: Result<Mqtt4, rumqttc::ConnectionError>) -> V4Code {
    match result {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

/// The 5.0 reason code a refused rumqttc client saw.
fn refused5(result: Result<Mqtt5, rumqttc::v5::ConnectionError>) -> V5Code {
    match result {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

/// Proves the broker still serves: a fresh client gets its own message back.
async fn broker_still_serves(broker: &MqttBroker) {
    let mut c = broker.connect4(&unique("alive")).await;
    let topic = unique("alive/t");
    c.subscribe(&topic, Q4::AtLeastOnce).await;
    c.publish(&topic, Q4::AtLeastOnce, false, b"still here")
        .await;
    assert_eq!(c.next_text().await, "still here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_from_loopback_is_accepted_in_3_1_1_and_5_0() {
    let broker = MqttBroker::start().await;
    let c4 = broker.connect4(&unique("anon4")).await;
    assert!(!c4.session_present);
    let c5 = broker.connect5(&unique("anon5")).await;
    assert_eq!(c5.connack.code, V5Code::Success);
    broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_client_is_refused_when_anonymous_login_is_off() {
    let config = ServerConfig {
        mqtt_allow_anonymous: false,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let code = refused4(Mqtt4::try_connect(broker.v4(&unique("anon"))).await);
    assert_eq!(code, V4Code::NotAuthorized);
    let code = refused5(Mqtt5::try_connect(broker.v5(&unique("anon"))).await);
    assert_eq!(code, V5Code::NotAuthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_with_the_right_password_is_accepted_in_3_1_1_and_5_0() {
    let broker = MqttBroker::start().await;
    let mut o4 = broker.v4(&unique("guest4"));
    o4.set_credentials("guest", "guest");
    Mqtt4::connect(o4).await;
    let mut o5 = broker.v5(&unique("guest5"));
    o5.set_credentials("guest", "guest");
    Mqtt5::connect(o5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_code_4_in_3_1_1_and_0x86_in_5_0() {
    let broker = MqttBroker::start().await;
    let mut o4 = broker.v4(&unique("bad4"));
    o4.set_credentials("guest", "wrong");
    assert_eq!(
        refused4(Mqtt4::try_connect(o4).await),
        V4Code::BadUserNamePassword
    );
    let mut o5 = broker.v5(&unique("bad5"));
    o5.set_credentials("guest", "wrong");
    assert_eq!(
        refused5(Mqtt5::try_connect(o5).await),
        V5Code::BadUserNamePassword
    );
    let mut unknown = broker.v4(&unique("nobody"));
    unknown.set_credentials("nobody", "guest");
    assert_eq!(
        refused4(Mqtt4::try_connect(unknown).await),
        V4Code::BadUserNamePassword
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_prefix_in_the_user_name_selects_the_vhost() {
    let broker = MqttBroker::start().await;
    // `/:guest` is guest on the default vhost: it shares topics with a plain client.
    let mut plain = broker.connect4(&unique("plain")).await;
    let topic = unique("vhost/t");
    plain.subscribe(&topic, Q4::AtLeastOnce).await;
    let mut o = broker.v4(&unique("prefixed"));
    o.set_credentials("/:guest", "guest");
    let mut prefixed = Mqtt4::connect(o).await;
    prefixed
        .publish(&topic, Q4::AtLeastOnce, false, b"via /:guest")
        .await;
    assert_eq!(plain.next_text().await, "via /:guest");

    // A vhost that does not exist is refused, with the right password.
    let mut o4 = broker.v4(&unique("novhost4"));
    o4.set_credentials("no-such-vhost:guest", "guest");
    assert_eq!(
        refused4(Mqtt4::try_connect(o4).await),
        V4Code::NotAuthorized
    );
    let mut o5 = broker.v5(&unique("novhost5"));
    o5.set_credentials("no-such-vhost:guest", "guest");
    assert_eq!(
        refused5(Mqtt5::try_connect(o5).await),
        V5Code::NotAuthorized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_in_5_0_gets_an_assigned_identifier() {
    let broker = MqttBroker::start().await;
    let a = broker.connect5("").await;
    let b = broker.connect5("").await;
    let id = |c: &Mqtt5| {
        c.connack
            .properties
            .as_ref()
            .and_then(|p| p.assigned_client_identifier.clone())
            .expect("CONNACK carries an Assigned Client Identifier")
    };
    assert!(!id(&a).is_empty());
    assert_ne!(id(&a), id(&b), "each client gets its own identifier");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_in_3_1_1_is_accepted_with_a_clean_session_only() {
    let broker = MqttBroker::start().await;
    let mut c = broker.connect4("").await;
    let topic = unique("noid/t");
    c.subscribe(&topic, Q4::AtMostOnce).await;
    c.publish(&topic, Q4::AtMostOnce, false, b"works").await;
    assert_eq!(c.next_text().await, "works");

    // [MQTT-3.1.3-8]: clean session 0 with an empty id is refused with return code 0x02.
    let mut connect = connect_packet(V4, "");
    connect.clean_start = false;
    let (mut raw, ack) = broker.raw(connect).await;
    assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
    assert!(
        raw.until_closed().await.is_empty(),
        "then the broker closes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_after_one_and_a_half_keep_alive_periods() {
    let broker = MqttBroker::start().await;
    let mut connect = connect_packet(V4, &unique("silent4"));
    connect.keep_alive = 1;
    let (mut silent4, _) = broker.raw(connect).await;
    let mut connect = connect_packet(V5, &unique("silent5"));
    connect.keep_alive = 1;
    let (mut silent5, _) = broker.raw(connect).await;
    let started = Instant::now();

    assert!(silent4.until_closed().await.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(5000),
        "closed too late: {took:?}"
    );
    let sent = silent5.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::KeepAliveTimeout),
        "5.0 gets DISCONNECT 0x8D first, got {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_pings_within_its_keep_alive_stays_connected() {
    let broker = MqttBroker::start().await;
    let mut connect = connect_packet(V4, &unique("pinger"));
    connect.keep_alive = 1;
    let (mut raw, _) = broker.raw(connect).await;
    // Four pings half a second apart span 2 s, longer than the 1.5 s grace.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        raw.send(Packet::PingReq).await;
        assert_eq!(raw.recv().await, Packet::PingResp);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_with_the_same_client_id_takes_the_session_over() {
    let broker = MqttBroker::start().await;
    let id = unique("twin4");
    let mut first = broker.connect4(&id).await;
    let mut second = broker.connect4(&id).await;
    first.closed().await;
    let topic = unique("twin/t");
    second.subscribe(&topic, Q4::AtLeastOnce).await;
    second
        .publish(&topic, Q4::AtLeastOnce, false, b"mine now")
        .await;
    assert_eq!(second.next_text().await, "mine now");

    // 5.0: the first connection is told why, DISCONNECT 0x8E Session taken over. (A raw
    // client: rumqttc 0.25 cannot read a DISCONNECT that omits its property length.)
    let id = unique("twin5");
    let (mut first, _) = broker.raw(connect_packet(V5, &id)).await;
    let mut second = broker.connect5(&id).await;
    let sent = first.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::SessionTakenOver),
        "got {sent:?}"
    );
    let topic = unique("twin/t5");
    second.subscribe(&topic, Q5::AtLeastOnce).await;
    second
        .publish(&topic, Q5::AtLeastOnce, false, b"mine")
        .await;
    assert_eq!(second.next_text().await, "mine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_connect_is_disconnected_and_others_are_served() {
    let broker = MqttBroker::start().await;
    let mut raw = Raw::open(broker.addr(), V4).await;
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.until_closed().await.is_empty());
    // A packet other than CONNECT first [MQTT-3.1.0-1].
    let mut raw = Raw::open(broker.addr(), V4).await;
    raw.send(publish_packet("a/b", QoS::AtMostOnce, None, b"x"))
        .await;
    assert!(raw.until_closed().await.is_empty());
    broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connect_is_disconnected_and_others_are_served() {
    let broker = MqttBroker::start().await;
    // CONNECT with the reserved connect flag set [MQTT-3.1.2-3].
    let mut raw = Raw::open(broker.addr(), V4).await;
    raw.send_bytes(b"\x10\x0e\x00\x04MQTT\x04\x03\x00\x3c\x00\x02id")
        .await;
    assert!(raw.until_closed().await.is_empty());
    // A client id whose length runs past the end of the packet.
    let mut raw = Raw::open(broker.addr(), V4).await;
    raw.send_bytes(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x09id")
        .await;
    assert!(raw.until_closed().await.is_empty());
    // An unknown protocol level gets CONNACK 0x01 before the close [MQTT-3.1.2-2].
    let mut raw = Raw::open(broker.addr(), V4).await;
    raw.send_bytes(b"\x10\x0e\x00\x04MQTT\x07\x02\x00\x3c\x00\x02id")
        .await;
    let sent = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::ConnAck(a)] if a.code == ReasonCode::UnsupportedProtocolVersion),
        "got {sent:?}"
    );
    broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_over_the_maximum_size_is_disconnected_and_others_are_served() {
    let config = ServerConfig {
        mqtt_max_packet_size: 1024,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let big = vec![b'x'; 4096];
    let (mut raw4, _) = broker.raw(connect_packet(V4, &unique("big4"))).await;
    raw4.send(publish_packet("big/t", QoS::AtMostOnce, None, &big))
        .await;
    assert!(raw4.until_closed().await.is_empty());

    let (mut raw5, ack) = broker.raw(connect_packet(V5, &unique("big5"))).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(1024));
    raw5.send(publish_packet("big/t", QoS::AtMostOnce, None, &big))
        .await;
    let sent = raw5.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PacketTooLarge),
        "5.0 gets DISCONNECT 0x95 first, got {sent:?}"
    );
    broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_on_a_connection_is_a_protocol_error() {
    let broker = MqttBroker::start().await;
    let (mut raw, _) = broker.raw(connect_packet(V5, &unique("again"))).await;
    raw.send(connect_packet(V5, &unique("again"))).await;
    let sent = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason.is_error()),
        "got {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_3_1_client_can_publish_and_subscribe() {
    let broker = MqttBroker::start().await;
    let v31 = ProtocolVersion::V3_1;
    let topic = unique("v31/t");
    let (mut raw, ack) = broker.raw(connect_packet(v31, &unique("old"))).await;
    assert_eq!(ack.code, ReasonCode::Success);
    raw.send(subscribe_packet(1, &topic, QoS::AtLeastOnce))
        .await;
    assert!(matches!(raw.recv().await, Packet::SubAck(_)));
    raw.send(publish_packet(
        &topic,
        QoS::AtLeastOnce,
        Some(2),
        b"hello 3.1",
    ))
    .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(raw.recv().await);
    }
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 2)),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::Publish(m) if &m.payload[..] == b"hello 3.1")),
        "{got:?}"
    );
    // 3.1 has no empty client identifiers.
    let (_, ack) = broker.raw(connect_packet(v31, "")).await;
    assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
}
