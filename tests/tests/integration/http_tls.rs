//! HTTPS for the management API and the Prometheus endpoint, as RabbitMQ's `management.ssl.*`
//! (port 15671) and `prometheus.ssl.*` (15691): the same certificate as the other TLS
//! listeners (and its reload), the same API and state as the plain listener, and the
//! defaults that open them once `[tls]` is configured. A real HTTP client (hyper) over a real
//! TLS client (tokio-rustls, ring) trusting the test CA.

use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use pigeon_server::{Listen, ServerConfig};
use pigeon_tests::http_support::Api;
use pigeon_tests::tls_support::{config_with, handshake, served_serial, Pki};
use pigeon_tests::{within, TestBroker};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// `config_with` (TLS, AMQPS and MQTTS on loopback) plus HTTPS for the management API and
/// Prometheus on loopback.
fn https_config(pki: &Pki, serial: u64) -> ServerConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    ServerConfig {
        management_tls_listen: Some(loopback.into()),
        prometheus_tls_listen: Some(loopback.into()),
        ..config_with(pki.server_files(serial))
    }
}

/// An HTTP/1.1 request over TLS to `addr` (as `localhost`, trusting the test CA): the status,
/// the body and the content type.
async fn https(
    pki: &Pki,
    addr: SocketAddr,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> (u16, Vec<u8>, String) {
    let tls = handshake(addr, pki.client_config(None)).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()));
    if let Some((user, password)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request = request.header("authorization", format!("Basic {token}"));
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let response = within("the HTTPS answer", sender.send_request(request))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = within("the HTTPS body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body, content_type)
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn the_management_api_answers_over_https_with_the_same_state_as_over_http() {
    let pki = Pki::new("management CA");
    let Some(broker) = TestBroker::start_with(https_config(&pki, 7)).await else {
        return;
    };
    let server = broker.server().unwrap();
    let addr = server.management_tls_addr().unwrap();
    // The listeners' certificate.
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 7);
    let guest = Some(("guest", "guest"));
    let (status, body, _) = https(&pki, addr, "GET", "/api/overview", guest).await;
    assert_eq!(status, 200);
    let overview = json_of(&body);
    let listeners = overview["listeners"].as_array().unwrap();
    assert!(
        listeners
            .iter()
            .any(|l| l["protocol"] == "https" && l["port"] == addr.port()),
        "{listeners:?}"
    );
    assert!(listeners
        .iter()
        .any(|l| l["protocol"] == "https/prometheus"));
    // Credentials are checked as over HTTP.
    let (status, body, _) = https(&pki, addr, "GET", "/api/whoami", None).await;
    assert_eq!(status, 401);
    assert_eq!(json_of(&body)["reason"], "Login failed");
    // One API behind both listeners: a change over HTTP is seen over HTTPS.
    let api = Api::new(&broker);
    assert_eq!(
        api.put("/api/cluster-name", json!({"name": "tls-cluster"}))
            .await
            .status,
        204
    );
    let (status, body, _) = https(&pki, addr, "GET", "/api/cluster-name", guest).await;
    assert_eq!(
        (status, json_of(&body)),
        (200, json!({"name": "tls-cluster"}))
    );
    // And the health checks know the listener by RabbitMQ's protocol name.
    let (status, body, _) = https(
        &pki,
        addr,
        "GET",
        "/api/health/checks/protocol-listener/https",
        guest,
    )
    .await;
    assert_eq!(
        (status, json_of(&body)),
        (200, json!({"status": "ok", "protocol": "https"}))
    );
    // The RabbitMQ Kubernetes operator's startup probe, over HTTPS and without credentials
    // (what it probes once the plain listeners are disabled).
    let (status, body, _) = https(
        &pki,
        addr,
        "GET",
        "/api/health/checks/reached-target-cluster-size",
        None,
    )
    .await;
    assert_eq!((status, json_of(&body)), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn prometheus_is_scraped_over_https() {
    let pki = Pki::new("prometheus CA");
    let Some(broker) = TestBroker::start_with(https_config(&pki, 1)).await else {
        return;
    };
    let addr = broker.server().unwrap().prometheus_tls_addr().unwrap();
    let (status, body, content_type) = https(&pki, addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("rabbitmq_"), "{text}");
    let (status, _, _) = https(&pki, addr, "GET", "/metrics/per-object", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_on_the_https_listeners() {
    let pki = Pki::new("reload CA");
    let Some(broker) = TestBroker::start_with(https_config(&pki, 1)).await else {
        return;
    };
    let server = broker.server().unwrap();
    let management = server.management_tls_addr().unwrap();
    let prometheus = server.prometheus_tls_addr().unwrap();
    assert_eq!(served_serial(management, pki.client_config(None)).await, 1);
    pki.write_server(2);
    assert!(server.reload_tls().unwrap().is_some());
    assert_eq!(served_serial(management, pki.client_config(None)).await, 2);
    assert_eq!(served_serial(prometheus, pki.client_config(None)).await, 2);
    let (status, _, _) = https(
        &pki,
        management,
        "GET",
        "/api/overview",
        Some(("guest", "guest")),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_client_that_does_not_speak_tls_does_not_stop_the_https_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new("plain CA");
    let Some(broker) = TestBroker::start_with(https_config(&pki, 1)).await else {
        return;
    };
    let addr = broker.server().unwrap().management_tls_addr().unwrap();
    // Plain HTTP to the HTTPS port: the handshake fails and the socket closes.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /api/overview HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = within(
        "the plain client's socket to close",
        plain.read_to_end(&mut rest),
    )
    .await;
    assert!(!rest.starts_with(b"HTTP/"), "answered in clear: {rest:?}");
    // A client that opens a connection and never starts a handshake holds up no other.
    let _stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (status, _, _) = https(&pki, addr, "GET", "/api/overview", Some(("guest", "guest"))).await;
    assert_eq!(status, 200);
}

#[test]
fn the_https_listeners_default_to_rabbitmqs_ports_once_tls_is_configured() {
    let pki = Pki::new("defaults CA");
    let plain = ServerConfig::default();
    assert!(plain.management_tls_addrs().is_empty());
    assert!(plain.prometheus_tls_addrs().is_empty());
    let tls = ServerConfig {
        tls: Some(pki.server_files(1)),
        ..ServerConfig::default()
    };
    assert_eq!(tls.management_tls_addrs(), Listen::all_interfaces(15671));
    assert_eq!(tls.prometheus_tls_addrs(), Listen::all_interfaces(15691));
    // Asked for without a certificate: a configuration error naming the key.
    let orphan = ServerConfig {
        management_tls_listen: Some(Listen::all_interfaces(15671)),
        ..ServerConfig::default()
    };
    let error = orphan.check_tls().unwrap_err();
    assert!(error.contains("management_tls_listen"), "{error}");
}
