//! The handshake (PROTOCOL.adoc, "Connection"): `PeerProperties`, `SaslHandshake`,
//! `SaslAuthenticate`, then the server's `Tune` and the client's answer, then `Open`.
//!
//! As `rabbit_stream_reader:handle_frame_pre_auth/4`: a failed authentication or a refused
//! vhost is answered with its code and the socket is closed; the frame limit is 8 KiB until
//! the client answers `Tune`, the values the client answers with are the ones used.
//!
//! Connection limits: a stream connection counts in its vhost's and its user's
//! `max-connections` as an AMQP one does, and in the node's `max_connections` (at accept, as
//! every listener). Over a vhost or user limit, `Open` is refused with
//! `VirtualHostAccessFailure` (0x0c), the only refusal RabbitMQ's stream `Open` has. RabbitMQ
//! 3.13 counts stream connections (they are tracked, so AMQP connections are refused over the
//! limit) but does not check the limits for the stream connection itself: "FIXME enforce
//! connection limit" in `handle_frame_pre_auth` for `open` (still there on main). Pigeon
//! enforces them, as a RabbitMQ user setting a limit expects.

use super::connection::{Conn, Next, Step};
use crate::auth::AuthError;
use crate::authz::Authz;
use std::net::{IpAddr, SocketAddr};
use stream_wire::{
    Command, Open, OpenResponse, PeerPropertiesResponse, Properties, ResponseCode,
    SaslAuthenticate, SaslAuthenticateResponse, SaslHandshakeResponse, Str, Tune,
    DEFAULT_FRAME_MAX, DEFAULT_HEARTBEAT,
};

/// The mechanisms offered (RabbitMQ's defaults); EXTERNAL too to a TLS client that presented
/// a verified certificate (`rabbit_auth_mechanism_ssl:should_offer/1`).
const MECHANISMS: &[&str] = &["PLAIN", "AMQPLAIN"];

impl Conn {
    /// Commands before `Open` succeeded (only those `Command::allowed_before_open` lets in).
    pub(super) fn pre_open(&mut self, command: Command) -> Next {
        match command {
            Command::PeerProperties(p) => {
                // The client's properties, shown as `client_properties` in /api/connections.
                let mut table = amqp_wire::FieldTable::new();
                for (k, v) in p.properties.iter() {
                    if let Ok(key) = amqp_wire::ShortString::new(k.as_str()) {
                        table.insert(
                            key,
                            amqp_wire::FieldValue::LongString(bytes::Bytes::copy_from_slice(
                                v.as_bytes(),
                            )),
                        );
                    }
                }
                // Kept encoded, as AMQP's (decoded when the management API lists it).
                let mut raw = bytes::BytesMut::with_capacity(table.encoded_len());
                table.encode(&mut raw);
                let raw = Vec::from(raw).into_boxed_slice();
                self.reg.entry.set_client_properties(raw);
                let mut properties = Properties::new();
                properties.push("product", "Pigeon");
                // The RabbitMQ version Pigeon follows (`crate::RABBITMQ_VERSION`, as AMQP and
                // the API give it); Pigeon's own version is given as `pigeon_version`.
                properties.push("version", crate::RABBITMQ_VERSION);
                properties.push("pigeon_version", env!("CARGO_PKG_VERSION"));
                properties.push("platform", "Rust");
                properties.push(
                    "information",
                    "AMQP 0-9-1, MQTT and RabbitMQ Stream message broker",
                );
                self.send(PeerPropertiesResponse {
                    correlation_id: p.correlation_id,
                    code: ResponseCode::Ok,
                    properties,
                });
                Next::Go
            }
            Command::SaslHandshake(h) => {
                let mut mechanisms: Vec<Str> = MECHANISMS.iter().map(|m| Str::from(*m)).collect();
                if self.has_client_cert() {
                    mechanisms.push("EXTERNAL".into());
                }
                self.send(SaslHandshakeResponse {
                    correlation_id: h.correlation_id,
                    code: ResponseCode::Ok,
                    mechanisms,
                });
                Next::Go
            }
            Command::SaslAuthenticate(a) => self.sasl_authenticate(&a),
            Command::Tune(t) => self.tuned(t.frame_max, t.heartbeat),
            Command::TuneResponse(t) => self.tuned(t.frame_max, t.heartbeat),
            Command::Open(o) => self.open(&o),
            Command::Heartbeat(_) => Next::Go,
            _ => Next::Hangup,
        }
    }

    fn has_client_cert(&self) -> bool {
        self.peer
            .tls
            .as_ref()
            .is_some_and(|t| !t.peer_certs.is_empty())
    }

    fn sasl_authenticate(&mut self, a: &SaslAuthenticate) -> Next {
        if self.step != Step::Start {
            // Authenticating again before Open: nothing RabbitMQ's clients do.
            return Next::Hangup;
        }
        let ip = self.peer.addr.ip();
        let data = a.data.clone().unwrap_or_default();
        let result = match a.mechanism.as_str() {
            m @ ("PLAIN" | "AMQPLAIN") => {
                crate::amqp::auth::authenticate(&self.state.auth, m, &data, ip)
            }
            "EXTERNAL" if self.has_client_cert() => {
                let from = self.state.config.ssl_cert_login_from;
                match crate::cert_login::user_name(self.peer.tls.as_deref(), from) {
                    Some(name) => self.state.auth.authenticate_external(&name, ip),
                    None => Err(AuthError::Credentials(String::new())),
                }
            }
            other => Err(AuthError::Mechanism(other.to_string())),
        };
        let code = match result {
            Ok(user) => {
                tracing::debug!(conn = self.id, user = %user.name, "stream client authenticated");
                let name = crate::registry::intern(&user.name);
                self.reg.entry.update(|d| d.user = name);
                self.user = Some(user);
                self.step = Step::Authenticated;
                self.send(SaslAuthenticateResponse {
                    correlation_id: a.correlation_id,
                    code: ResponseCode::Ok,
                    challenge: None,
                });
                // The server proposes its limits right after a successful authentication.
                self.send(Tune {
                    frame_max: DEFAULT_FRAME_MAX,
                    heartbeat: DEFAULT_HEARTBEAT,
                });
                return Next::Go;
            }
            Err(AuthError::Mechanism(m)) => {
                tracing::info!(conn = self.id, peer = %self.peer.addr, mechanism = %m, "unsupported SASL mechanism");
                ResponseCode::SaslMechanismNotSupported
            }
            Err(AuthError::Malformed(_)) => ResponseCode::SaslError,
            Err(AuthError::LoopbackOnly(_)) => ResponseCode::SaslAuthenticationFailureLoopback,
            // Refusals were logged by the authenticator.
            Err(_) => ResponseCode::AuthenticationFailure,
        };
        self.send(SaslAuthenticateResponse {
            correlation_id: a.correlation_id,
            code,
            challenge: None,
        });
        Next::Hangup
    }

    /// The client's answer to `Tune`: its values are used (the client negotiates, taking the
    /// smaller non-zero one). A frame limit of 0 or above ours is held to ours.
    fn tuned(&mut self, frame_max: u32, heartbeat: u32) -> Next {
        if self.step < Step::Authenticated {
            return Next::Hangup;
        }
        self.frame_max = match frame_max {
            0 => DEFAULT_FRAME_MAX,
            n => n.min(DEFAULT_FRAME_MAX),
        };
        self.heartbeat = heartbeat;
        if self.step == Step::Authenticated {
            self.step = Step::Tuned;
        }
        Next::Go
    }

    fn open(&mut self, o: &Open) -> Next {
        let Some(user) = self.user.as_ref().map(|u| u.name.clone()) else {
            return Next::Hangup;
        };
        let name = o.virtual_host.as_str();
        let broker = &self.state.broker;
        // As rabbit_reader's connection.open: the limits first (for a vhost that exists),
        // then access to the vhost.
        if broker.vhost(name).is_some() {
            match self
                .state
                .limits
                .open_connection(broker.access(), name, &user)
            {
                Ok(slots) => self.slots = Some(slots),
                Err(e) => {
                    tracing::warn!(conn = self.id, peer = %self.peer.addr, "stream connection refused: {e}");
                    self.send(OpenResponse {
                        correlation_id: o.correlation_id,
                        code: ResponseCode::VirtualHostAccessFailure,
                        properties: Properties::new(),
                    });
                    return Next::Hangup;
                }
            }
        }
        let vhost = broker
            .vhost(name)
            .filter(|_| crate::auth::may_open_vhost(broker, &user, name));
        let Some(vhost) = vhost else {
            tracing::warn!(conn = self.id, peer = %self.peer.addr, "{}", crate::auth::vhost_refused(&user, name));
            self.send(OpenResponse {
                correlation_id: o.correlation_id,
                code: ResponseCode::VirtualHostAccessFailure,
                properties: Properties::new(),
            });
            return Next::Hangup;
        };
        self.authz = Some(Authz::compile_shared(
            &self.state.grants,
            broker.access(),
            &user,
            vhost.name(),
            None,
        ));
        self.vhost = Some(vhost);
        self.step = Step::Open;
        let (heartbeat, frame_max) = (self.heartbeat, self.frame_max);
        self.reg.entry.update(|d| {
            d.vhost = crate::registry::intern(name);
            d.timeout = u16::try_from(heartbeat).unwrap_or(u16::MAX);
            d.frame_max = frame_max;
            d.state = crate::registry::ConnState::Running;
        });
        let (host, port) = self.advertised();
        let mut properties = Properties::new();
        properties.push("advertised_host", host);
        properties.push("advertised_port", port.to_string());
        self.send(OpenResponse {
            correlation_id: o.correlation_id,
            code: ResponseCode::Ok,
            properties,
        });
        tracing::debug!(conn = self.id, user = %user, vhost = %name, "stream connection open");
        Next::Go
    }

    /// The host and port clients are told to connect to (`Open`'s connection properties and
    /// `Metadata`): `stream_advertised_host` / `stream_advertised_port`, else the address this
    /// client reached us on, with `localhost` for a loopback one (RabbitMQ advertises the
    /// node's host name, which a client on another machine may not resolve).
    pub(super) fn advertised(&self) -> (String, u16) {
        let config = &self.state.config;
        let local = self.peer.local;
        let host = config
            .stream_advertised_host
            .clone()
            .unwrap_or_else(|| local_host(local));
        let port = config
            .stream_advertised_port
            .or(local.map(|l| l.port()))
            .unwrap_or(stream_wire::DEFAULT_PORT);
        (host, port)
    }
}

fn local_host(local: Option<SocketAddr>) -> String {
    match local.map(|l| l.ip().to_canonical()) {
        None => "localhost".into(),
        Some(ip) if ip.is_loopback() => "localhost".into(),
        Some(IpAddr::V6(ip)) => ip.to_string(),
        Some(ip) => ip.to_string(),
    }
}
