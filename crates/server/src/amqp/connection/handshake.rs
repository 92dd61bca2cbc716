//! The connection's handshake and channel-0 methods: `connection.start` and its answers,
//! tune, open, `update-secret`, close and close-ok (the frame loop is in `connection.rs`).

use crate::amqp::auth::{self, AuthError, MECHANISMS, MECHANISMS_WITH_EXTERNAL};
use crate::amqp::channel::ConnCtx;
use crate::amqp::error::{AmqpError, AmqpResult};
use crate::authz::Authz;
use crate::registry::ConnState;
use amqp_wire::{
    ConnectionCloseOk, ConnectionOpenOk, ConnectionStart, ConnectionTune, ConnectionUpdateSecretOk,
    FieldTable, FieldValue, Method, ReplyCode, ShortString, FRAME_MIN_SIZE,
};
use bytes::Bytes;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::{Connection, Phase};

impl Connection {
    pub(super) fn send_start(&self) {
        let mut caps = FieldTable::new();
        for cap in [
            "publisher_confirms",
            "exchange_exchange_bindings",
            "basic.nack",
            "consumer_cancel_notify",
            "connection.blocked",
            "authentication_failure_close",
            "per_consumer_qos",
        ] {
            caps.insert(ShortString::from_static(cap), FieldValue::Bool(true));
        }
        let text = |s: &'static str| FieldValue::LongString(Bytes::from_static(s.as_bytes()));
        let mut props = FieldTable::new();
        props.insert(
            ShortString::from_static("capabilities"),
            FieldValue::Table(caps),
        );
        props.insert(ShortString::from_static("product"), text("Pigeon"));
        // The RabbitMQ version Pigeon follows, as the stream protocol and the API give it
        // (`crate::RABBITMQ_VERSION`); Pigeon's own beside it.
        props.insert(
            ShortString::from_static("version"),
            text(crate::RABBITMQ_VERSION),
        );
        props.insert(
            ShortString::from_static("pigeon_version"),
            text(env!("CARGO_PKG_VERSION")),
        );
        props.insert(ShortString::from_static("platform"), text("Rust"));
        props.insert(
            ShortString::from_static("information"),
            text("AMQP 0-9-1 and MQTT message broker"),
        );
        self.send(
            0,
            &Method::ConnectionStart(ConnectionStart {
                version_major: 0,
                version_minor: 9,
                server_properties: props,
                // EXTERNAL only with a verified client certificate (its `should_offer`).
                mechanisms: Bytes::from_static(
                    if self
                        .reg
                        .entry
                        .tls()
                        .is_some_and(|t| !t.peer_certs.is_empty())
                    {
                        MECHANISMS_WITH_EXTERNAL
                    } else {
                        MECHANISMS
                    },
                ),
                locales: Bytes::from_static(b"en_US"),
            }),
        );
    }

    pub(super) fn handle_connection_method(&mut self, method: Method) -> AmqpResult {
        match (self.phase, method) {
            (_, Method::ConnectionClose(m)) => {
                tracing::debug!(peer = %self.peer(), code = m.reply_code, text = %m.reply_text, "client closed connection");
                self.release();
                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                // Read on until the client hangs up (see `Phase::Closed`). RabbitMQ's bound is
                // the negotiated heartbeat when under 30 s, else 30 s (`close_connection`);
                // ours is the handshake timeout.
                self.out
                    .set_deadline(Some(self.server.config.handshake_timeout));
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::AwaitStartOk, Method::ConnectionStartOk(m)) => self.start_ok(m),
            (Phase::AwaitTuneOk, Method::ConnectionTuneOk(m)) => {
                let server = &self.server.config;
                if m.frame_max != 0 && m.frame_max < FRAME_MIN_SIZE {
                    return Err(AmqpError::new(
                        ReplyCode::NotAllowed,
                        format!("frame_max={} < {FRAME_MIN_SIZE} min size", m.frame_max),
                    ));
                }
                if m.frame_max > server.frame_max || (m.frame_max == 0 && server.frame_max != 0) {
                    if m.frame_max != 0 {
                        return Err(AmqpError::new(
                            ReplyCode::NotAllowed,
                            format!("frame_max={} > {} max size", m.frame_max, server.frame_max),
                        ));
                    }
                } else {
                    self.frame_max = m.frame_max;
                }
                if m.channel_max > server.channel_max {
                    return Err(AmqpError::new(
                        ReplyCode::NotAllowed,
                        format!("channel_max={} > {} max", m.channel_max, server.channel_max),
                    ));
                }
                if m.channel_max != 0 {
                    self.channel_max = m.channel_max;
                }
                self.heartbeat = m.heartbeat;
                let (frame_max, channel_max) = (self.frame_max, self.channel_max);
                self.reg.entry.update(|d| {
                    d.timeout = m.heartbeat;
                    d.frame_max = frame_max;
                    d.channel_max = channel_max;
                });
                self.phase = Phase::AwaitOpen;
                Ok(())
            }
            (Phase::AwaitOpen, Method::ConnectionOpen(m)) => {
                // rabbit_access_control:check_vhost_access: the vhost must exist and the user
                // have permissions there; one answer for both (530).
                let name = m.virtual_host.as_str();
                let user: Arc<str> = self.user.clone().unwrap_or_else(|| Arc::from(""));
                let access = self.server.broker.access();
                // rabbit_reader connection.open: the vhost's and the user's connection
                // limits first, then access to the vhost; each refusal is 530 NOT_ALLOWED.
                let slots = match self.server.broker.vhost(name) {
                    Some(_) => Some(
                        self.server
                            .limits
                            .open_connection(access, name, &user)
                            .map_err(|e| AmqpError::limit(ReplyCode::NotAllowed, e))?,
                    ),
                    None => None,
                };
                let vhost = self
                    .server
                    .broker
                    .vhost(name)
                    .filter(|_| crate::auth::may_open_vhost(&self.server.broker, &user, name));
                let Some(vhost) = vhost else {
                    return Err(AmqpError::new(
                        ReplyCode::NotAllowed,
                        crate::auth::vhost_refused(&user, name),
                    ));
                };
                let authz =
                    Authz::compile_shared(&self.server.grants, access, &user, vhost.name(), None);
                self._slots = slots;
                self.ctx = Some(ConnCtx {
                    broker: Arc::clone(&self.server.broker),
                    vhost,
                    conn_id: self.reg.entry.id,
                    out: Arc::clone(&self.out),
                    frame_max: self.frame_max,
                    max_message_size: self.server.config.max_message_size,
                    cancel_notify: self.cancel_notify,
                    store: self.server.store.clone(),
                    wake_epoch: AtomicU64::new(0),
                    authz,
                    cluster: self.server.cluster.clone(),
                    declares: Arc::clone(&self.server.declares),
                    user,
                    counters: Arc::clone(self.reg.entry.counters()),
                });
                self.send(0, &Method::ConnectionOpenOk(ConnectionOpenOk {}));
                self.reg.entry.update(|d| {
                    d.vhost = crate::registry::intern(name);
                    d.state = ConnState::Running;
                });
                self.phase = Phase::Open;
                // From now on the deadline in `out` is the heartbeats' (none without them).
                self.out.set_deadline(self.heartbeat_period());
                Ok(())
            }
            (Phase::Open, Method::ConnectionUpdateSecret(_)) => {
                self.send(
                    0,
                    &Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk {}),
                );
                Ok(())
            }
            (Phase::Open, Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_)) => Ok(()),
            (_, method) => Err(AmqpError::new(
                ReplyCode::CommandInvalid,
                format!("unexpected {} on channel 0", method.name()),
            )
            .on(&method)),
        }
    }

    fn start_ok(&mut self, m: amqp_wire::ConnectionStartOk) -> AmqpResult {
        if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
            let flag = |k: &str| matches!(caps.get(k), Some(FieldValue::Bool(true)));
            self.cancel_notify = flag("consumer_cancel_notify");
            self.blocked_notify = flag("connection.blocked");
            self.auth_failure_close = flag("authentication_failure_close");
        }
        let auth = &self.server.auth;
        let result = if m.mechanism.as_str() == "EXTERNAL" {
            // SASL EXTERNAL (rabbitmq_auth_mechanism_ssl): the user named by the verified
            // client certificate; offered only when there is one.
            let from = self.server.config.ssl_cert_login_from;
            match crate::cert_login::user_name(self.reg.entry.tls().map(|t| &**t), from) {
                Some(name) => auth.authenticate_external(&name, self.peer().ip()),
                None => Err(AuthError::Mechanism("EXTERNAL".into())),
            }
        } else {
            auth::authenticate(auth, m.mechanism.as_str(), &m.response, self.peer().ip())
        };
        match result {
            Ok(user) => {
                tracing::debug!(peer = %self.peer(), user = %user.name, "authenticated");
                self.reg
                    .entry
                    .update(|d| d.user = crate::registry::intern(&user.name));
                self.reg
                    .entry
                    .set_client_properties(encoded(&m.client_properties));
                self.user = Some(Arc::from(user.name.as_str()));
                let c = &self.server.config;
                self.send(
                    0,
                    &Method::ConnectionTune(ConnectionTune {
                        channel_max: c.channel_max,
                        frame_max: c.frame_max,
                        heartbeat: c.heartbeat,
                    }),
                );
                self.phase = Phase::AwaitTuneOk;
                Ok(())
            }
            Err(e) => {
                // Credential failures were logged by the authenticator; parse errors here.
                if matches!(e, AuthError::Mechanism(_) | AuthError::Malformed(_)) {
                    tracing::warn!(peer = %self.peer(), error = %e, "login refused");
                }
                let mut err = AmqpError::new(
                    ReplyCode::AccessRefused,
                    format!(
                        "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                        m.mechanism
                    ),
                );
                err.force_connection = true;
                if !self.auth_failure_close {
                    // Clients without the capability expect the socket to just close.
                    self.phase = Phase::Done;
                    return Ok(());
                }
                Err(err)
            }
        }
    }
}

/// A table as the client sent it, in an allocation of its exact size (kept for the management
/// API, which decodes it when it lists the connection).
fn encoded(table: &FieldTable) -> Box<[u8]> {
    let mut buf = bytes::BytesMut::with_capacity(table.encoded_len());
    table.encode(&mut buf);
    Vec::from(buf).into_boxed_slice()
}
