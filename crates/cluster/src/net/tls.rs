//! TLS on the cluster link, with mutual certificate authentication (issue 13, item 1).
//!
//! Every node has a certificate and key and the cluster's CA. Both ends of every connection
//! present their certificate and verify the other's against the CA: the listener requires a
//! client certificate (rustls' `WebPkiClientVerifier`, mandatory), the dialling node verifies
//! the listener's, and, unless `tls_verify_peer_name = false`, that it names the host dialled
//! (the host of the peer's address, a DNS name or an IP address in the subjectAltName), as any
//! TLS client does. A connection whose handshake fails is dropped before a single frame is read:
//! a node without a certificate from the CA, or a plain-TCP client, gets nothing.
//!
//! RabbitMQ's inter-node TLS (Erlang distribution over TLS, `inter_node_tls.config`) has the
//! same shape: `certfile`, `keyfile`, `cacertfile` for the server and the client side,
//! `verify_peer` and `fail_if_no_peer_cert` on both, and its examples often switch the host name
//! check off (`{server_name_indication, disable}`) where certificates do not name the hosts.
//!
//! rustls with the ring provider, given explicitly to each configuration (never the process
//! default); TLS 1.3 and 1.2.

use crate::config::{ConfigError, TlsFiles};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The node's TLS configurations for both directions of the cluster link.
pub struct ClusterTls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

fn tls_err(path: &Path, reason: impl std::fmt::Display) -> ConfigError {
    ConfigError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The ring provider, explicitly (no process-wide default is installed or relied upon). rustls
/// 0.23.48 deprecates it for lacking post-quantum key exchange; ring is the workspace's choice,
/// as in the server's TLS (crates/server/src/tls.rs).
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, e))?;
    if certs.is_empty() {
        return Err(tls_err(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl ClusterTls {
    /// Reads the files and builds both configurations.
    pub fn load(files: &TlsFiles) -> Result<ClusterTls, ConfigError> {
        let certs = read_certs(&files.certfile)?;
        let key =
            PrivateKeyDer::from_pem_file(&files.keyfile).map_err(|e| tls_err(&files.keyfile, e))?;
        let mut roots = RootCertStore::empty();
        for ca in read_certs(&files.cacertfile)? {
            roots.add(ca).map_err(|e| tls_err(&files.cacertfile, e))?;
        }
        let roots = Arc::new(roots);
        let versions = rustls::DEFAULT_VERSIONS;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| tls_err(&files.cacertfile, e))?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| tls_err(&files.certfile, e))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| tls_err(&files.keyfile, e))?;

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| tls_err(&files.cacertfile, e))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| tls_err(&files.certfile, e))?;
        let builder = if files.verify_peer_name {
            builder.with_webpki_verifier(server_verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(server_verifier)))
        };
        let client = builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| tls_err(&files.keyfile, e))?;
        Ok(ClusterTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// An acceptor for the listener's handshakes.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.server.clone())
    }

    /// A connector for the handshakes of outgoing connections.
    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector::from(self.client.clone())
    }
}

/// The name the dialled peer's certificate must carry: the host of `host:port` (an IP address
/// or a DNS name; `[v6]:port` without its brackets).
pub(crate) fn server_name(addr: &str) -> std::io::Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host:?} is not a host name for TLS: {e}"),
        )
    })
}

/// Verifies the peer's chain against the CA and ignores which names it carries
/// (`tls_verify_peer_name = false`). rustls' WebPKI verifier checks the chain first and the
/// name last, so a name error means the chain was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_dialled_host_is_the_name_checked() {
        assert_eq!(
            server_name("node-b:25672").unwrap(),
            ServerName::try_from("node-b").unwrap()
        );
        assert!(matches!(
            server_name("127.0.0.1:7000").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]:7000").unwrap(),
            ServerName::IpAddress(_)
        ));
    }
}
