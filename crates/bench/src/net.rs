//! The bench's own clients' plumbing: a TCP connection with a read buffer and a write buffer,
//! driven by the one task that uses it, and the URLs that name brokers.
//!
//! There is no background reader or writer task: a publisher encodes into [`Wire::out`] and
//! writes when enough has gathered or before it waits; a consumer decodes from [`Wire::rbuf`]
//! and reads when nothing complete is left, writing its buffered acks on the way. Whichever way
//! the bytes flow, a wait for one direction keeps the other moving, so two peers that both write
//! a lot can never block each other.
//!
//! Over TLS the same holds one layer down: `out` is handed to rustls, which encrypts it into
//! records written with the same non-blocking writes, and ciphertext read from the socket is
//! decrypted into `rbuf` (see [`super::tls`] for the handshake).

use super::tls::TlsClient;
use anyhow::Context;
use bytes::{Buf, BytesMut};
use rustls::ClientConnection;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

/// One TCP connection and its two buffers.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    /// The TLS session and its ciphertext read buffer, on a TLS connection.
    tls: Option<Box<Tls>>,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub out: BytesMut,
    /// Room to make in `rbuf` before each read.
    read_chunk: usize,
}

/// A TLS connection's state beside the socket.
#[derive(Debug)]
struct Tls {
    session: ClientConnection,
    /// Ciphertext read and not yet given to rustls (which takes at most a record at a time).
    cipher_in: BytesMut,
}

/// How much a busy connection reads at once.
pub const BULK: usize = 64 * 1024;

impl Wire {
    /// Connects to `host:port` from `source` when given, over TLS when `tls` is given.
    pub async fn connect(
        host: &str,
        port: u16,
        source: Option<std::net::IpAddr>,
        read_chunk: usize,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Wire> {
        let stream = match source {
            None => TcpStream::connect((host, port))
                .await
                .with_context(|| format!("cannot connect to {host}:{port}"))?,
            Some(ip) => {
                let addr = resolve(host, port).await?;
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .with_context(|| format!("cannot bind a socket to {ip}"))?;
                socket
                    .connect(addr)
                    .await
                    .with_context(|| format!("cannot connect to {addr} from {ip}"))?
            }
        };
        // The clients gather many frames into each write themselves.
        stream.set_nodelay(true)?;
        let (stream, tls) = match tls {
            None => (stream, None),
            Some(client) => {
                let (stream, session) = client.connect(host, stream).await?;
                let tls = Tls {
                    session,
                    cipher_in: BytesMut::with_capacity(read_chunk),
                };
                (stream, Some(Box::new(tls)))
            }
        };
        Ok(Wire {
            stream,
            tls,
            rbuf: BytesMut::with_capacity(read_chunk),
            out: BytesMut::new(),
            read_chunk,
        })
    }

    /// Writes what the socket takes now, without waiting.
    fn try_send(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.try_send(&self.stream, &mut self.out)?;
            if self.out.is_empty() {
                self.out.clear();
            }
            return Ok(());
        }
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.out.is_empty() {
            // Back to the start of the allocation, so the next message needs no new one.
            self.out.clear();
        }
        Ok(())
    }

    /// Reads what the socket has now, without waiting; false when it had nothing.
    fn try_receive(&mut self) -> io::Result<bool> {
        if let Some(tls) = &mut self.tls {
            return tls.try_receive(&self.stream, &mut self.rbuf, self.read_chunk);
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_chunk / 2 {
            self.rbuf.reserve(self.read_chunk);
        }
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Err(closed()),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Reads what the socket has now into `rbuf`, without waiting; false when it had nothing.
    pub fn receive_now(&mut self) -> io::Result<bool> {
        self.try_receive()
    }

    /// Waits until more bytes are in `rbuf`, writing `out` meanwhile.
    pub async fn receive(&mut self) -> io::Result<()> {
        loop {
            self.try_send()?;
            if self.try_receive()? {
                return Ok(());
            }
            let interest = if !self.wants_write() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            self.stream.ready(interest).await?;
        }
    }

    /// Writes all of `out`, reading into `rbuf` meanwhile (the caller decodes it later).
    pub async fn send(&mut self) -> io::Result<()> {
        loop {
            self.try_send()?;
            if !self.wants_write() {
                return Ok(());
            }
            let ready = self
                .stream
                .ready(Interest::READABLE | Interest::WRITABLE)
                .await?;
            if ready.is_readable() {
                self.try_receive()?;
            }
        }
    }

    /// Whether bytes wait to be written: encoded ones, or TLS records.
    fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|t| t.session.wants_write())
    }
}

impl Tls {
    /// Encrypts `out` and writes the records the socket takes now, without waiting.
    fn try_send(&mut self, stream: &TcpStream, out: &mut BytesMut) -> io::Result<()> {
        loop {
            if !out.is_empty() {
                // rustls takes what fits in its send buffer (64 KiB by default).
                let n = self.session.writer().write(out)?;
                out.advance(n);
            }
            if !self.session.wants_write() {
                return Ok(());
            }
            match self.session.write_tls(&mut Nonblocking(stream)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what the socket has now (one read of up to `read_chunk`), decrypting it into
    /// `rbuf`; false when no plaintext came of it.
    fn try_receive(
        &mut self,
        stream: &TcpStream,
        rbuf: &mut BytesMut,
        read_chunk: usize,
    ) -> io::Result<bool> {
        if self.cipher_in.capacity() - self.cipher_in.len() < read_chunk / 2 {
            self.cipher_in.reserve(read_chunk);
        }
        let eof = match stream.try_read_buf(&mut self.cipher_in) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => return Err(e),
        };
        let before = rbuf.len();
        loop {
            let state = self
                .session
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let plain = state.plaintext_bytes_to_read();
            if plain > 0 {
                let start = rbuf.len();
                rbuf.resize(start + plain, 0);
                self.session.reader().read_exact(&mut rbuf[start..])?;
            }
            if state.peer_has_closed() && rbuf.len() == before {
                return Err(closed());
            }
            // rustls stops decrypting when its plaintext buffer is full: go on while it gave
            // some, and feed it while ciphertext is left.
            if plain == 0 && self.cipher_in.is_empty() {
                break;
            }
            if !self.cipher_in.is_empty() {
                let fed = self.session.read_tls(&mut &self.cipher_in[..])?;
                self.cipher_in.advance(fed);
                if fed == 0 && plain == 0 {
                    // rustls took nothing and gave nothing: wait for the socket.
                    break;
                }
            }
        }
        if rbuf.len() > before {
            Ok(true)
        } else if eof {
            Err(closed())
        } else {
            Ok(false)
        }
    }
}

/// The socket as blocking I/O for rustls: a read or write that would wait fails with
/// `WouldBlock` instead.
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the broker closed the connection",
    )
}

/// The first address `host:port` resolves to.
pub async fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))
}

/// The AMQP URL schemes and their default ports.
pub const AMQP_SCHEMES: &[(&str, u16)] = &[("amqp", 5672), ("amqps", 5671)];
/// The MQTT URL schemes (as MQTT clients spell them) and their default ports.
pub const MQTT_SCHEMES: &[(&str, u16)] = &[
    ("mqtt", 1883),
    ("tcp", 1883),
    ("mqtts", 8883),
    ("ssl", 8883),
];

/// A broker URL taken apart: `scheme://[user[:password]@]host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `amqp`, `mqtt`, ...
    pub scheme: String,
    /// Host name or IP address (without the brackets of an IPv6 literal).
    pub host: String,
    /// The port, or the scheme's default.
    pub port: u16,
    /// The user name, percent-decoded.
    pub user: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// The path after the first `/`, percent-decoded; `None` when there is no `/`.
    pub path: Option<String>,
}

impl BrokerUrl {
    /// Whether the scheme means TLS (`amqps`, `mqtts`, `ssl`).
    pub fn is_tls(&self) -> bool {
        matches!(self.scheme.as_str(), "amqps" | "mqtts" | "ssl")
    }

    /// Parses `url`, whose scheme must be one of `schemes` (each with its default port).
    pub fn parse(url: &str, schemes: &[(&str, u16)]) -> anyhow::Result<BrokerUrl> {
        let (scheme, rest) = url
            .split_once("://")
            .with_context(|| format!("`{url}` is not a URL (scheme://host:port/...)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let Some(&(_, default_port)) = schemes.iter().find(|(s, _)| *s == scheme) else {
            let known: Vec<&str> = schemes.iter().map(|(s, _)| *s).collect();
            anyhow::bail!(
                "unsupported scheme `{scheme}` in {} (expected {})",
                redact_password(url),
                known.join(" or ")
            );
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(percent_decode(p)?)),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
                None => (Some(percent_decode(u)?), None),
            },
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .context("unterminated IPv6 address in the URL")?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => anyhow::bail!("unexpected `{after}` after the IPv6 address"),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().with_context(|| format!("bad port `{p}`"))?,
        };
        if host.is_empty() {
            anyhow::bail!("no host in {}", redact_password(url));
        }
        Ok(BrokerUrl {
            scheme,
            host: host.to_owned(),
            port,
            user,
            password,
            path,
        })
    }
}

/// Decodes `%XX` escapes (UTF-8 after decoding).
fn percent_decode(s: &str) -> anyhow::Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .with_context(|| format!("truncated %-escape in `{s}`"))?;
            out.push(u8::from_str_radix(hex, 16).with_context(|| format!("bad %-escape %{hex}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).with_context(|| format!("`{s}` is not UTF-8 once decoded"))
}

/// `amqp://user:secret@host/` becomes `amqp://user:***@host/`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMQP: &[(&str, u16)] = &[("amqp", 5672)];

    #[test]
    fn full_amqp_url_is_taken_apart_and_decoded() {
        let u = BrokerUrl::parse("amqp://us%40r:p%3Ass@broker.example:5673/%2f", AMQP).unwrap();
        assert_eq!(u.host, "broker.example");
        assert_eq!(u.port, 5673);
        assert_eq!(u.user.as_deref(), Some("us@r"));
        assert_eq!(u.password.as_deref(), Some("p:ss"));
        assert_eq!(u.path.as_deref(), Some("/"));
    }

    #[test]
    fn defaults_and_ipv6() {
        let u = BrokerUrl::parse("amqp://127.0.0.1", AMQP).unwrap();
        assert_eq!((u.port, u.user, u.path), (5672, None, None));
        let u = BrokerUrl::parse("AMQP://[::1]:5680/", AMQP).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5680));
        assert_eq!(u.path.as_deref(), Some(""));
    }

    #[test]
    fn wrong_scheme_and_bad_ports_are_refused() {
        let e = BrokerUrl::parse("amqps://h", AMQP).unwrap_err().to_string();
        assert!(e.contains("amqps"), "{e}");
        assert!(BrokerUrl::parse("amqp://h:99999", AMQP).is_err());
        assert!(BrokerUrl::parse("amqp://:5672", AMQP).is_err());
        assert!(BrokerUrl::parse("h:5672", AMQP).is_err());
        assert!(BrokerUrl::parse("amqp://h/%zz", AMQP).is_err());
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_password("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_password("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact_password("mqtt://u@h"), "mqtt://u@h");
    }
}
