//! Who an MQTT client is and which vhost it gets: the CONNECT's credentials checked by the
//! shared authenticator (`auth/`), the vhost picked by a `vhost:user` user name (as RabbitMQ's
//! MQTT plugin), and the end of a connection whose vhost or user is deleted.

use super::connection::{Conn, End};
use crate::auth::AuthenticatedUser;
use crate::ServerState;
use mqtt_wire::{Connect, ReasonCode};
use pigeon_broker::VHost;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why CONNECT is refused.
pub(super) enum Refused {
    /// Unknown user, wrong password, throttled source, loopback-only user: 5.0 0x86, 3.1.1
    /// 0x04 "bad user name or password" (already logged by `auth`).
    Credentials,
    /// Anything else, with its reason code and the log line's reason.
    Other(ReasonCode, String),
}

/// Authenticates the client and finds its vhost.
pub(super) fn login(
    c: &Connect,
    peer: SocketAddr,
    tls: Option<&crate::transport::TlsInfo>,
    server: &ServerState,
) -> Result<(AuthenticatedUser, Arc<VHost>), Refused> {
    // User name `vhost:user` picks a vhost (as RabbitMQ's MQTT plugin); no user name is the
    // anonymous guest, from loopback only.
    let (vhost_name, user) = match c.username.as_deref() {
        Some(u) => match u.split_once(':') {
            Some((v, u)) => (v, Some(u)),
            None => ("/", Some(u)),
        },
        None => ("/", None),
    };
    // mqtt.ssl_cert_login: no user name and no password, but a verified certificate
    // (`cert_login.rs`); credentials, when sent, take priority (as RabbitMQ's `creds/3`).
    let config = &server.config;
    let cert_user = (config.mqtt_ssl_cert_login && c.username.is_none() && c.password.is_none())
        .then(|| crate::cert_login::user_name(tls, config.ssl_cert_login_from))
        .flatten();
    let authenticated = match user {
        None if cert_user.is_some() => {
            let name = cert_user.as_deref().unwrap_or_default();
            server.auth.authenticate_external(name, peer.ip())
        }
        None if !(server.config.mqtt_allow_anonymous && peer.ip().to_canonical().is_loopback()) => {
            return Err(Refused::Other(
                ReasonCode::NotAuthorized,
                "anonymous login not allowed".into(),
            ));
        }
        // The anonymous client is `guest`, which must exist (it has no password to check).
        None => server.auth.authenticate_external("guest", peer.ip()),
        Some(u) => {
            let password = c.password.as_deref().unwrap_or_default();
            server.auth.authenticate(u, password, peer.ip())
        }
    }
    .map_err(|_| Refused::Credentials)?;
    // As RabbitMQ's MQTT plugin: the vhost must exist and the user have permissions there
    // (5.0 0x87 / 3.1.1 0x05 "not authorized").
    let vhost = server
        .broker
        .vhost(vhost_name)
        .filter(|_| crate::auth::may_open_vhost(&server.broker, &authenticated.name, vhost_name))
        .ok_or_else(|| {
            Refused::Other(
                ReasonCode::NotAuthorized,
                crate::auth::vhost_refused(&authenticated.name, vhost_name),
            )
        })?;
    Ok((authenticated, vhost))
}

impl Conn {
    /// Ends the connection if its vhost or user was deleted (the deleting side woke its task):
    /// 5.0 clients get DISCONNECT 0x98 (Administrative action). A deleted vhost takes the
    /// will along (there is nowhere to publish it). Costs two atomic loads per turn unless
    /// access control changed.
    pub(super) fn deleted_under_us(&mut self) -> Option<End> {
        // An operator closed the connection (`close_connection`); like RabbitMQ's
        // administrative close, the will is published.
        if let Some(reason) = self.reg.entry.take_close_request() {
            tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, %reason, "closed by an operator");
            self.disconnect(ReasonCode::AdministrativeAction);
            return Some(End::Abnormal);
        }
        if self.session.vhost.is_deleted() {
            tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, vhost = self.session.vhost.name(), "vhost deleted, closing");
            self.disconnect(ReasonCode::AdministrativeAction);
            return Some(End::Disconnect { with_will: false });
        }
        let access = self.server.broker.access();
        // Its low 32 bits, as kept (`Conn::access_generation`).
        let generation = access.generation() as u32;
        if generation == self.access_generation {
            return None;
        }
        self.access_generation = generation;
        // Who logged in: the registry entry keeps it (for the management API).
        let user = self.reg.entry.details.lock().user.clone();
        if access.user(&user).is_some() {
            return None;
        }
        tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, %user, "user deleted, closing");
        self.disconnect(ReasonCode::AdministrativeAction);
        Some(End::Abnormal)
    }
}
