//! TLS for the behaviour tests: a certificate authority, server and client certificates made
//! with rcgen, written as PEM files into a temporary directory, and the clients' side (rustls
//! client configurations, reading the certificate a server presents).
//!
//! Everything uses rustls' ring provider, given explicitly (no process-wide default).
//!
//! ```no_run
//! # async fn f() {
//! use pigeon_tests::tls_support::Pki;
//! let pki = Pki::new("test CA");
//! // AMQPS and MQTTS on 127.0.0.1:0, with certfile, keyfile and cacertfile in pki.dir.
//! let config = pigeon_tests::tls_support::config_with(pki.server_files(1));
//! let client = pki.client("alice"); // a client certificate signed by the CA
//! # }
//! ```

use pigeon_server::{ServerConfig, TlsConfig, TlsVerify};
use rcgen::{
    CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

use crate::within;

/// [`ServerConfig::for_tests`] with `tls` and the AMQPS, MQTTS and stream TLS listeners on 127.0.0.1:0
/// (once `tls` is set, they otherwise default to ports 5671 and 8883 on every interface); the
/// secure WebSocket listener off (a test that wants it sets `mqtt_wss_listen`).
pub fn config_with(tls: TlsConfig) -> ServerConfig {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    ServerConfig {
        tls: Some(tls),
        amqps_listen: Some(loopback.into()),
        mqtts_listen: Some(loopback.into()),
        stream_tls_listen: Some(loopback.into()),
        mqtt_wss_listen: Some(pigeon_server::Listen::none()),
        ..ServerConfig::for_tests()
    }
}

/// The ring provider, explicitly.
#[allow(deprecated)] // rustls deprecates ring's provider for its lack of post-quantum groups.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate and its private key, in PEM and DER.
pub struct CertKey {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM, PKCS#8).
    pub key_pem: String,
    /// The certificate (DER).
    pub cert_der: CertificateDer<'static>,
    /// The private key (DER, PKCS#8).
    pub key_der: Vec<u8>,
}

impl CertKey {
    /// The private key as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }
}

/// A test certificate authority and the directory its files are written to.
pub struct Pki {
    /// Where [`Pki::server_files`] and [`Pki::write`] put files (deleted on drop).
    pub dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA whose subject is `CN=<name>`.
    pub fn new(name: &str) -> Pki {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        Pki {
            dir: tempfile::tempdir().expect("a temporary directory for certificates"),
            ca,
        }
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A server certificate for `localhost`, `127.0.0.1` and `::1`, with serial `serial` (to
    /// tell two of them apart after a reload).
    pub fn server(&self, serial: u64) -> CertKey {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("localhost");
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("DNS name")),
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        ];
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject is `CN=<cn>,O=Pigeon tests`.
    pub fn client(&self, cn: &str) -> CertKey {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "Pigeon tests");
        name.push(DnType::CommonName, cn);
        params.distinguished_name = name;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> CertKey {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("signed certificate");
        CertKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes `contents` to `name` in the directory, atomically (a temporary file renamed
    /// over it, as a careful deployment tool does).
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        write_atomically(self.dir.path(), name, contents)
    }

    /// Writes a server certificate with `serial` (`server.pem`, `server.key`) and the CA
    /// (`ca.pem`), and returns a `[tls]` configuration using them (verify_none).
    pub fn server_files(&self, serial: u64) -> TlsConfig {
        self.write_server(serial);
        let mut config = TlsConfig::new(
            self.dir.path().join("server.pem"),
            self.dir.path().join("server.key"),
        );
        config.cacertfile = Some(self.write("ca.pem", &self.ca_pem()));
        config
    }

    /// Replaces the server certificate and key with new ones of `serial` (key first: the
    /// reload reads both after the directory settles).
    pub fn write_server(&self, serial: u64) {
        let server = self.server(serial);
        self.write("server.key", &server.key_pem);
        self.write("server.pem", &server.cert_pem);
    }

    /// A `[tls]` configuration that asks clients for a certificate: `verify_peer`, optional
    /// unless `required`.
    pub fn verify_peer(&self, serial: u64, required: bool) -> TlsConfig {
        TlsConfig {
            verify: TlsVerify::VerifyPeer,
            fail_if_no_peer_cert: required,
            ..self.server_files(serial)
        }
    }

    /// A rustls client configuration trusting this CA, presenting `client` if given.
    pub fn client_config(&self, client: Option<&CertKey>) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("CA as trust anchor");
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        match client {
            Some(c) => builder
                .with_client_auth_cert(vec![c.cert_der.clone()], c.private_key())
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        }
    }
}

/// Writes `contents` to `dir/name` through a temporary file renamed over it.
pub fn write_atomically(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents).expect("write a certificate file");
    std::fs::rename(&tmp, &path).expect("rename a certificate file into place");
    path
}

fn dn(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// Completes a TLS handshake with `addr` (as `localhost`) and returns the certificate the
/// server presented, or the handshake's error.
pub async fn handshake(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = within("TCP connect", TcpStream::connect(addr)).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    within("TLS handshake", connector.connect(name, tcp)).await
}

/// The serial number of the certificate the server at `addr` presents now.
pub async fn served_serial(addr: SocketAddr, config: rustls::ClientConfig) -> u64 {
    let stream = handshake(addr, config)
        .await
        .expect("TLS handshake with the broker");
    let der = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("the server presented a certificate")
        .clone();
    serial_of(&der)
}

/// The serial number of a DER certificate (as rcgen's [`SerialNumber::from`] a `u64` wrote it).
pub fn serial_of(der: &[u8]) -> u64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a DER certificate");
    let bytes = cert.raw_serial();
    bytes
        .iter()
        .skip_while(|&&b| b == 0)
        .fold(0u64, |n, &b| (n << 8) | u64::from(b))
}

/// Whether this machine has an IPv6 loopback (`::1` in `/proc/net/if_inet6`).
pub fn has_ipv6_loopback() -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("00000000000000000000000000000001"))
        })
        .unwrap_or(false)
}
