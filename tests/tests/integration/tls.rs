//! AMQP and MQTT over TLS, with real clients (lapin, amqprs, rumqttc) and the client
//! certificate modes of RabbitMQ's `ssl_options` (verify_none, verify_peer,
//! fail_if_no_peer_cert).

use amqprs::channel::{BasicGetArguments, BasicPublishArguments, QueueDeclareArguments};
use amqprs::connection::{Connection as AmqprsConnection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::BasicProperties as AmqprsProperties;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ConnectionProperties, DefaultConnectionBuilder};
use pigeon_server::TlsConfig;
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::tls_support::{config_with, CertKey, Pki};
use pigeon_tests::{unique, within, TestBroker};
use std::net::SocketAddr;
use std::sync::Arc;

/// A broker with AMQPS and MQTTS on 127.0.0.1 and the given TLS configuration.
async fn tls_broker(tls: TlsConfig) -> TestBroker {
    TestBroker::start_with(config_with(tls))
        .await
        .expect("an in-process broker")
}

fn amqps_addr(broker: &TestBroker) -> SocketAddr {
    broker
        .server()
        .and_then(|s| s.amqps_addr())
        .expect("the AMQPS listener")
}

fn mqtts_addr(broker: &TestBroker) -> SocketAddr {
    broker
        .server()
        .and_then(|s| s.mqtts_addr())
        .expect("the MQTTS listener")
}

/// Connects amqprs over TLS, as `guest` (SASL PLAIN inside TLS), presenting `client` if given.
async fn amqprs_tls(
    pki: &Pki,
    addr: SocketAddr,
    client: Option<&CertKey>,
) -> Result<AmqprsConnection, amqprs::error::Error> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(client)));
    let args = OpenConnectionArguments::new("127.0.0.1", addr.port(), "guest", "guest")
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".into()))
        .finish();
    within("amqprs to connect over TLS", AmqprsConnection::open(&args)).await
}

/// Publishes to a new queue and gets the message back on one amqprs connection.
async fn amqprs_round_trip(conn: &AmqprsConnection) {
    let channel = within("channel.open", conn.open_channel(None))
        .await
        .expect("channel");
    let queue = unique("tls-q");
    within(
        "queue.declare",
        channel.queue_declare(
            QueueDeclareArguments::exclusive_server_named()
                .queue(queue.clone())
                .finish(),
        ),
    )
    .await
    .expect("queue.declare");
    within(
        "basic.publish",
        channel.basic_publish(
            AmqprsProperties::default(),
            b"over tls".to_vec(),
            BasicPublishArguments::new("", &queue),
        ),
    )
    .await
    .expect("publish");
    // basic.get until the message is there (the publish has no confirm).
    let got = within("basic.get-ok", async {
        loop {
            if let Some((_, _, body)) = channel
                .basic_get(BasicGetArguments::new(&queue).no_ack(true).finish())
                .await
                .expect("basic.get")
            {
                return body;
            }
        }
    })
    .await;
    assert_eq!(got, b"over tls");
}

#[tokio::test]
async fn lapin_publishes_and_consumes_over_tls() {
    let pki = Pki::new("lapin CA");
    let broker = tls_broker(pki.server_files(1)).await;
    let uri = format!(
        "amqps://guest:guest@127.0.0.1:{}/%2f",
        amqps_addr(&broker).port()
    );
    let conn = within(
        "lapin to connect over TLS",
        DefaultConnectionBuilder::new()
            .expect("lapin runtime")
            .with_uri_str(uri)
            .with_properties(ConnectionProperties::default())
            .with_tls_config(OwnedTLSConfig {
                identity: None,
                cert_chain: Some(pki.ca_pem()),
            })
            .connect(),
    )
    .await
    .expect("lapin connects over TLS");
    let channel = within("channel.open", conn.create_channel())
        .await
        .expect("channel");
    let queue = unique("lapin-tls");
    within(
        "queue.declare",
        channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("queue.declare");
    let mut consumer = within(
        "basic.consume",
        channel.basic_consume(
            queue.as_str().into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume");
    within(
        "basic.publish",
        channel.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"hello over tls",
            BasicProperties::default(),
        ),
    )
    .await
    .expect("publish");
    let delivery = within("the delivery", consumer.next())
        .await
        .expect("a delivery")
        .expect("no error");
    assert_eq!(delivery.data, b"hello over tls");
}

#[tokio::test]
async fn lapin_presents_a_client_certificate_to_verify_peer() {
    let pki = Pki::new("lapin client CA");
    let broker = tls_broker(pki.verify_peer(1, true)).await;
    let client = pki.client("lapin");
    let uri = format!(
        "amqps://guest:guest@127.0.0.1:{}/%2f",
        amqps_addr(&broker).port()
    );
    let conn = within(
        "lapin to connect with a client certificate",
        DefaultConnectionBuilder::new()
            .expect("lapin runtime")
            .with_uri_str(uri)
            .with_tls_config(OwnedTLSConfig {
                identity: Some(OwnedIdentity::PKCS8 {
                    pem: client.cert_pem.clone().into_bytes(),
                    key: client.key_pem.clone().into_bytes(),
                }),
                cert_chain: Some(pki.ca_pem()),
            })
            .connect(),
    )
    .await
    .expect("lapin connects with its certificate");
    within("channel.open", conn.create_channel())
        .await
        .expect("channel");
}

#[tokio::test]
async fn amqprs_publishes_and_gets_over_tls() {
    let pki = Pki::new("amqprs CA");
    let broker = tls_broker(pki.server_files(1)).await;
    let conn = amqprs_tls(&pki, amqps_addr(&broker), None)
        .await
        .expect("amqprs connects over TLS");
    amqprs_round_trip(&conn).await;
}

#[tokio::test]
async fn the_plain_listener_still_serves_beside_tls() {
    let pki = Pki::new("plain CA");
    let broker = tls_broker(pki.server_files(1)).await;
    let (conn, _events) = pigeon_tests::amqprs_support::connect(&broker).await;
    amqprs_round_trip(&conn).await;
}

#[tokio::test]
async fn verify_peer_accepts_clients_with_and_without_a_certificate() {
    let pki = Pki::new("optional CA");
    let broker = tls_broker(pki.verify_peer(1, false)).await;
    let addr = amqps_addr(&broker);
    let without = amqprs_tls(&pki, addr, None)
        .await
        .expect("no certificate is fine when it is optional");
    amqprs_round_trip(&without).await;
    let client = pki.client("alice");
    let with = amqprs_tls(&pki, addr, Some(&client))
        .await
        .expect("a certificate from the CA is accepted");
    amqprs_round_trip(&with).await;
}

#[tokio::test]
async fn fail_if_no_peer_cert_refuses_a_client_without_one() {
    let pki = Pki::new("required CA");
    let broker = tls_broker(pki.verify_peer(1, true)).await;
    let addr = amqps_addr(&broker);
    assert!(
        amqprs_tls(&pki, addr, None).await.is_err(),
        "a client without a certificate must be refused"
    );
    let client = pki.client("bob");
    let conn = amqprs_tls(&pki, addr, Some(&client))
        .await
        .expect("a client with a certificate from the CA connects");
    amqprs_round_trip(&conn).await;
}

#[tokio::test]
async fn a_client_certificate_from_an_unknown_ca_is_refused() {
    let pki = Pki::new("trusted CA");
    let stranger = Pki::new("unknown CA");
    let broker = tls_broker(pki.verify_peer(1, false)).await;
    let addr = amqps_addr(&broker);
    // The client trusts the server's CA, but presents a certificate the server cannot verify:
    // even where a certificate is optional, a bad one is refused.
    let refused = amqprs_tls(&pki, addr, Some(&stranger.client("mallory"))).await;
    assert!(
        refused.is_err(),
        "an unknown CA's certificate must be refused"
    );
    // And the listener still serves the others.
    let conn = amqprs_tls(&pki, addr, Some(&pki.client("alice")))
        .await
        .expect("a known client connects");
    amqprs_round_trip(&conn).await;
}

#[tokio::test]
async fn rumqttc_publishes_and_subscribes_over_tls() {
    let pki = Pki::new("MQTT CA");
    let broker = tls_broker(pki.verify_peer(1, true)).await;
    let addr = mqtts_addr(&broker);
    let options = |id: &str| {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", addr.port());
        let config = pki.client_config(Some(&pki.client(id)));
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
        ));
        o
    };
    let mut sub = Mqtt4::connect(options("tls-sub")).await;
    sub.subscribe("tls/#", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher = Mqtt4::connect(options("tls-pub")).await;
    publisher
        .publish(
            "tls/greeting",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"hi over tls",
        )
        .await;
    assert_eq!(sub.next_text().await, "hi over tls");
}

#[tokio::test]
async fn mqtts_refuses_a_client_without_a_certificate_when_required() {
    let pki = Pki::new("MQTT required CA");
    let broker = tls_broker(pki.verify_peer(1, true)).await;
    let addr = mqtts_addr(&broker);
    let mut o = rumqttc::MqttOptions::new("no-cert", "127.0.0.1", addr.port());
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(pki.client_config(None))),
    ));
    assert!(Mqtt4::try_connect(o).await.is_err());
}

/// Large messages both ways fill the TLS buffers and the sockets: every byte written into
/// rustls must reach the client (AMQP's writer task and MQTT's own writes alike).
#[tokio::test]
async fn large_messages_cross_tls_intact() {
    let pki = Pki::new("bulk CA");
    let broker = tls_broker(pki.server_files(1)).await;
    let conn = amqprs_tls(&pki, amqps_addr(&broker), None)
        .await
        .expect("amqprs over TLS");
    let channel = within("channel.open", conn.open_channel(None))
        .await
        .expect("channel");
    let queue = unique("tls-bulk");
    within(
        "queue.declare",
        channel.queue_declare(QueueDeclareArguments::new(&queue).exclusive(true).finish()),
    )
    .await
    .expect("queue.declare");
    let body: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    for _ in 0..8 {
        within(
            "basic.publish",
            channel.basic_publish(
                AmqprsProperties::default(),
                body.clone(),
                BasicPublishArguments::new("", &queue),
            ),
        )
        .await
        .expect("publish");
    }
    for i in 0..8 {
        let got = within("a large message back", async {
            loop {
                let get = BasicGetArguments::new(&queue).no_ack(true).finish();
                if let Some((_, _, b)) = channel.basic_get(get).await.expect("basic.get") {
                    return b;
                }
            }
        })
        .await;
        assert!(got == body, "message {i} arrived intact");
    }

    let addr = mqtts_addr(&broker);
    let options = |id: &str| {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", addr.port());
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(pki.client_config(None))),
        ));
        o
    };
    let mut sub = Mqtt4::connect(options("bulk-sub")).await;
    sub.subscribe("bulk", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher = Mqtt4::connect(options("bulk-pub")).await;
    for _ in 0..8 {
        publisher
            .publish("bulk", rumqttc::QoS::AtLeastOnce, false, &body)
            .await;
    }
    for i in 0..8 {
        let p = sub.next_publish().await;
        assert!(p.payload[..] == body[..], "MQTT message {i} arrived intact");
    }
}
