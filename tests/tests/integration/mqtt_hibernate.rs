//! Hibernated MQTT connections (`mqtt_hibernate_after_ms`, crates/server/src/mqtt/hibernate.rs):
//! a connection idle with nothing in flight gives its task back and waits in the broker's
//! shared poller. Each test waits (through `ServerHandle::mqtt_hibernated`) until its clients
//! are hibernated, then checks that they behave as if awake: deliveries of QoS 0 and 1,
//! publishing, PINGREQ, the keep-alive timeout with its will, a peer that goes away, the
//! management API's listing and close, a takeover by the same client id, the shutdown.

use bytes::Bytes;
use mqtt_wire::{LastWill, Packet, ProtocolVersion, QoS, TopicName};
use pigeon_server::{ServerConfig, ServerHandle};
use pigeon_tests::http_support::Api;
use pigeon_tests::mqtt_support::{connect_packet, subscribe_packet, Mqtt4, Mqtt5, Raw};
use pigeon_tests::{unique, within, TestBroker};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::QoS as Q4;
use std::time::Duration;

/// A broker whose MQTT connections hibernate after 50 ms idle.
async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig {
        mqtt_hibernate_after_ms: 50,
        ..ServerConfig::for_tests()
    })
    .await
}

fn server(broker: &TestBroker) -> &ServerHandle {
    broker.server().expect("in-process")
}

fn port(broker: &TestBroker) -> u16 {
    server(broker).mqtt_addr().expect("MQTT listener").port()
}

/// Waits until `n` MQTT connections are hibernated.
async fn hibernated(broker: &TestBroker, n: usize) {
    let server = server(broker);
    within(&format!("{n} hibernated MQTT connections"), async {
        while server.mqtt_hibernated() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A will on `topic` (QoS 1).
fn will(topic: &str, payload: &str) -> LastWill {
    LastWill {
        topic: TopicName::new(topic).expect("a topic"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernated_clients_receive_qos0_and_qos1_publishes_and_publish() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let topic = unique("hib/deliver");
    let mut sub4 =
        Mqtt4::connect(rumqttc::MqttOptions::new(unique("sub4"), "127.0.0.1", port)).await;
    sub4.subscribe(&topic, Q4::AtLeastOnce).await;
    let mut sub5 = Mqtt5::connect(v5::MqttOptions::new(unique("sub5"), "127.0.0.1", port)).await;
    sub5.subscribe(&topic, Q5::AtLeastOnce).await;
    let mut publisher =
        Mqtt4::connect(rumqttc::MqttOptions::new(unique("pub"), "127.0.0.1", port)).await;
    hibernated(&broker, 3).await;

    // A hibernated publisher publishes (its packet wakes it); hibernated subscribers get it.
    publisher
        .publish(&topic, Q4::AtMostOnce, false, b"qos0")
        .await;
    assert_eq!(sub4.next_text().await, "qos0");
    assert_eq!(sub5.next_text().await, "qos0");
    hibernated(&broker, 3).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"qos1")
        .await;
    let p = sub4.next_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (Q4::AtLeastOnce, &b"qos1"[..]));
    let p = sub5.next_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (Q5::AtLeastOnce, &b"qos1"[..]));

    // rumqttc acknowledged both QoS 1 deliveries: nothing is in flight, all sleep again, and
    // wake again for the next.
    hibernated(&broker, 3).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"again")
        .await;
    assert_eq!(sub4.next_text().await, "again");
    assert_eq!(sub5.next_text().await, "again");
    sub4.disconnect().await;
    sub5.disconnect().await;
    publisher.disconnect().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_connection_answers_pingreq() {
    let Some(broker) = broker().await else { return };
    let addr = server(&broker).mqtt_addr().expect("MQTT listener");
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let (mut raw, _) = Raw::connect(addr, connect_packet(version, &unique("ping"))).await;
        hibernated(&broker, 1).await;
        raw.send(Packet::PingReq).await;
        assert!(matches!(raw.recv().await, Packet::PingResp));
        hibernated(&broker, 1).await;
        raw.send(Packet::PingReq).await;
        assert!(matches!(raw.recv().await, Packet::PingResp));
        raw.send(Packet::Disconnect(mqtt_wire::Disconnect::new(
            mqtt_wire::ReasonCode::Success,
        )))
        .await;
        raw.until_closed().await;
        hibernated(&broker, 0).await;
    }
    broker.stop().await;
}

/// A lone PINGREQ is answered where the connection sleeps (`Parked::answer_ping`): no
/// resume, the counts and the keep-alive deadline moved as if the task had answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_pingreq_is_answered_without_resuming_the_connection() {
    let Some(broker) = broker().await else { return };
    let server = server(&broker);
    let addr = server.mqtt_addr().expect("MQTT listener");
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let client_id = unique("lone-ping");
        // Keep-alive 2 s: the pings below span 4 s, more than its 3 s of grace, so the
        // connection stays only if each PINGREQ answered in its sleep moved the deadline.
        let mut connect = connect_packet(version, &client_id);
        connect.keep_alive = 2;
        let (mut raw, _) = Raw::connect(addr, connect).await;
        hibernated(&broker, 1).await;
        let (resumed, pings) = server.mqtt_resumed_and_pings();
        let recv_before = recv_oct(server, &client_id);
        for _ in 0..8 {
            raw.send(Packet::PingReq).await;
            assert!(matches!(raw.recv().await, Packet::PingResp));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (resumed_after, pings_after) = server.mqtt_resumed_and_pings();
        assert_eq!(resumed_after, resumed, "a PINGREQ resumed the connection");
        assert_eq!(pings_after, pings + 8);
        assert_eq!(server.mqtt_hibernated(), 1);
        assert_eq!(recv_oct(server, &client_id), recv_before + 16);
        // Anything more than a PINGREQ resumes it: a PINGREQ and a SUBSCRIBE in one write
        // get their PINGRESP and SUBACK.
        let mut both = bytes::BytesMut::new();
        for packet in [
            Packet::PingReq,
            Packet::Subscribe(subscribe_packet(7, "lone/ping", QoS::AtMostOnce)),
        ] {
            mqtt_wire::encode(&packet, version, &mut both).expect("encode");
        }
        raw.send_bytes(&both).await;
        assert!(matches!(raw.recv().await, Packet::PingResp));
        assert!(matches!(raw.recv().await, Packet::SubAck(a) if a.packet_id == 7));
        assert!(server.mqtt_resumed_and_pings().0 > resumed);
        raw.send(Packet::Disconnect(mqtt_wire::Disconnect::new(
            mqtt_wire::ReasonCode::Success,
        )))
        .await;
        raw.until_closed().await;
        hibernated(&broker, 0).await;
    }
    broker.stop().await;
}

/// `recv_oct` of the connection of `client_id` (`/api/connections`' figure).
fn recv_oct(server: &ServerHandle, client_id: &str) -> u64 {
    server
        .connections()
        .into_iter()
        .find(|c| c.client_id.as_deref() == Some(client_id))
        .map(|c| c.recv_oct)
        .expect("the connection is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_connection_times_out_on_keep_alive_and_its_will_is_published() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let addr = server(&broker).mqtt_addr().expect("MQTT listener");
    let topic = unique("hib/will");
    let mut watcher = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("watch"),
        "127.0.0.1",
        port,
    ))
    .await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;
    // Keep-alive 1 s: closed after 1.5 s without a packet [MQTT-3.1.2-24].
    let mut connect = connect_packet(ProtocolVersion::V5, &unique("silent"));
    connect.keep_alive = 1;
    connect.will = Some(will(&topic, "timed out"));
    let (mut silent, _) = Raw::connect(addr, connect).await;
    hibernated(&broker, 2).await;
    let seen = silent.until_closed().await;
    assert!(
        seen.iter().any(|p| matches!(p, Packet::Disconnect(d)
            if d.reason == mqtt_wire::ReasonCode::KeepAliveTimeout)),
        "DISCONNECT 0x8D Keep alive timeout, got {seen:?}"
    );
    assert_eq!(watcher.next_text().await, "timed out");
    watcher.disconnect().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_client_that_goes_away_has_its_will_published() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let addr = server(&broker).mqtt_addr().expect("MQTT listener");
    let topic = unique("hib/gone");
    let mut watcher = Mqtt4::connect(rumqttc::MqttOptions::new(
        unique("watch"),
        "127.0.0.1",
        port,
    ))
    .await;
    watcher.subscribe(&topic, Q4::AtLeastOnce).await;
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, &unique("gone"));
    connect.will = Some(will(&topic, "gone"));
    let (raw, _) = Raw::connect(addr, connect).await;
    hibernated(&broker, 2).await;
    // The socket closes without DISCONNECT: the poller sees it readable (end of stream).
    drop(raw);
    assert_eq!(watcher.next_text().await, "gone");
    watcher.disconnect().await;
    broker.stop().await;
}

/// `/api/connections/{name}`, the name percent-encoded (`127.0.0.1:1 -> 127.0.0.1:2`).
fn connection_path(name: &str) -> String {
    let encoded = name.replace(' ', "%20").replace('>', "%3E");
    format!("/api/connections/{encoded}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernated_connections_are_listed_and_closed_by_the_management_api() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let api = Api::new(&broker);
    let id5 = unique("doomed5");
    let id4 = unique("doomed4");
    let mut m5 = Mqtt5::connect(v5::MqttOptions::new(&id5, "127.0.0.1", port)).await;
    let mut m4 = Mqtt4::connect(rumqttc::MqttOptions::new(&id4, "127.0.0.1", port)).await;
    hibernated(&broker, 2).await;

    let name_of = |client_id: &str| {
        server(&broker)
            .connections()
            .into_iter()
            .find(|c| c.client_id.as_deref() == Some(client_id))
            .map(|c| c.name)
    };
    let name5 = name_of(&id5).expect("the hibernated 5.0 connection is registered");
    let name4 = name_of(&id4).expect("the hibernated 3.1.1 connection is registered");
    let listed = api.get("/api/connections").await;
    assert_eq!(listed.status, 200);
    for name in [&name5, &name4] {
        let found = listed.body.as_array().and_then(|all| {
            all.iter()
                .find(|c| c["name"] == name.as_str() && c["state"] == "running")
        });
        assert!(found.is_some(), "{name} listed as running: {}", listed.body);
    }
    // Listing does not wake them.
    assert_eq!(server(&broker).mqtt_hibernated(), 2);

    assert_eq!(api.delete(&connection_path(&name5)).await.status, 204);
    assert_eq!(
        m5.next_disconnect().await,
        DisconnectReasonCode::AdministrativeAction
    );
    assert_eq!(api.delete(&connection_path(&name4)).await.status, 204);
    let _closed: rumqttc::ConnectionError = m4.closed().await;
    hibernated(&broker, 0).await;
    within("the closed connections to leave the list", async {
        while !server(&broker).connections().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernated_connection_is_taken_over_by_its_client_id() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let id = unique("twin");
    let mut first = Mqtt5::connect(v5::MqttOptions::new(&id, "127.0.0.1", port)).await;
    hibernated(&broker, 1).await;
    let second = Mqtt5::connect(v5::MqttOptions::new(&id, "127.0.0.1", port)).await;
    // [MQTT-3.1.4-3]: the older connection is closed, 5.0 with DISCONNECT 0x8E.
    assert_eq!(
        first.next_disconnect().await,
        DisconnectReasonCode::SessionTakenOver
    );
    hibernated(&broker, 1).await;
    second.disconnect().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernated_connections_are_closed_at_shutdown() {
    let Some(broker) = broker().await else { return };
    let port = port(&broker);
    let mut m5 = Mqtt5::connect(v5::MqttOptions::new(unique("last"), "127.0.0.1", port)).await;
    hibernated(&broker, 1).await;
    let stopping = tokio::spawn(broker.stop());
    assert_eq!(
        m5.next_disconnect().await,
        DisconnectReasonCode::ServerShuttingDown
    );
    within("the broker to stop", stopping)
        .await
        .expect("shutdown");
}
