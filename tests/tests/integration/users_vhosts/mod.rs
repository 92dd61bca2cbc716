//! Users and vhosts managed at runtime: who may log in (users created at runtime, imported
//! RabbitMQ hashes, wrong passwords, `loopback_users`, the default user or none), who may open
//! which vhost, what survives a restart, and what deleting a vhost or a user does to its
//! connections and its data. Every login goes through a real client (lapin, amqprs, rumqttc,
//! or the raw MQTT client where rumqttc cannot read the broker's DISCONNECT).

use bytes::Bytes;
use futures_lite::StreamExt;
use mqtt_wire::{Packet, ProtocolVersion, QoS, ReasonCode};
use pigeon_server::{ServerConfig, ServerHandle, UserLimits, VHostInfo, VHostLimits};
use pigeon_tests::amqprs_support as ars;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{connect_packet, subscribe_packet, Mqtt4, Mqtt5, Raw};
use pigeon_tests::reply::{ACCESS_REFUSED, NOT_ALLOWED};
use pigeon_tests::{unique, within, DataDir, TestBroker};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::ConnectReturnCode as V4Code;
use std::net::{IpAddr, SocketAddr};

/// 320: the broker closed the connection (AMQP 0-9-1 `connection-forced`).
const CONNECTION_FORCED: u16 = 320;

/// A URL for `user` on `vhost` (`/` is written `%2f`).
fn url(broker: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    let vhost = if vhost == "/" { "%2f" } else { vhost };
    format!("amqp://{user}:{password}@{}/{vhost}", broker.addr())
}

/// The reply code and text of a refused lapin connection.
fn refusal<T>(result: lapin::Result<T>) -> (u16, String) {
    match result {
        Ok(_) => panic!("expected the broker to refuse the connection"),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                (amqp.get_id(), amqp.get_message().as_str().to_string())
            }
            other => panic!("expected connection.close from the broker, got {other:?}"),
        },
    }
}

fn server(broker: &TestBroker) -> &ServerHandle {
    broker.server().expect("an in-process broker")
}

fn mqtt_addr(broker: &TestBroker) -> SocketAddr {
    server(broker).mqtt_addr().expect("MQTT is enabled")
}

fn v4(broker: &TestBroker, user: &str, password: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(unique("c4"), "127.0.0.1", mqtt_addr(broker).port());
    o.set_credentials(user, password);
    o
}

fn v5(broker: &TestBroker, user: &str, password: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(unique("c5"), "127.0.0.1", mqtt_addr(broker).port());
    o.set_credentials(user, password);
    o
}

fn refused4(result: Result<Mqtt4, rumqttc::ConnectionError>) -> V4Code {
    match result {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

fn refused5(result: Result<Mqtt5, rumqttc::v5::ConnectionError>) -> V5Code {
    match result {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

/// A raw MQTT 5.0 client logged in as `user_name` (which may be `vhost:user`).
async fn raw5(broker: &TestBroker, user_name: &str, password: &str) -> Raw {
    raw5_with(broker, user_name, password, |_| {}).await
}

/// The same, with the CONNECT adjusted by `adjust`.
async fn raw5_with(
    broker: &TestBroker,
    user_name: &str,
    password: &str,
    adjust: impl FnOnce(&mut mqtt_wire::Connect),
) -> Raw {
    let mut connect = connect_packet(ProtocolVersion::V5, &unique("raw5"));
    adjust(&mut connect);
    connect.username = Some(user_name.to_string());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    let (raw, ack) = Raw::connect(mqtt_addr(broker), connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    raw
}

/// Proves a lapin connection works: a channel opens and a queue is declared.
async fn usable(conn: &lapin::Connection) {
    let channel = lp::open_channel(conn).await;
    lp::exclusive_queue(&channel).await;
}

mod access_rules;
mod deletions;
mod logins;
