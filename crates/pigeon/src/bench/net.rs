//! The bench's own clients' plumbing: a TCP connection with a read buffer and a write buffer,
//! driven by the one task that uses it, and the URLs that name brokers.
//!
//! There is no background reader or writer task: a publisher encodes into [`Wire::out`] and
//! writes when enough has gathered or before it waits; a consumer decodes from [`Wire::rbuf`]
//! and reads when nothing complete is left, writing its buffered acks on the way. Whichever way
//! the bytes flow, a wait for one direction keeps the other moving, so two peers that both write
//! a lot can never block each other.

use anyhow::Context;
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

/// One TCP connection and its two buffers.
#[derive(Debug)]
pub struct Wire {
    stream: TcpStream,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded and not yet written.
    pub out: BytesMut,
    /// Room to make in `rbuf` before each read.
    read_chunk: usize,
}

/// How much a busy connection reads at once.
pub const BULK: usize = 64 * 1024;

impl Wire {
    /// Connects to `addr` (a `host:port` the resolver understands), from `source` when given.
    pub async fn connect(
        host: &str,
        port: u16,
        source: Option<std::net::IpAddr>,
        read_chunk: usize,
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
        Ok(Wire {
            stream,
            rbuf: BytesMut::with_capacity(read_chunk),
            out: BytesMut::new(),
            read_chunk,
        })
    }

    /// Writes what the socket takes now, without waiting.
    fn try_send(&mut self) -> io::Result<()> {
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

    /// Waits until more bytes are in `rbuf`, writing `out` meanwhile.
    pub async fn receive(&mut self) -> io::Result<()> {
        loop {
            self.try_send()?;
            if self.try_receive()? {
                return Ok(());
            }
            let interest = if self.out.is_empty() {
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
            if self.out.is_empty() {
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
