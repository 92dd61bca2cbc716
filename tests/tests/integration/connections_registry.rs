//! The connection registry: connections of both protocols are listed with who they are, and
//! an operator closes one with a reason its client sees (AMQP 320 CONNECTION_FORCED with the
//! text, as `rabbitmqctl close_connection`; MQTT 5.0 DISCONNECT 0x98 Administrative action;
//! MQTT 3.1.1 a closed socket), leaving the others open.

use futures_lite::StreamExt;
use pigeon_server::registry::ConnectionInfo;
use pigeon_server::ServerHandle;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{Mqtt4, Mqtt5};
use pigeon_tests::{within, TestBroker};
use rumqttc::v5;
use std::time::Duration;

const CONNECTION_FORCED: u16 = 320;

/// Waits until the registry lists `n` connections that satisfy `ok`.
async fn listed(
    server: &ServerHandle,
    what: &str,
    ok: impl Fn(&[ConnectionInfo]) -> bool,
) -> Vec<ConnectionInfo> {
    within(what, async {
        loop {
            let all = server.connections();
            if ok(&all) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn by_protocol<'a>(all: &'a [ConnectionInfo], protocol: &str) -> Vec<&'a ConnectionInfo> {
    all.iter().filter(|c| c.protocol == protocol).collect()
}

fn mqtt_port(broker: &TestBroker) -> u16 {
    broker
        .server()
        .and_then(|s| s.mqtt_addr())
        .expect("MQTT listener")
        .port()
}

#[tokio::test]
async fn connections_of_both_protocols_are_listed_with_user_vhost_and_protocol() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let server = broker.server().expect("in-process");
    let amqp = lp::connect(&broker).await;
    let _ch = lp::open_channel(&amqp).await;
    let port = mqtt_port(&broker);
    let m4 = Mqtt4::connect(rumqttc::MqttOptions::new("reg-v4", "127.0.0.1", port)).await;
    let m5 = Mqtt5::connect(v5::MqttOptions::new("reg-v5", "127.0.0.1", port)).await;

    let all = listed(server, "three running connections", |all| {
        all.len() == 3
            && all.iter().all(|c| c.state == "running")
            && all.iter().any(|c| c.channels == 1)
    })
    .await;
    let a = by_protocol(&all, "AMQP 0-9-1");
    assert_eq!(a.len(), 1, "{all:?}");
    let a = a[0];
    assert_eq!((a.user.as_str(), a.vhost.as_str()), ("guest", "/"));
    assert_eq!(a.peer_host, "127.0.0.1");
    assert_eq!(a.port, broker.addr().port());
    assert_eq!(
        a.name,
        format!("127.0.0.1:{} -> 127.0.0.1:{}", a.peer_port, a.port)
    );
    assert!(!a.ssl);
    assert!(
        a.client_properties.get("product").is_some(),
        "lapin sends its product name"
    );
    assert!(a.recv_oct > 0 && a.send_oct > 0 && a.recv_cnt > 0);
    assert_eq!(a.channels, 1);
    for (protocol, id) in [("MQTT 3.1.1", "reg-v4"), ("MQTT 5.0", "reg-v5")] {
        let m = by_protocol(&all, protocol);
        assert_eq!(m.len(), 1, "{protocol}: {all:?}");
        assert_eq!((m[0].user.as_str(), m[0].vhost.as_str()), ("guest", "/"));
        assert_eq!(m[0].client_id.as_deref(), Some(id));
        assert_eq!(m[0].port, port);
    }
    assert_eq!(server.channels().len(), 1);
    assert_eq!(server.channels()[0].connection, a.name);
    drop((m4, m5));
}

#[tokio::test]
async fn channels_and_consumers_are_listed() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let server = broker.server().expect("in-process");
    let (conn, ch) = lp::connect_channel(&broker).await;
    within(
        "basic.qos",
        ch.basic_qos(7, lapin::options::BasicQosOptions::default()),
    )
    .await
    .expect("qos");
    let q = lp::exclusive_queue(&ch).await;
    let _consumer = lp::consume_acked(&ch, &q).await;
    let consumers = server.consumers();
    assert_eq!(consumers.len(), 1, "{consumers:?}");
    let c = &consumers[0];
    assert_eq!(
        (c.queue.as_str(), c.ack_required, c.prefetch_count),
        (q.as_str(), true, 7)
    );
    assert_eq!(c.connection, server.connections()[0].name);
    let channels = server.channels();
    assert_eq!(channels.len(), 1);
    assert_eq!(
        (channels[0].consumer_count, channels[0].prefetch_count),
        (1, 7)
    );
    drop(conn);
}

#[tokio::test]
async fn closing_an_amqp_connection_sends_320_with_the_reason_and_spares_the_others() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let server = broker.server().expect("in-process");
    let doomed = lp::connect(&broker).await;
    let mut events = doomed.events_listener();
    let survivor = lp::connect(&broker).await;
    let port = mqtt_port(&broker);
    let mut mqtt = Mqtt5::connect(v5::MqttOptions::new("bystander", "127.0.0.1", port)).await;
    let all = listed(server, "three connections", |all| {
        all.len() == 3 && all.iter().all(|c| c.state == "running")
    })
    .await;
    // The first AMQP connection registered is the doomed one (connections are listed in order).
    let name = by_protocol(&all, "AMQP 0-9-1")[0].name.clone();

    assert!(server.close_connection(&name, "maintenance window"));
    assert!(!server.close_connection("no such connection", "x"));

    let error = within("lapin's connection error", async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("lapin's events ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(lp::reply_code(&error), Some(CONNECTION_FORCED));
    assert!(
        error.to_string().contains("maintenance window"),
        "the reason reaches the client: {error}"
    );
    // The others still work.
    let ch = lp::open_channel(&survivor).await;
    let q = lp::exclusive_queue(&ch).await;
    lp::publish(&ch, "", &q, b"still here").await;
    mqtt.subscribe("alive/#", v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    mqtt.publish("alive/x", v5::mqttbytes::QoS::AtLeastOnce, false, b"ok")
        .await;
    assert_eq!(mqtt.next_text().await, "ok");
    listed(server, "the closed connection to be gone", |all| {
        all.len() == 2 && all.iter().all(|c| c.name != name)
    })
    .await;
}

#[tokio::test]
async fn closing_mqtt_connections_sends_5_0_clients_disconnect_0x98_and_closes_3_1_1_sockets() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let server = broker.server().expect("in-process");
    let port = mqtt_port(&broker);
    let mut m5 = Mqtt5::connect(v5::MqttOptions::new("doomed-v5", "127.0.0.1", port)).await;
    let mut m4 = Mqtt4::connect(rumqttc::MqttOptions::new("doomed-v4", "127.0.0.1", port)).await;
    let amqp = lp::connect(&broker).await;
    let all = listed(server, "three connections", |all| {
        all.len() == 3 && all.iter().all(|c| c.state == "running")
    })
    .await;
    let v5_name = by_protocol(&all, "MQTT 5.0")[0].name.clone();
    let v4_name = by_protocol(&all, "MQTT 3.1.1")[0].name.clone();

    assert!(server.close_connection(&v5_name, "go away"));
    let reason = m5.next_disconnect().await;
    assert_eq!(
        reason,
        v5::mqttbytes::v5::DisconnectReasonCode::AdministrativeAction
    );

    assert!(server.close_connection(&v4_name, "go away"));
    let _closed: rumqttc::ConnectionError = m4.closed().await;

    listed(server, "only the AMQP connection left", |all| {
        all.len() == 1 && all[0].protocol == "AMQP 0-9-1"
    })
    .await;
    let ch = lp::open_channel(&amqp).await;
    lp::exclusive_queue(&ch).await;
}
