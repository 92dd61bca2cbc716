//! Listeners: the addresses each protocol binds, and the accept loops.
//!
//! A listener ([`Kind`]) binds one or more addresses ([`Listen`]). The defaults bind `[::]`
//! and `0.0.0.0` on the protocol's port, as RabbitMQ does (`listeners.tcp.default = 5672`
//! listens on both), so that a client whose `localhost` is `::1` connects: `[::]` is bound
//! IPv6-only when `0.0.0.0` of the same port is in the same list, and dual-stack
//! (`IPV6_V6ONLY` off) when alone. A host without IPv6 logs one warning and keeps the IPv4
//! address. The TLS handshake runs on the connection's own task, bounded by the handshake
//! timeout, never in the accept loop.

use crate::tls::TlsContext;
use crate::transport::{PeerInfo, TlsInfo, Transport};
use crate::{amqp, mqtt, stream, ServerError, ServerState};
use futures_util::FutureExt;
use serde::{Deserialize, Deserializer};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The addresses one listener binds. In the configuration: one address (`"0.0.0.0:5672"`), a
/// list (`["[::1]:5672", "127.0.0.1:5672"]`, `[]` turns the listener off), or a port alone
/// (`5672`: `[::]` and `0.0.0.0`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listen(pub Vec<SocketAddr>);

impl Listen {
    /// No address: the listener is off.
    pub fn none() -> Listen {
        Listen(Vec::new())
    }

    /// One address.
    pub fn one(addr: SocketAddr) -> Listen {
        Listen(vec![addr])
    }

    /// Every interface, IPv6 and IPv4: `[::]:port` and `0.0.0.0:port`.
    pub fn all_interfaces(port: u16) -> Listen {
        Listen(vec![
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
        ])
    }

    /// Whether the listener is off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.0
    }
}

impl From<SocketAddr> for Listen {
    fn from(addr: SocketAddr) -> Listen {
        Listen::one(addr)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Port(u16),
            One(String),
            Many(Vec<String>),
        }
        let parse = |s: &str| {
            s.parse::<SocketAddr>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid listen address {s:?}: expected IP:port such as \"0.0.0.0:5672\" or \"[::]:5672\""
                ))
            })
        };
        match Raw::deserialize(d)? {
            Raw::Port(port) => Ok(Listen::all_interfaces(port)),
            Raw::One(s) => Ok(Listen::one(parse(&s)?)),
            Raw::Many(list) => list
                .iter()
                .map(|s| parse(s))
                .collect::<Result<_, _>>()
                .map(Listen),
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// AMQP 0-9-1 over TCP.
    Amqp,
    /// AMQP 0-9-1 over TLS.
    Amqps,
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket.
    MqttWs,
    /// MQTT over WebSocket over TLS.
    MqttWss,
    /// The RabbitMQ Stream protocol over TCP.
    Stream,
    /// The RabbitMQ Stream protocol over TLS.
    StreamTls,
    /// The management HTTP API (plain HTTP; served by `http/`, not by [`accept_loop`]).
    Http,
    /// The management HTTP API over TLS (served by `http/` through `tls/https.rs`).
    Https,
    /// Prometheus metrics over HTTP (not in [`Kind::ALL`]: served by `metrics/`).
    Prometheus,
    /// Prometheus metrics over TLS (served by `metrics/` through `tls/https.rs`).
    PrometheusTls,
}

impl Kind {
    /// Every kind, in the order the listeners are started.
    pub const ALL: [Kind; 8] = [
        Kind::Amqp,
        Kind::Amqps,
        Kind::Mqtt,
        Kind::Mqtts,
        Kind::MqttWs,
        Kind::MqttWss,
        Kind::Stream,
        Kind::StreamTls,
    ];

    /// The name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Amqp => "AMQP 0-9-1",
            Kind::Amqps => "AMQP 0-9-1 over TLS",
            Kind::Mqtt => "MQTT",
            Kind::Mqtts => "MQTT over TLS",
            Kind::MqttWs => "MQTT over WebSocket",
            Kind::MqttWss => "MQTT over secure WebSocket",
            Kind::Stream => "RabbitMQ Stream",
            Kind::StreamTls => "RabbitMQ Stream over TLS",
            Kind::Http => "management HTTP API",
            Kind::Https => "management HTTP API over TLS",
            Kind::Prometheus => "Prometheus",
            Kind::PrometheusTls => "Prometheus over TLS",
        }
    }

    /// Whether the listener starts with a TLS handshake.
    pub fn tls(self) -> bool {
        matches!(
            self,
            Kind::Amqps
                | Kind::Mqtts
                | Kind::MqttWss
                | Kind::StreamTls
                | Kind::Https
                | Kind::PrometheusTls
        )
    }

    /// Whether it serves MQTT.
    pub fn mqtt(self) -> bool {
        matches!(
            self,
            Kind::Mqtt | Kind::Mqtts | Kind::MqttWs | Kind::MqttWss
        )
    }

    /// The configured addresses.
    pub fn addrs(self, config: &crate::ServerConfig) -> Listen {
        match self {
            Kind::Amqp => config.amqp_listen.clone(),
            Kind::Amqps => config.amqps_addrs(),
            Kind::Mqtt => config.mqtt_listen.clone(),
            Kind::Mqtts => config.mqtts_addrs(),
            Kind::MqttWs => config.mqtt_ws_listen.clone(),
            Kind::MqttWss => config.mqtt_wss_addrs(),
            Kind::Stream => config.stream_listen.clone(),
            Kind::StreamTls => config.stream_tls_addrs(),
            Kind::Http => config.management_listen.clone(),
            Kind::Prometheus => config.prometheus_listen.clone(),
            Kind::Https => config.management_tls_addrs(),
            Kind::PrometheusTls => config.prometheus_tls_addrs(),
        }
    }
}

/// One bound socket of a listener.
pub(crate) struct Bound {
    /// What it serves.
    pub kind: Kind,
    /// The socket.
    pub listener: TcpListener,
    /// Its address (the real port when the configuration asked for 0).
    pub addr: SocketAddr,
}

/// Binds every address of `listen`. A port 0 after the first address takes the port the
/// first one got, so `["[::]:0", "0.0.0.0:0"]` is one port on both families. An IPv6 address
/// that cannot be bound because the host has no IPv6 is skipped with a warning when another
/// address of the list binds.
pub(crate) fn bind(kind: Kind, listen: &Listen) -> Result<Vec<Bound>, ServerError> {
    let addrs = listen.addrs();
    let mut bound: Vec<Bound> = Vec::new();
    let mut skipped = None;
    for (i, &addr) in addrs.iter().enumerate() {
        let mut addr = addr;
        if addr.port() == 0 {
            if let Some(first) = bound.first() {
                addr.set_port(first.addr.port());
            }
        }
        // `[::]` beside `0.0.0.0` of the same port: IPv6 only (each family has its socket);
        // alone: dual-stack, whatever the system's default (Linux net.ipv6.bindv6only).
        let v6only = addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            && addrs.iter().any(|a| {
                a.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) && a.port() == addrs[i].port()
            });
        match bind_one(addr, v6only) {
            Ok(listener) => {
                let bind_err = |source| ServerError::Bind { addr, source };
                let listener = TcpListener::from_std(listener).map_err(bind_err)?;
                let local = listener.local_addr().map_err(bind_err)?;
                bound.push(Bound {
                    kind,
                    listener,
                    addr: local,
                });
            }
            Err(e) if addr.is_ipv6() && no_ipv6(&e) && addrs.len() > 1 => {
                tracing::warn!(%addr, error = %e, listener = kind.name(), "IPv6 is not available, listening on IPv4 only");
                skipped = Some(ServerError::Bind { addr, source: e });
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
    match skipped {
        Some(e) if bound.is_empty() => Err(e),
        _ => Ok(bound),
    }
}

/// The errors of a host without IPv6 (no IPv6 stack, or no IPv6 address at all).
fn no_ipv6(e: &io::Error) -> bool {
    // EAFNOSUPPORT (97 on Linux): the kernel has no IPv6.
    e.kind() == io::ErrorKind::AddrNotAvailable
        || e.kind() == io::ErrorKind::Unsupported
        || e.raw_os_error() == Some(97)
}

fn bind_one(addr: SocketAddr, v6only: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(v6only)?;
    }
    // As tokio's `TcpListener::bind`: a restarted broker rebinds despite TIME_WAIT sockets.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Accepts connections on one bound socket until shutdown.
pub(crate) async fn accept_loop(
    bound: Bound,
    state: Arc<ServerState>,
    tls: Option<Arc<TlsContext>>,
) {
    let Bound {
        kind,
        mut listener,
        addr,
    } = bound;
    let mut shutdown = state.shutdown.clone();
    // Maintenance mode (`cluster/maintenance.rs`) closes the socket while the node is drained.
    let mut suspended = state.maintenance.watch();
    state.maintenance.accept_loop(true);
    state.maintenance.listening(true);
    // Connection tasks are detached rather than kept in a `JoinSet` (~56 bytes of list node
    // per idle connection, docs/performance.md "Idle connections"): `Open` counts them in
    // `ServerState::connections`, which the shutdown below waits on.
    loop {
        tokio::select! {
            // Mapped to `()`: the watch's guard must not outlive the branch.
            () = suspended.wait_for(|s| *s).map(|_| ()) => {
                match suspend(kind, listener, addr, &state, &mut suspended, &mut shutdown).await {
                    Some(reopened) => {
                        listener = reopened;
                        continue;
                    }
                    None => {
                        state.maintenance.accept_loop(false);
                        return wait_for_connections(&state).await;
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // An IPv4 client of a dual-stack socket is `::ffff:a.b.c.d`: name it as
                    // IPv4, in logs and for the loopback checks.
                    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
                    let over_rate = !state.limits.accept(peer.ip());
                    if over_rate && !kind.mqtt() {
                        continue; // closed: over the accept rate of its address (limits.rs)
                    }
                    let open = state.connections.fetch_add(1, Ordering::Relaxed);
                    if open >= state.config.max_connections {
                        state.connections.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(%peer, limit = state.config.max_connections, "connection limit reached, refusing");
                        continue;
                    }
                    // Each kind gets a task of its own size: a task cell is sized for its
                    // future, and an idle plain-TCP connection must not carry the TLS
                    // handshake's or the other protocol's (docs/performance.md, "Idle
                    // connections"). `Open` gives the connection count back when the task ends.
                    let open = Open(Arc::clone(&state));
                    match kind {
                        Kind::Mqtt if !over_rate => {
                            let (transport, info) = plain(stream, peer);
                            let serving = mqtt::serve(transport, info, Arc::clone(&state));
                            // `map`, not `async move { serving.await; drop(open) }`: an async
                            // block keeps the future it captured and the one it awaits apart,
                            // twice its size in every idle connection's task cell (896 bytes
                            // instead of 512; rust-lang/rust#62958).
                            let serving = futures_util::FutureExt::map(serving, move |()| drop(open));
                            tokio::spawn(serving);
                        }
                        Kind::Amqp => {
                            let (transport, info) = plain(stream, peer);
                            // `map`, not an async block: a future captured by an async
                            // block and awaited there takes its room in the task twice (the
                            // capture and the awaited copy), 1,408 bytes instead of 768.
                            let serving = amqp::serve(transport, info, Arc::clone(&state))
                                .map(move |()| drop(open));
                            tokio::spawn(serving);
                        }
                        _ => {
                            let serving =
                                Box::pin(serve(kind, stream, peer, Arc::clone(&state), tls.clone(), over_rate));
                            tokio::spawn(async move {
                                serving.await;
                                drop(open);
                            });
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    state.maintenance.listening(false);
    state.maintenance.accept_loop(false);
    wait_for_connections(&state).await;
}

/// While the node is drained: the socket closed (new clients are refused by the kernel, as a
/// suspended ranch listener's are), then bound again on the same address once revived
/// (retried every second if the address is taken meanwhile). `None` on shutdown.
async fn suspend(
    kind: Kind,
    listener: TcpListener,
    addr: SocketAddr,
    state: &ServerState,
    suspended: &mut tokio::sync::watch::Receiver<bool>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<TcpListener> {
    let v6only = socket2::SockRef::from(&listener).only_v6().unwrap_or(false);
    drop(listener);
    state.maintenance.listening(false);
    tracing::info!(%addr, listener = kind.name(), "listener suspended (maintenance mode)");
    loop {
        tokio::select! {
            _ = suspended.wait_for(|s| !*s) => {}
            _ = shutdown.changed() => return None,
        }
        let bound = bind_one(addr, v6only).and_then(TcpListener::from_std);
        match bound {
            Ok(listener) => {
                state.maintenance.listening(true);
                tracing::info!(%addr, listener = kind.name(), "listener resumed");
                return Some(listener);
            }
            Err(e) => {
                tracing::warn!(%addr, listener = kind.name(), error = %e, "cannot reopen the listener, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return None,
                }
            }
        }
    }
}

/// At shutdown: waits (a bounded while) for this node's connections to end.
async fn wait_for_connections(state: &ServerState) {
    // Connections see the same shutdown signal and close themselves; give them a moment.
    // Polled (every listener waits for all the connections, at shutdown only): a wake-up per
    // closed connection would cost every connection's close a notification for nothing.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while state.connections.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One accepted connection's place in [`ServerState::connections`], given back when dropped.
pub(crate) struct Open(Arc<ServerState>);

impl Open {
    /// Counts a connection that outlives the task that counted it (a hibernated MQTT
    /// connection, `mqtt/hibernate.rs`).
    pub(crate) fn new(state: &Arc<ServerState>) -> Open {
        state.connections.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(state))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The local address of an accepted socket, named as IPv4 for an IPv4 client of a dual-stack
/// socket.
fn local_addr(stream: &TcpStream) -> Option<SocketAddr> {
    stream
        .local_addr()
        .ok()
        .map(|l| SocketAddr::new(l.ip().to_canonical(), l.port()))
}

/// A plain-TCP connection's transport and peer.
fn plain(stream: TcpStream, peer: SocketAddr) -> (Transport, PeerInfo) {
    let mut info = PeerInfo::plain(peer);
    info.local = local_addr(&stream);
    (Transport::Tcp(stream), info)
}

/// One connection of the other kinds (TLS, WebSocket, refused over rate), on its own task:
/// the TLS handshake if any, the WebSocket upgrade if any, then the protocol.
async fn serve(
    kind: Kind,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    tls: Option<Arc<TlsContext>>,
    over_rate: bool,
) {
    let state = &state;
    let local = local_addr(&stream);
    let (transport, mut info) = match (kind.tls(), tls) {
        (false, _) => (Transport::Tcp(stream), PeerInfo::plain(peer)),
        (true, Some(tls)) => match handshake(stream, peer, kind, state, &tls).await {
            Some(secured) => secured,
            None => return,
        },
        (true, None) => {
            tracing::error!(%peer, listener = kind.name(), "TLS listener without TLS configuration");
            return;
        }
    };
    info.local = local;
    // Boxed futures: the listeners spawn one future type for every protocol, and an idle
    // MQTT connection's task must not carry the size of an AMQP connection's (see
    // `amqp::serve`), nor of the handshakes above.
    match kind {
        Kind::Amqp | Kind::Amqps => amqp::serve(transport, info, Arc::clone(state)).await,
        // An MQTT client over the accept rate of its address is told so in CONNACK (5.0:
        // 0x9F Connection rate exceeded; 3.1.x: 0x03 Server unavailable) rather than by a
        // bare close, so that it backs off instead of reconnecting at once.
        Kind::Mqtt | Kind::Mqtts if over_rate => {
            Box::pin(mqtt::refuse_over_rate(transport, info, Arc::clone(state))).await
        }
        Kind::Mqtt | Kind::Mqtts => mqtt::serve(transport, info, Arc::clone(state)).await,
        Kind::Stream | Kind::StreamTls => {
            Box::pin(stream::serve(transport, info, Arc::clone(state))).await
        }
        // Never reached: the HTTP listeners are served by `http::serve` and `metrics/`.
        Kind::Prometheus | Kind::PrometheusTls | Kind::Http | Kind::Https => {}
        Kind::MqttWs | Kind::MqttWss => {
            if let Some(ws) = Box::pin(crate::ws::accept(transport, &info, state)).await {
                if over_rate {
                    Box::pin(mqtt::refuse_over_rate(ws, info, Arc::clone(state))).await;
                } else {
                    mqtt::serve(ws, info, Arc::clone(state)).await;
                }
            }
        }
    }
}

/// The TLS handshake, bounded by the handshake timeout. A failure (a plain-text client,
/// garbage, an unknown or missing client certificate, a client that never finishes) is one
/// log line and a closed socket.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    kind: Kind,
    state: &ServerState,
    tls: &TlsContext,
) -> Option<(Transport, PeerInfo)> {
    let accept = tls.acceptor().accept(stream);
    match tokio::time::timeout(state.config.handshake_timeout, accept).await {
        Ok(Ok(stream)) => {
            let info = TlsInfo::of(&stream);
            tracing::debug!(%peer, listener = kind.name(), protocol = ?info.protocol, cipher = ?info.cipher, client_cert = !info.peer_certs.is_empty(), "TLS handshake done");
            let peer = PeerInfo {
                addr: peer,
                tls: Some(Arc::new(info)),
                local: None,
            };
            Some((Transport::Tls(Box::new(stream)), peer))
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = kind.name(), error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%peer, listener = kind.name(), timeout_s = state.config.handshake_timeout.as_secs(), "TLS handshake timed out");
            None
        }
    }
}
