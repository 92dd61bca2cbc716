//! Replacing the server certificate while the broker runs: new handshakes get the new one,
//! established connections keep working, a bad file keeps the old one.

use amqprs::channel::{BasicGetArguments, BasicPublishArguments, QueueDeclareArguments};
use amqprs::connection::{Connection as AmqprsConnection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::BasicProperties;
use pigeon_server::{Reloaded, TlsConfig};
use pigeon_tests::tls_support::{config_with, served_serial, write_atomically, Pki};
use pigeon_tests::{unique, within, TestBroker};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

async fn tls_broker(tls: TlsConfig) -> (TestBroker, SocketAddr) {
    let broker = TestBroker::start_with(config_with(tls))
        .await
        .expect("an in-process broker");
    let addr = broker
        .server()
        .and_then(|s| s.amqps_addr())
        .expect("the AMQPS listener");
    (broker, addr)
}

async fn connect(pki: &Pki, addr: SocketAddr) -> AmqprsConnection {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(pki.client_config(None)));
    let args = OpenConnectionArguments::new("127.0.0.1", addr.port(), "guest", "guest")
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".into()))
        .finish();
    within("amqprs over TLS", AmqprsConnection::open(&args))
        .await
        .expect("amqprs connects over TLS")
}

/// A publish and a basic.get on the connection: it still works.
async fn round_trip(conn: &AmqprsConnection) {
    let channel = within("channel.open", conn.open_channel(None))
        .await
        .expect("channel");
    let queue = unique("reload-q");
    let declare = QueueDeclareArguments::new(&queue).exclusive(true).finish();
    within("queue.declare", channel.queue_declare(declare))
        .await
        .expect("queue.declare");
    let publish = BasicPublishArguments::new("", &queue);
    within(
        "basic.publish",
        channel.basic_publish(BasicProperties::default(), b"still here".to_vec(), publish),
    )
    .await
    .expect("publish");
    let body = within("the message back", async {
        loop {
            let get = BasicGetArguments::new(&queue).no_ack(true).finish();
            if let Some((_, _, body)) = channel.basic_get(get).await.expect("basic.get") {
                return body;
            }
        }
    })
    .await;
    assert_eq!(body, b"still here");
}

/// Waits until new handshakes are served the certificate with `serial`.
async fn wait_for_serial(pki: &Pki, addr: SocketAddr, serial: u64) {
    within("the new certificate to be served", async {
        while served_serial(addr, pki.client_config(None)).await != serial {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections() {
    let pki = Pki::new("reload CA");
    let (broker, addr) = tls_broker(pki.server_files(1)).await;
    let established = connect(&pki, addr).await;
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 1);
    pki.write_server(2);
    wait_for_serial(&pki, addr, 2).await;
    // The connection made with the first certificate goes on.
    round_trip(&established).await;
    round_trip(&connect(&pki, addr).await).await;
    drop(broker);
}

#[tokio::test]
async fn a_reload_on_request_takes_effect_at_once() {
    let pki = Pki::new("sighup CA");
    let (broker, addr) = tls_broker(pki.server_files(1)).await;
    let server = broker.server().expect("in-process");
    assert_eq!(
        server.reload_tls().expect("reload"),
        Some(Reloaded::Unchanged)
    );
    pki.write_server(7);
    // The file watcher may have been first; either way the new certificate is in use now.
    let reloaded = server.reload_tls().expect("the new files are valid");
    assert!(reloaded.is_some());
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 7);
}

#[tokio::test]
async fn a_bad_file_keeps_the_previous_certificate() {
    let pki = Pki::new("bad file CA");
    let (broker, addr) = tls_broker(pki.server_files(1)).await;
    let established = connect(&pki, addr).await;
    pki.write("server.key", "-----BEGIN PRIVATE KEY-----\nnot a key\n");
    let server = broker.server().expect("in-process");
    assert!(server.reload_tls().is_err(), "a broken key is refused");
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 1);
    // A key that does not belong to the certificate is refused too.
    pki.write("server.key", &pki.server(99).key_pem);
    assert!(server.reload_tls().is_err(), "a mismatched key is refused");
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 1);
    round_trip(&established).await;
    // Fixed: the next change is picked up.
    pki.write_server(3);
    wait_for_serial(&pki, addr, 3).await;
}

/// Kubernetes mounts a secret as `tls.crt -> ..data/tls.crt` and `..data -> ..<timestamp>`,
/// and updates it by pointing `..data` at a new directory (a symlink renamed over the old
/// one): the files the configuration names are never written.
#[cfg(unix)]
#[tokio::test]
async fn a_kubernetes_style_secret_update_is_picked_up() {
    use std::os::unix::fs::symlink;
    let pki = Pki::new("k8s CA");
    let dir = pki.dir.path().join("secret");
    std::fs::create_dir(&dir).expect("secret dir");
    let version = |name: &str, serial: u64| {
        let v = dir.join(name);
        std::fs::create_dir(&v).expect("version dir");
        let cert = pki.server(serial);
        write_atomically(&v, "tls.crt", &cert.cert_pem);
        write_atomically(&v, "tls.key", &cert.key_pem);
    };
    version("..2026_01_01", 1);
    symlink(Path::new("..2026_01_01"), dir.join("..data")).expect("..data");
    symlink(Path::new("..data/tls.crt"), dir.join("tls.crt")).expect("tls.crt");
    symlink(Path::new("..data/tls.key"), dir.join("tls.key")).expect("tls.key");
    let (_broker, addr) =
        tls_broker(TlsConfig::new(dir.join("tls.crt"), dir.join("tls.key"))).await;
    assert_eq!(served_serial(addr, pki.client_config(None)).await, 1);
    version("..2026_02_01", 2);
    symlink(Path::new("..2026_02_01"), dir.join("..data_tmp")).expect("..data_tmp");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    wait_for_serial(&pki, addr, 2).await;
}
