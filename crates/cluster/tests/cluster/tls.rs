//! TLS on the cluster link with mutual certificates: nodes with certificates from the cluster's
//! CA form a cluster and replicate; a node whose certificate comes from another CA is refused
//! and does not join; a plain-TCP client of a TLS cluster port gets nothing.

use crate::common::{self, vhost, within, TestCluster};
use pigeon_cluster::net::{ClusterTls, Peers, Request, PROTOCOL};
use pigeon_cluster::{ClusterError, TlsFiles};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CA that signs node certificates naming 127.0.0.1 and localhost (the hosts the tests dial).
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    name: &'static str,
}

impl Ca {
    fn new(name: &'static str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} CA"));
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, name }
    }

    /// Writes `node`'s certificate, key and this CA into `dir`; the files.
    fn node_files(&self, dir: &Path, node: &str) -> TlsFiles {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            node.to_string(),
        ])
        .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let prefix = format!("{}-{node}", self.name);
        let files = TlsFiles {
            certfile: dir.join(format!("{prefix}.pem")),
            keyfile: dir.join(format!("{prefix}.key")),
            cacertfile: dir.join(format!("{}-ca.pem", self.name)),
            verify_peer_name: true,
        };
        std::fs::write(&files.certfile, cert.pem()).unwrap();
        std::fs::write(&files.keyfile, key.serialize_pem()).unwrap();
        std::fs::write(&files.cacertfile, self.issuer.pem()).unwrap();
        files
    }
}

/// Three nodes, each with a certificate from `ca`.
async fn tls_cluster(ca: &Ca) -> TestCluster {
    let dir = tempfile::tempdir().unwrap();
    let tls: HashMap<String, TlsFiles> = ["node-a", "node-b", "node-c"]
        .into_iter()
        .map(|n| (n.to_string(), ca.node_files(dir.path(), n)))
        .collect();
    TestCluster::start_in(dir, 3, common::timing(), tls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_certificates_from_the_cluster_ca_form_a_cluster_and_replicate() {
    let ca = Ca::new("cluster");
    let cluster = tls_cluster(&ca).await;
    let leader = cluster.leader().await;
    let status = cluster.nodes[leader].cluster().status();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 3);
    // A write through a follower (forwarded to the leader over TLS) reaches every node.
    let follower = (leader + 1) % 3;
    common::bounded("write", cluster.nodes[follower].cluster().write(vhost(1)))
        .await
        .unwrap();
    for node in &cluster.nodes {
        within("the write applied everywhere", || {
            node.applier.applied().len() == 1
        })
        .await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_certificate_from_another_ca_is_refused_and_does_not_join() {
    let ca = Ca::new("cluster");
    let mut cluster = tls_cluster(&ca).await;
    let leader = cluster.leader().await;
    let other = Ca::new("other");
    let files = other.node_files(cluster.dir.path(), "node-x");
    // Its own CA file names the cluster's CA too: only its certificate is foreign, so it is the
    // cluster's listener that refuses it (the client certificate check), not the joiner that
    // refuses the cluster.
    let both = cluster.dir.path().join("both-ca.pem");
    std::fs::write(&both, format!("{}{}", other.issuer.pem(), ca.issuer.pem())).unwrap();
    let files = TlsFiles {
        cacertfile: both,
        ..files
    };
    cluster.tls.insert("node-x".into(), files.clone());
    let x = cluster.add_lone_node("node-x").await;
    let seed = cluster.nodes[leader].addr.to_string();
    let joined = common::bounded("join", cluster.nodes[x].cluster().join(&seed)).await;
    assert!(
        matches!(joined, Err(ClusterError::Unreachable { .. })),
        "a node with a foreign certificate joined: {joined:?}"
    );
    // The same from a bare client with that certificate: no answer, only a refusal.
    let tls = ClusterTls::load(&files).unwrap();
    let hello = Request::Hello {
        protocol: PROTOCOL,
        name: "node-x".into(),
    };
    let answer = Peers::with_tls(Some(std::sync::Arc::new(tls)))
        .call(&seed, hello, Duration::from_secs(5))
        .await;
    assert!(
        answer.is_err(),
        "answered a foreign certificate: {answer:?}"
    );
    // The cluster is still the three nodes.
    let members = cluster.nodes[leader].cluster().status().members;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m.name != "node-x"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_client_of_a_tls_cluster_port_gets_nothing() {
    let ca = Ca::new("cluster");
    let cluster = tls_cluster(&ca).await;
    cluster.leader().await;
    let addr = cluster.nodes[0].addr.to_string();
    // A node speaking plain TCP: its hello gets no answer.
    let hello = Request::Hello {
        protocol: PROTOCOL,
        name: "plain".into(),
    };
    let answer = Peers::new()
        .call(&addr, hello, Duration::from_secs(5))
        .await;
    assert!(
        answer.is_err(),
        "a plain-TCP hello was answered: {answer:?}"
    );
    // A raw socket writing a frame-like length and bytes: the listener closes the connection,
    // having sent at most a TLS alert (never a frame of ours: a TLS record starts 0x15 or 0x16).
    let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
    socket.write_all(&[0, 0, 0, 4, 1, 2, 3, 4]).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(common::WITHIN, socket.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the listener kept a plain-TCP connection open"
    );
    assert!(
        got.is_empty() || got[0] == 0x15,
        "the listener answered plain TCP with {got:?}"
    );
    cluster.shutdown().await;
}

#[test]
fn tls_files_that_do_not_match_are_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster");
    let a = ca.node_files(dir.path(), "node-a");
    let b = ca.node_files(dir.path(), "node-b");
    // node-a's certificate with node-b's key.
    let mixed = TlsFiles {
        keyfile: b.keyfile,
        ..a.clone()
    };
    assert!(ClusterTls::load(&mixed).is_err());
    let missing = TlsFiles {
        cacertfile: dir.path().join("nope.pem"),
        ..a
    };
    assert!(ClusterTls::load(&missing).is_err());
}
