//! The Stream protocol over TLS (port 5551): the Rust client end to end, and SASL EXTERNAL
//! with a client certificate, offered only to a client that presented one.

use crate::stream_protocol_support;

use pigeon_broker::permission::Permission;
use pigeon_server::CertLoginFrom;
use pigeon_tests::tls_support::{self, Pki};
use pigeon_tests::{within, DataDir};
use rabbitmq_stream_client::types::OffsetSpecification;
use rabbitmq_stream_client::{Environment, TlsConfiguration};
use std::net::SocketAddr;
use stream_protocol_support::{consumer, new_stream, publish, take, Raw};

fn tls_data_dir(pki: &Pki) -> DataDir {
    DataDir::with(|c| {
        c.tls = Some(pki.verify_peer(1, false));
        c.stream_tls_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)).into());
        c.amqps_listen = Some(pigeon_server::Listen::none());
        c.mqtts_listen = Some(pigeon_server::Listen::none());
        c.mqtt_wss_listen = Some(pigeon_server::Listen::none());
        c.ssl_cert_login_from = CertLoginFrom::CommonName;
    })
}

#[tokio::test]
async fn the_rust_client_publishes_and_consumes_over_tls() {
    let pki = Pki::new("stream TLS CA");
    let data = tls_data_dir(&pki);
    let Some(broker) = data.start().await else {
        return;
    };
    let addr = broker.server().unwrap().stream_tls_addr().unwrap();
    let tls = TlsConfiguration::builder()
        .enable(true)
        .trust_certificates(true)
        .build();
    let env = within(
        "the TLS handshake",
        Environment::builder()
            .host("localhost")
            .port(addr.port())
            .tls(tls)
            .build(),
    )
    .await
    .unwrap();
    let name = new_stream(&env).await;
    publish(&env, &name, &["secret"]).await;
    let mut c = consumer(&env, &name, OffsetSpecification::First).await;
    assert_eq!(take(&mut c, 1).await, vec![(0, "secret".to_string())]);
}

#[tokio::test]
async fn sasl_external_with_a_client_certificate() {
    let pki = Pki::new("stream EXTERNAL CA");
    let data = tls_data_dir(&pki);
    let Some(broker) = data.start().await else {
        return;
    };
    let access = broker.server().unwrap().broker().access();
    access.add_user("stream-cert", None, Vec::new()).unwrap();
    access.set_permission("stream-cert", "/", Permission::all());
    let addr = broker.server().unwrap().stream_tls_addr().unwrap();
    let client = pki.client("stream-cert");
    let tls = tls_support::handshake(addr, pki.client_config(Some(&client)))
        .await
        .unwrap();
    let local = tls.get_ref().0.local_addr().unwrap();
    let mut raw = Raw::over(Box::new(tls), local);
    let mechanisms = raw.handshake("EXTERNAL", None).await;
    assert!(
        mechanisms.contains(&"EXTERNAL".to_string()),
        "{mechanisms:?}"
    );
    let conn = broker
        .server()
        .unwrap()
        .connections()
        .into_iter()
        .find(|c| c.peer_port == local.port())
        .unwrap();
    assert_eq!(conn.user, "stream-cert");
    assert!(conn.ssl);
    // Without a certificate EXTERNAL is not offered.
    let tls = tls_support::handshake(addr, pki.client_config(None))
        .await
        .unwrap();
    let local = tls.get_ref().0.local_addr().unwrap();
    let mut raw = Raw::over(Box::new(tls), local);
    let mechanisms = raw
        .handshake("PLAIN", Some(bytes::Bytes::from_static(b"\0guest\0guest")))
        .await;
    assert_eq!(mechanisms, ["PLAIN", "AMQPLAIN"]);
}
