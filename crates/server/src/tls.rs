//! TLS for the listeners (AMQPS, MQTTS, MQTT over secure WebSocket, and HTTPS for the management
//! API and Prometheus: `https.rs`): rustls, TLS 1.2 and 1.3,
//! the ring provider (installed explicitly, never a process default).
//!
//! The configuration uses RabbitMQ's words (`ssl_options.*`): `certfile`, `keyfile`,
//! `cacertfile`, `verify = verify_none | verify_peer`, `fail_if_no_peer_cert`. What they mean
//! here, as in RabbitMQ (Erlang's ssl): `verify_none` asks no client certificate;
//! `verify_peer` asks for one and verifies it against `cacertfile` when it comes, and
//! `fail_if_no_peer_cert = true` also refuses a client that sends none.
//!
//! A [`TlsContext`] holds the rustls configuration that new handshakes use; `reload.rs`
//! replaces it when the files change on disk or on SIGHUP ([`TlsContext::reload`]).
//! Connections already established keep the configuration they were made with.

pub mod cert;
pub(crate) mod https;
pub mod reload;

use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The `[tls]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), its own certificate first.
    pub certfile: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted).
    pub keyfile: PathBuf,
    /// The certificate authorities that client certificates are verified against (PEM).
    #[serde(default)]
    pub cacertfile: Option<PathBuf>,
    /// Whether clients are asked for a certificate.
    #[serde(default)]
    pub verify: TlsVerify,
    /// With `verify_peer`: refuse clients that send no certificate.
    #[serde(default)]
    pub fail_if_no_peer_cert: bool,
}

impl TlsConfig {
    /// A configuration with a certificate and key and no client certificates.
    pub fn new(certfile: impl Into<PathBuf>, keyfile: impl Into<PathBuf>) -> TlsConfig {
        TlsConfig {
            certfile: certfile.into(),
            keyfile: keyfile.into(),
            cacertfile: None,
            verify: TlsVerify::VerifyNone,
            fail_if_no_peer_cert: false,
        }
    }

    /// The files the configuration is read from.
    pub fn files(&self) -> Vec<&Path> {
        let mut files = vec![self.certfile.as_path(), self.keyfile.as_path()];
        files.extend(self.cacertfile.as_deref());
        files
    }
}

/// Whether the server asks clients for a certificate (RabbitMQ's `ssl_options.verify`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TlsVerify {
    /// No client certificate is asked for.
    #[default]
    VerifyNone,
    /// A client certificate is asked for and verified against `cacertfile`.
    VerifyPeer,
}

/// Why a TLS configuration cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{}: {what}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// `verify_peer` without `cacertfile`: nothing to verify client certificates against.
    #[error("tls.verify = verify_peer needs tls.cacertfile (the CAs client certificates are verified against)")]
    NoCaFile,
    /// rustls refused the certificate, the key or the CAs (a key that does not match the
    /// certificate, for example).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// The file contents a configuration was built from (to tell a real change from a touch).
type Contents = Vec<Vec<u8>>;

/// The TLS configuration that new handshakes use, replaceable at run time.
pub struct TlsContext {
    config: TlsConfig,
    current: RwLock<Arc<rustls::ServerConfig>>,
    /// The file contents `current` was built from, and those of the last failed attempt.
    loaded: Mutex<(Contents, Option<Contents>)>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("config", &self.config)
            .finish()
    }
}

/// What [`TlsContext::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The files changed: new handshakes use them.
    Changed,
    /// The files are as they were.
    Unchanged,
}

impl TlsContext {
    /// Reads the files and builds the configuration.
    pub fn load(config: &TlsConfig) -> Result<TlsContext, TlsError> {
        let contents = read_all(config)?;
        let server = build(config, &contents)?;
        Ok(TlsContext {
            config: config.clone(),
            current: RwLock::new(Arc::new(server)),
            loaded: Mutex::new((contents, None)),
        })
    }

    /// The configuration it was loaded from.
    pub fn config(&self) -> &TlsConfig {
        &self.config
    }

    /// An acceptor with the current configuration, for one handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.read()))
    }

    /// Reads the files again and, if they changed and make a valid configuration, uses them
    /// for new handshakes. On error the previous configuration stays.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        self.try_reload().0
    }

    /// [`TlsContext::reload`], and whether a failure is the same as the previous one (the
    /// same bad files).
    fn try_reload(&self) -> (Result<Reloaded, TlsError>, bool) {
        let contents = match read_all(&self.config) {
            Ok(c) => c,
            Err(e) => return (Err(e), false),
        };
        let mut loaded = self.loaded.lock();
        if contents == loaded.0 {
            loaded.1 = None;
            return (Ok(Reloaded::Unchanged), false);
        }
        match build(&self.config, &contents) {
            Ok(server) => {
                *self.current.write() = Arc::new(server);
                *loaded = (contents, None);
                (Ok(Reloaded::Changed), false)
            }
            Err(e) => {
                let repeated = loaded.1.as_ref() == Some(&contents);
                loaded.1 = Some(contents);
                (Err(e), repeated)
            }
        }
    }

    /// [`TlsContext::reload`] with one log line for what happened; a failure that repeats the
    /// previous one (the same bad files, touched again) is logged at debug only.
    pub fn reload_logged(&self, why: &str) {
        match self.try_reload() {
            (Ok(Reloaded::Changed), _) => {
                tracing::info!(certfile = %self.config.certfile.display(), "{why}: TLS certificate and key reloaded");
            }
            (Ok(Reloaded::Unchanged), _) => {
                tracing::debug!("{why}: TLS files unchanged");
            }
            (Err(e), true) => {
                tracing::debug!(error = %e, "{why}: TLS files still invalid");
            }
            (Err(e), false) => {
                tracing::error!(error = %e, "{why}: TLS files not reloaded, the previous certificate stays in use");
            }
        }
    }
}

fn read_all(config: &TlsConfig) -> Result<Contents, TlsError> {
    config
        .files()
        .into_iter()
        .map(|path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        })
        .collect()
}

/// The ring provider, explicitly (no process-wide default is installed or relied upon).
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange (which aws-lc-rs has);
/// ring is the workspace's choice (no C build), and its TLS 1.2/1.3 suites are the usual ones.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls configuration from the files' contents (certfile, keyfile, cacertfile).
fn build(config: &TlsConfig, contents: &Contents) -> Result<rustls::ServerConfig, TlsError> {
    let pem_err = |path: &Path, what: String| TlsError::Pem {
        path: path.to_path_buf(),
        what,
    };
    let certs = read_certs(&config.certfile, &contents[0])?;
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| {
        pem_err(
            &config.keyfile,
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1, unencrypted): {e}"),
        )
    })?;
    let provider = provider();
    let rustls_err = |e: rustls::Error| TlsError::Rustls(e.to_string());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(rustls_err)?;
    let builder = match config.verify {
        TlsVerify::VerifyNone => builder.with_no_client_auth(),
        TlsVerify::VerifyPeer => {
            let (Some(path), Some(pem)) = (&config.cacertfile, contents.get(2)) else {
                return Err(TlsError::NoCaFile);
            };
            let mut roots = RootCertStore::empty();
            for ca in read_certs(path, pem)? {
                roots
                    .add(ca)
                    .map_err(|e| pem_err(path, format!("unusable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // rustls checks that the key belongs to the certificate.
    builder.with_single_cert(certs, key).map_err(rustls_err)
}

fn read_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate (expected -----BEGIN CERTIFICATE-----)".into(),
        });
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, written to `dir`.
    fn write_cert(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pigeon-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let dir = temp_dir("load");
        let (cert, key) = write_cert(&dir, "server");
        let ctx = TlsContext::load(&TlsConfig::new(&cert, &key)).unwrap();
        assert_eq!(ctx.reload().unwrap(), Reloaded::Unchanged);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn verify_peer_needs_a_ca_file() {
        let dir = temp_dir("noca");
        let (cert, key) = write_cert(&dir, "server");
        let config = TlsConfig {
            verify: TlsVerify::VerifyPeer,
            ..TlsConfig::new(&cert, &key)
        };
        assert!(matches!(TlsContext::load(&config), Err(TlsError::NoCaFile)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = temp_dir("bad");
        let (cert, key) = write_cert(&dir, "server");
        let missing = TlsContext::load(&TlsConfig::new(dir.join("nope.pem"), &key));
        assert!(matches!(missing, Err(TlsError::Read { path, .. }) if path.ends_with("nope.pem")));
        let (_, other_key) = write_cert(&dir, "other");
        let mismatched = TlsContext::load(&TlsConfig::new(&cert, &other_key));
        assert!(
            matches!(mismatched, Err(TlsError::Rustls(_))),
            "{mismatched:?}"
        );
        std::fs::write(&cert, "no pem here").unwrap();
        let empty = TlsContext::load(&TlsConfig::new(&cert, &key));
        assert!(matches!(empty, Err(TlsError::Pem { .. })), "{empty:?}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
