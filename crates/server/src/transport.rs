//! What a connection runs over: plain TCP, TLS over TCP, or any other byte stream (WebSocket).
//!
//! The protocol adapters take a [`Transport`] and a [`PeerInfo`] and do not care which it is,
//! with one exception kept on purpose: plain TCP has a fast path. An idle MQTT connection waits
//! for its socket's readiness without holding a read buffer, and writes with `try_write`
//! straight from its outbound buffer (see `mqtt/connection.rs`, docs/performance.md); a
//! [`Transport::Tcp`] keeps exactly that. TLS and the other streams have no readiness of their
//! own (rustls may hold decrypted bytes the socket no longer signals, and a write may be taken
//! into rustls' buffer before it reaches the socket), so they go through the generic
//! `AsyncRead + AsyncWrite` calls ([`Transport`] implements both for every variant).
//!
//! The enum costs the plain-TCP connection nothing in size: TLS and other streams are boxed,
//! and the variant tag fits in a niche of `TcpStream` (checked by a test below).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use crate::tls::cert::{CertError, CertNames};

/// Any byte stream a connection can run over besides TCP and TLS (WebSocket adapters).
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {}

/// A server-side TLS stream over TCP.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// A client connection's byte stream.
pub enum Transport {
    /// Plain TCP: the fast path (readiness, `try_read`, `try_write`).
    Tcp(TcpStream),
    /// TLS over TCP (AMQPS, MQTTS), after the handshake.
    Tls(Box<TlsStream>),
    /// Anything else that reads and writes bytes (MQTT over WebSocket, over TLS or not).
    Other(Box<dyn AsyncStream>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp(_) => "Transport::Tcp",
            Transport::Tls(_) => "Transport::Tls",
            Transport::Other(_) => "Transport::Other",
        })
    }
}

impl Transport {
    /// Disables Nagle's algorithm on the TCP socket underneath, where there is one we can reach.
    pub fn set_nodelay(&self) {
        let tcp = match self {
            Transport::Tcp(s) => s,
            Transport::Tls(s) => s.get_ref().0,
            Transport::Other(_) => return,
        };
        let _ = tcp.set_nodelay(true);
    }

    /// Splits into a read half and a write half for two tasks (AMQP's reader and writer). TCP
    /// splits without a lock (`TcpStream::into_split`); the others share the stream under
    /// tokio's split lock, taken only for the duration of one read or write call.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Transport::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            other => {
                let (r, w) = tokio::io::split(other);
                (ReadHalf::Other(r), WriteHalf::Other(w))
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Other(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Other(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Other(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Other(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The read half of a split [`Transport`].
pub enum ReadHalf {
    /// TCP's own read half.
    Tcp(tokio::net::tcp::OwnedReadHalf),
    /// Any other transport, shared with its write half.
    Other(tokio::io::ReadHalf<Transport>),
}

/// The write half of a split [`Transport`].
pub enum WriteHalf {
    /// TCP's own write half.
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    /// Any other transport, shared with its read half.
    Other(tokio::io::WriteHalf<Transport>),
}

impl ReadHalf {
    /// Reads into `rb` (see `readbuf.rs`). TCP waits for readiness holding no buffer and
    /// allocates one only when there is something to read, so that an idle connection holds
    /// none; other streams (no readiness of their own) poll a read into the prepared buffer.
    pub fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        rb: &mut crate::readbuf::ReadBuf,
    ) -> Poll<io::Result<usize>> {
        match self {
            ReadHalf::Tcp(s) => loop {
                let stream: &TcpStream = s.as_ref();
                match stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
                rb.prepare();
                match s.try_read_buf(&mut rb.buf) {
                    Ok(n) => return Poll::Ready(Ok(n)),
                    // A spurious readiness: wait again, without the buffer.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => rb.release(),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            },
            ReadHalf::Other(s) => {
                rb.prepare();
                let read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(s, &mut rb.buf));
                std::future::Future::poll(read, cx)
            }
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Other(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Other(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Other(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Other(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Who is on the other end of a connection, as far as the transport knows.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The client's address (the TCP peer).
    pub addr: SocketAddr,
    /// What the TLS handshake established, on a TLS listener (also under a WebSocket).
    pub tls: Option<Arc<TlsInfo>>,
    /// Our address the client connected to (the connection's `host:port` in the registry).
    pub local: Option<SocketAddr>,
}

impl PeerInfo {
    /// A client on a plain listener.
    pub fn plain(addr: SocketAddr) -> PeerInfo {
        PeerInfo {
            addr,
            tls: None,
            local: None,
        }
    }
}

/// What a completed TLS handshake tells about the client.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The client's certificate chain, its own certificate first (empty when it sent none,
    /// which `verify_peer` without `fail_if_no_peer_cert` allows). Verified against
    /// `cacertfile` when the listener asked for it.
    pub peer_certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// The server name the client asked for (SNI), if it sent one.
    pub sni: Option<String>,
    /// The negotiated protocol version (TLS 1.2 or 1.3).
    pub protocol: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite.
    pub cipher: Option<rustls::CipherSuite>,
}

impl TlsInfo {
    /// Reads what the handshake of `stream` established.
    pub fn of(stream: &TlsStream) -> TlsInfo {
        let conn = stream.get_ref().1;
        TlsInfo {
            peer_certs: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            sni: conn.server_name().map(str::to_string),
            protocol: conn.protocol_version(),
            cipher: conn.negotiated_cipher_suite().map(|s| s.suite()),
        }
    }

    /// The client's own certificate (DER), if it presented one.
    pub fn peer_cert(&self) -> Option<&[u8]> {
        self.peer_certs.first().map(|c| c.as_ref())
    }

    /// The subject DN (RFC 4514) and common name of the client's certificate, if it
    /// presented one (what SASL EXTERNAL and MQTT certificate login use as the user name).
    pub fn peer_names(&self) -> Option<Result<CertNames, CertError>> {
        self.peer_cert().map(CertNames::of)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{TlsConfig, TlsContext, TlsVerify};
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa,
        KeyPair,
    };

    /// What the handlers get from a TLS handshake with a client certificate: its chain, its
    /// names, the SNI, the version (the API SASL EXTERNAL and MQTT certificate login use).
    #[tokio::test]
    async fn a_tls_peer_brings_its_certificate_and_names() {
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::CommonName, "alice");
        client_params.distinguished_name = dn;
        let client = client_params.signed_by(&client_key, &ca).unwrap();

        let dir = std::env::temp_dir().join(format!("pigeon-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in [
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("ca.pem", ca.pem()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        let ctx = TlsContext::load(&TlsConfig {
            cacertfile: Some(dir.join("ca.pem")),
            verify: TlsVerify::VerifyPeer,
            fail_if_no_peer_cert: true,
            ..TlsConfig::new(dir.join("server.pem"), dir.join("server.key"))
        })
        .unwrap();
        let _ = std::fs::remove_dir_all(&dir);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client_task = tokio::spawn(async move {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_client_auth_cert(
                    vec![client.der().clone()],
                    rustls_pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into()),
                )
                .unwrap();
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            // Wait for the server to close, so the handshake completes on both sides.
            let mut buf = [0u8; 1];
            let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut buf).await;
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = ctx.acceptor().accept(tcp).await.unwrap();
        let info = TlsInfo::of(&stream);
        drop(stream);
        client_task.await.unwrap();
        assert_eq!(info.peer_certs.len(), 1);
        assert_eq!(info.sni.as_deref(), Some("localhost"));
        assert_eq!(info.protocol, Some(rustls::ProtocolVersion::TLSv1_3));
        assert!(info.cipher.is_some());
        let names = info.peer_names().unwrap().unwrap();
        assert_eq!(names.subject_dn, "CN=alice,O=Acme");
        assert_eq!(names.common_name.as_deref(), Some("alice"));
    }

    /// An MQTT connection's task holds its transport while idle: the enum must not make a
    /// plain-TCP connection larger than the `TcpStream` it holds (see docs/performance.md).
    #[test]
    fn a_transport_is_no_larger_than_a_tcp_stream() {
        assert_eq!(
            std::mem::size_of::<Transport>(),
            std::mem::size_of::<TcpStream>()
        );
    }
}
