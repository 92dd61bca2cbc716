//! Logging in with a client certificate: SASL EXTERNAL over AMQPS (amqprs) and MQTT
//! certificate login over MQTTS (rumqttc), as RabbitMQ's `rabbitmq_auth_mechanism_ssl` and
//! `mqtt.ssl_cert_login`. The user name is the certificate's subject DN (RFC 4514) or its CN
//! (`ssl_cert_login_from`); the user must exist; no password is checked.

use amqprs::connection::{Connection as AmqprsConnection, OpenConnectionArguments};
use amqprs::security::SecurityCredentials;
use amqprs::tls::TlsAdaptor;
use pigeon_broker::permission::Permission;
use pigeon_server::{CertLoginFrom, ServerConfig};
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::tls_support::{config_with, CertKey, Pki};
use pigeon_tests::{within, TestBroker};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A broker asking TLS clients for a certificate (optional), with `config` adjusted.
async fn broker(pki: &Pki, adjust: impl FnOnce(&mut ServerConfig)) -> TestBroker {
    let mut config = config_with(pki.verify_peer(1, false));
    adjust(&mut config);
    TestBroker::start_with(config)
        .await
        .expect("an in-process broker")
}

/// Creates `user` (no password: it can only log in by certificate) with every permission.
fn add_cert_user(broker: &TestBroker, user: &str) {
    let access = broker.server().unwrap().broker().access();
    access.add_user(user, None, Vec::new()).unwrap();
    access.set_permission(user, "/", Permission::all());
}

/// amqprs over TLS with SASL EXTERNAL, presenting `client` if given.
async fn external(
    broker: &TestBroker,
    pki: &Pki,
    client: Option<&CertKey>,
) -> Result<AmqprsConnection, amqprs::error::Error> {
    let addr = broker.server().unwrap().amqps_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(client)));
    let args = OpenConnectionArguments::new("127.0.0.1", addr.port(), "", "")
        .credentials(SecurityCredentials::new_external())
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".into()))
        .finish();
    within("amqprs to connect over TLS", AmqprsConnection::open(&args)).await
}

/// The mechanisms the broker offers in connection.start, read over a raw TLS socket.
async fn offered_mechanisms(broker: &TestBroker, pki: &Pki, client: Option<&CertKey>) -> String {
    let addr = broker.server().unwrap().amqps_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(client)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = within("TLS handshake", connector.connect(name, tcp))
        .await
        .unwrap();
    tls.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut have = 0;
    // The connection.start frame: its mechanisms are a long string near the end.
    loop {
        let n = within("connection.start", tls.read(&mut buf[have..]))
            .await
            .unwrap();
        assert!(n > 0, "the broker closed before connection.start");
        have += n;
        if have >= 7 {
            let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
            if have > 7 + size {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf[..have]).into_owned();
    ["PLAIN AMQPLAIN EXTERNAL", "PLAIN AMQPLAIN"]
        .into_iter()
        .find(|m| text.contains(m))
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_is_offered_only_with_a_verified_client_certificate() {
    let pki = Pki::new("EXTERNAL offer CA");
    let broker = broker(&pki, |_| {}).await;
    let client = pki.client("app");
    assert_eq!(
        offered_mechanisms(&broker, &pki, Some(&client)).await,
        "PLAIN AMQPLAIN EXTERNAL"
    );
    assert_eq!(
        offered_mechanisms(&broker, &pki, None).await,
        "PLAIN AMQPLAIN"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_logs_in_as_the_certificate_subject_dn() {
    let pki = Pki::new("EXTERNAL DN CA");
    let broker = broker(&pki, |_| {}).await;
    let client = pki.client("app-dn");
    // Not a user yet: refused.
    assert!(external(&broker, &pki, Some(&client)).await.is_err());
    add_cert_user(&broker, "CN=app-dn,O=Pigeon tests");
    let conn = external(&broker, &pki, Some(&client)).await.unwrap();
    within("channel.open", conn.open_channel(None))
        .await
        .unwrap();
    // Without a certificate EXTERNAL is not offered, and choosing it fails.
    assert!(external(&broker, &pki, None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_external_can_take_the_common_name() {
    let pki = Pki::new("EXTERNAL CN CA");
    let broker = broker(&pki, |c| c.ssl_cert_login_from = CertLoginFrom::CommonName).await;
    add_cert_user(&broker, "app-cn");
    let conn = external(&broker, &pki, Some(&pki.client("app-cn")))
        .await
        .unwrap();
    within("channel.open", conn.open_channel(None))
        .await
        .unwrap();
}

fn mqtts_options(
    broker: &TestBroker,
    pki: &Pki,
    client: &CertKey,
    id: &str,
) -> rumqttc::MqttOptions {
    let addr = broker.server().unwrap().mqtts_addr().unwrap();
    let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", addr.port());
    o.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(pki.client_config(Some(client)))),
    ));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_certificate_login_uses_the_certificate_identity() {
    let pki = Pki::new("MQTT cert login CA");
    let broker = broker(&pki, |c| {
        c.mqtt_ssl_cert_login = true;
        c.mqtt_allow_anonymous = false;
        c.ssl_cert_login_from = CertLoginFrom::CommonName;
    })
    .await;
    let device = pki.client("device-7");
    // No user name, no password, and no such user yet: refused.
    let refused = Mqtt4::try_connect(mqtts_options(&broker, &pki, &device, "d7")).await;
    assert!(refused.is_err(), "unknown certificate user");
    add_cert_user(&broker, "device-7");
    let mut c = Mqtt4::connect(mqtts_options(&broker, &pki, &device, "d7")).await;
    c.subscribe("devices/7/#", rumqttc::QoS::AtLeastOnce).await;
    c.publish("devices/7/state", rumqttc::QoS::AtLeastOnce, false, b"up")
        .await;
    assert_eq!(c.next_text().await, "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_certificate_login_is_off_by_default() {
    let pki = Pki::new("MQTT cert login off CA");
    let broker = broker(&pki, |c| {
        c.mqtt_allow_anonymous = false;
        c.ssl_cert_login_from = CertLoginFrom::CommonName;
    })
    .await;
    add_cert_user(&broker, "device-8");
    let device = pki.client("device-8");
    let refused = Mqtt4::try_connect(mqtts_options(&broker, &pki, &device, "d8")).await;
    assert!(refused.is_err(), "no credentials and no certificate login");
}
