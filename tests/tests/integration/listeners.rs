//! Listeners: several addresses, IPv6 beside IPv4, and hostile clients on a TLS port (garbage,
//! plain text, a handshake never finished), each closed without disturbing the others.

use amqprs::connection::{Connection as AmqprsConnection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use mqtt_wire::ProtocolVersion;
use pigeon_server::{Listen, ServerConfig};
use pigeon_tests::lapin_support::{connect_url, open_channel};
use pigeon_tests::mqtt_support::{connect_packet, Raw};
use pigeon_tests::tls_support::{config_with, has_ipv6_loopback, served_serial, Pki};
use pigeon_tests::{within, TestBroker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `["[::]:0", "0.0.0.0:0"]`: what the defaults bind, on one ephemeral port.
fn dual() -> Listen {
    Listen(vec![
        "[::]:0".parse().expect("addr"),
        "0.0.0.0:0".parse().expect("addr"),
    ])
}

#[tokio::test]
async fn a_dual_listener_serves_ipv6_ipv4_and_localhost() {
    if !has_ipv6_loopback() {
        println!("skipped: this machine has no IPv6 loopback (no ::1 in /proc/net/if_inet6)");
        return;
    }
    let config = ServerConfig {
        amqp_listen: dual(),
        mqtt_listen: dual(),
        ..ServerConfig::for_tests()
    };
    let broker = TestBroker::start_with(config).await.expect("in-process");
    let server = broker.server().expect("in-process");
    let amqp: Vec<SocketAddr> = server.addrs(pigeon_server::ListenerKind::Amqp).collect();
    assert_eq!(amqp.len(), 2, "both families bound: {amqp:?}");
    assert_eq!(amqp[0].port(), amqp[1].port(), "on one port");
    let port = amqp[0].port();
    for host in ["[::1]", "127.0.0.1", "localhost"] {
        let url = format!("amqp://guest:guest@{host}:{port}/%2f");
        let conn = connect_url(&url)
            .await
            .unwrap_or_else(|e| panic!("lapin connects to {url}: {e}"));
        open_channel(&conn).await;
    }
    let mqtt_port = server.mqtt_addr().expect("MQTT").port();
    for ip in ["::1", "127.0.0.1"] {
        let addr = SocketAddr::new(ip.parse().expect("ip"), mqtt_port);
        let (_raw, ack) = Raw::connect(addr, connect_packet(ProtocolVersion::V3_1_1, "dual")).await;
        assert_eq!(ack.code, mqtt_wire::ReasonCode::Success, "MQTT over {ip}");
    }
}

#[tokio::test]
async fn an_empty_list_turns_a_listener_off() {
    let config = ServerConfig {
        mqtt_listen: Listen::none(),
        ..ServerConfig::for_tests()
    };
    let broker = TestBroker::start_with(config).await.expect("in-process");
    let server = broker.server().expect("in-process");
    assert_eq!(server.mqtt_addr(), None);
    assert_eq!(server.amqps_addr(), None, "no TLS without a certificate");
}

#[tokio::test]
async fn a_listener_binds_every_address_it_is_given() {
    let config = ServerConfig {
        amqp_listen: Listen(vec![
            "127.0.0.1:0".parse().expect("addr"),
            "127.0.0.2:0".parse().expect("addr"),
        ]),
        ..ServerConfig::for_tests()
    };
    let broker = TestBroker::start_with(config).await.expect("in-process");
    let server = broker.server().expect("in-process");
    let addrs: Vec<SocketAddr> = server.addrs(pigeon_server::ListenerKind::Amqp).collect();
    assert_eq!(addrs.len(), 2);
    for addr in addrs {
        let conn = connect_url(&format!("amqp://guest:guest@{addr}/%2f"))
            .await
            .unwrap_or_else(|e| panic!("lapin connects to {addr}: {e}"));
        open_channel(&conn).await;
    }
}

/// Reads until the server closes the socket (end of file or reset); what it sends before
/// (a TLS alert) is ignored.
async fn closed_by_server(mut socket: TcpStream, what: &str) {
    within(what, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn hostile_clients_on_a_tls_port_are_closed_and_nobody_else_notices() {
    let pki = Pki::new("hostile CA");
    let config = ServerConfig {
        // Bounds the client that never finishes its handshake (the test waits for its close).
        handshake_timeout: Duration::from_secs(1),
        ..config_with(pki.server_files(1))
    };
    let broker = TestBroker::start_with(config).await.expect("in-process");
    let server = broker.server().expect("in-process");
    let amqps = server.amqps_addr().expect("AMQPS");
    let mqtts = server.mqtts_addr().expect("MQTTS");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(None)));
    let args = OpenConnectionArguments::new("127.0.0.1", amqps.port(), "guest", "guest")
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".into()))
        .finish();
    let good = within("amqprs over TLS", AmqprsConnection::open(&args))
        .await
        .expect("a well-behaved client connects");

    // A client that connects and never says anything: closed at the handshake timeout.
    let silent = TcpStream::connect(amqps).await.expect("connect");
    // Garbage where a ClientHello should be.
    let mut garbage = TcpStream::connect(amqps).await.expect("connect");
    garbage
        .write_all(b"\x16\x03\x01\xff\xffthis is not a TLS record at all\r\n\r\n")
        .await
        .expect("write");
    // A plain-text AMQP client on the TLS port.
    let mut plain_amqp = TcpStream::connect(amqps).await.expect("connect");
    plain_amqp
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .expect("write");
    // A plain-text MQTT client on the MQTTS port.
    let mut plain_mqtt = TcpStream::connect(mqtts).await.expect("connect");
    let mut connect = bytes::BytesMut::new();
    mqtt_wire::encode(
        &mqtt_wire::Packet::Connect(connect_packet(ProtocolVersion::V3_1_1, "plain")),
        ProtocolVersion::V3_1_1,
        &mut connect,
    )
    .expect("encode CONNECT");
    plain_mqtt.write_all(&connect).await.expect("write");
    // A TLS client that sends half a ClientHello and stops.
    let mut half = TcpStream::connect(amqps).await.expect("connect");
    half.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .expect("write");

    closed_by_server(garbage, "the garbage client to be closed").await;
    closed_by_server(plain_amqp, "the plain AMQP client to be closed").await;
    closed_by_server(plain_mqtt, "the plain MQTT client to be closed").await;
    closed_by_server(silent, "the silent client to be closed").await;
    closed_by_server(half, "the half-handshake client to be closed").await;

    // The well-behaved client saw nothing of it, and new ones still get in.
    let channel = within("channel.open", good.open_channel(None))
        .await
        .expect("the established TLS connection still works");
    within("channel.close", channel.close())
        .await
        .expect("channel.close");
    assert_eq!(served_serial(amqps, pki.client_config(None)).await, 1);
}
