//! TLS for the bench's own clients: the flags (`--tls`, `--cacert`, `--insecure`, `--cert`,
//! `--key`, `--server-name`), the rustls client configuration they make, and the handshake.
//!
//! The handshake runs through tokio-rustls; then [`connect`] takes the stream apart again and
//! hands the TCP socket and the rustls connection to [`super::net::Wire`], which drives both
//! itself with the same non-blocking reads and writes as a plain connection (one task, no
//! background reader or writer), so TLS costs only the record layer.
//!
//! There are no system trust anchors offline (and a benchmark should not depend on them): a TLS
//! run names its CA with `--cacert`, or says `--insecure` to skip verification (which still
//! checks the handshake signatures, so the cost measured is the real one).

use anyhow::Context;
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;

/// The TLS flags every workload has.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Connect over TLS, as an `amqps://` or `mqtts://` URL does (a plain scheme in the URL
    /// becomes its TLS one, with its default port 5671 or 8883 unless the URL gives one).
    #[arg(long)]
    pub tls: bool,

    /// TLS: the CA certificate(s) (PEM) that the broker's certificate must chain to.
    #[arg(
        long,
        visible_alias = "cafile",
        value_name = "FILE",
        conflicts_with = "insecure"
    )]
    pub cacert: Option<PathBuf>,

    /// TLS: accept any broker certificate (no chain or name check; for tests only).
    #[arg(long)]
    pub insecure: bool,

    /// TLS: present this client certificate (PEM, leaf first), for brokers that ask for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// TLS: the private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// TLS: the name to verify the broker's certificate against (and send as SNI), when it is
    /// not the URL's host (e.g. connecting to 127.0.0.1 with a certificate for localhost).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

impl TlsArgs {
    /// Whether any TLS-only flag was given (then TLS is meant even without `--tls`).
    fn any_option(&self) -> bool {
        self.cacert.is_some() || self.insecure || self.cert.is_some() || self.server_name.is_some()
    }

    /// The URL to connect to: with `--tls`, `plain://` becomes `secure://`. Other schemes are
    /// left as they are (the URL parser refuses what it does not know).
    pub fn url(&self, url: &str, plain: &str, secure: &str) -> String {
        match url.split_once("://") {
            Some((scheme, rest)) if self.tls && scheme.eq_ignore_ascii_case(plain) => {
                format!("{secure}://{rest}")
            }
            _ => url.to_owned(),
        }
    }

    /// The client configuration when `tls` (the URL's scheme asks for TLS), else `None`; a TLS
    /// flag without TLS is refused rather than ignored.
    pub fn client(&self, tls: bool) -> anyhow::Result<Option<TlsClient>> {
        if !tls {
            if self.any_option() {
                anyhow::bail!(
                    "TLS options given for a plain connection: use --tls or an amqps:// / mqtts:// URL"
                );
            }
            return Ok(None);
        }
        TlsClient::new(self).map(Some)
    }
}

impl TlsArgs {
    /// The rustls client configuration these flags make (ring provider; the CA of `--cacert`,
    /// or none checked with `--insecure`; `--cert` and `--key` presented), for other clients
    /// of the `pigeon` binary (`pigeon pub`, `pigeon sub`).
    pub fn rustls_config(&self) -> anyhow::Result<Arc<ClientConfig>> {
        Ok(TlsClient::new(self)?.config)
    }
}

/// What every TLS connection of a run shares: the rustls configuration and the name to verify.
#[derive(Debug, Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl TlsClient {
    fn new(args: &TlsArgs) -> anyhow::Result<TlsClient> {
        let provider = Arc::new(ring_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("the TLS provider offers no protocol version")?;
        let builder = if args.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            let Some(cacert) = &args.cacert else {
                anyhow::bail!(
                    "TLS needs --cacert FILE (the CA that signed the broker's certificate) or \
                     --insecure: Pigeon's clients use no system trust store"
                );
            };
            let mut roots = RootCertStore::empty();
            for cert in read_certs(cacert)? {
                roots.add(cert).with_context(|| {
                    format!("{} holds an unusable CA certificate", cacert.display())
                })?;
            }
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("cannot build the certificate verifier")?;
            builder.with_webpki_verifier(verifier)
        };
        let config = match (&args.cert, &args.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("cannot read a private key from {}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("the client certificate and key do not go together")?
            }
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &args.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).with_context(|| {
                format!("--server-name {name} is not a DNS name or IP address")
            })?),
            None => None,
        };
        Ok(TlsClient {
            config: Arc::new(config),
            server_name,
        })
    }

    /// Runs the handshake on `stream` for `host`, and gives back the socket and the rustls
    /// connection for the caller to drive.
    pub async fn connect(
        &self,
        host: &str,
        stream: TcpStream,
    ) -> anyhow::Result<(TcpStream, ClientConnection)> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned())
                .with_context(|| format!("{host} is not a DNS name or IP address for TLS"))?,
        };
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let stream = connector
            .connect(name, stream)
            .await
            .with_context(|| format!("TLS handshake with {host} failed"))?;
        Ok(stream.into_inner())
    }
}

/// The ring provider, named explicitly rather than taken from a process default (the
/// workspace's choice). rustls 0.23.48 deprecates it for lacking post-quantum key exchange,
/// which the brokers measured against (RabbitMQ on Erlang/OTP 25) do not offer either.
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

/// `--insecure`: any certificate chain and name pass, but the handshake signatures are still
/// checked, so the work of an ordinary handshake is done and measured.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flag_turns_plain_schemes_into_secure_ones() {
        let on = TlsArgs {
            tls: true,
            ..TlsArgs::default()
        };
        assert_eq!(
            on.url("amqp://h:5671/%2f", "amqp", "amqps"),
            "amqps://h:5671/%2f"
        );
        assert_eq!(on.url("AMQP://h", "amqp", "amqps"), "amqps://h");
        assert_eq!(on.url("amqps://h", "amqp", "amqps"), "amqps://h");
        assert_eq!(
            TlsArgs::default().url("mqtt://h", "mqtt", "mqtts"),
            "mqtt://h"
        );
    }

    #[test]
    fn tls_needs_a_trust_anchor_and_plain_refuses_tls_flags() {
        let bare = TlsArgs::default();
        assert!(bare.client(false).unwrap().is_none());
        let e = bare.client(true).unwrap_err().to_string();
        assert!(e.contains("--cacert"), "{e}");
        let insecure = TlsArgs {
            insecure: true,
            ..TlsArgs::default()
        };
        assert!(insecure.client(true).unwrap().is_some());
        assert!(insecure.client(false).is_err());
    }
}
