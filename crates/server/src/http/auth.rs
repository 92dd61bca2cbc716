//! Who is calling, and what their tags let them do, as RabbitMQ's management plugin decides
//! it (`rabbit_mgmt_util:is_authorized*`):
//! - no tag among `management`, `policymaker`, `monitoring`, `administrator`: 401 "Not
//!   management user", whatever the password;
//! - `management`: the vhosts it has permissions in, and the objects in them;
//! - `policymaker`: plus policies and parameters of those vhosts;
//! - `monitoring`: everything, read-only (plus what `management` may do);
//! - `administrator`: everything.
//!
//! Every request carries HTTP basic credentials checked against the user store, with the
//! same login limiter as the AMQP and MQTT listeners.

use super::{ApiError, Shared};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use base64::Engine;
use pigeon_broker::permission::{Access, Grant};
use std::net::SocketAddr;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The user's name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
}

/// The tags that open the management API at all (`rabbit_mgmt_util:is_authorized/2`).
const MANAGEMENT_TAGS: [&str; 4] = ["management", "policymaker", "monitoring", "administrator"];

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// `administrator`.
    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    /// `monitoring` or `administrator`: sees everything.
    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    /// 401 unless an administrator (`rabbit_mgmt_util:is_authorized_admin`).
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not administrator user"))
        }
    }

    /// 401 unless monitoring or administrator (`is_authorized_monitor`).
    pub fn require_monitor(&self) -> Result<(), ApiError> {
        if self.is_monitor() {
            Ok(())
        } else {
            Err(ApiError::not_authorised("Not monitor user"))
        }
    }

    /// Whether the caller may see the objects of `vhost` (monitors see every vhost, others
    /// those they have permissions in).
    pub fn sees_vhost(&self, http: &Shared, vhost: &str) -> bool {
        self.is_monitor()
            || http
                .state
                .broker
                .access()
                .permission(&self.name, vhost)
                .is_some()
    }

    /// The live vhosts the caller may see, sorted by name: what every listing across vhosts
    /// (`/api/exchanges`, `/api/queues`, ...) walks.
    pub fn vhosts(&self, http: &Shared) -> Vec<std::sync::Arc<pigeon_broker::VHost>> {
        let mut all = http.state.broker.vhosts();
        all.retain(|v| !v.is_deleted() && self.sees_vhost(http, v.name()));
        all
    }

    /// The vhost, if it exists and the caller may see it: 404 when it does not exist, 401
    /// "Not authorised to access virtual host" when it may not (`is_authorized_vhost`).
    pub fn vhost(
        &self,
        http: &Shared,
        vhost: &str,
    ) -> Result<std::sync::Arc<pigeon_broker::VHost>, ApiError> {
        let Some(v) = http.state.broker.vhost(vhost).filter(|v| !v.is_deleted()) else {
            return Err(ApiError::not_found());
        };
        if !self.sees_vhost(http, vhost) {
            return Err(ApiError::not_authorised(
                "Not authorised to access virtual host",
            ));
        }
        Ok(v)
    }

    /// Checks the caller's own permission for `access` to the resource `name` in `vhost`, as
    /// an AMQP client of that user would be checked: the management API acts on the broker
    /// in the caller's name (RabbitMQ opens a direct connection as that user), administrators
    /// included. 401 with RabbitMQ's AMQP refusal text otherwise.
    pub fn check(
        &self,
        http: &Shared,
        vhost: &str,
        access: Access,
        kind: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let refused = || {
            ApiError::not_authorised(format!(
                "access to {kind} '{name}' in vhost '{vhost}' refused for user '{}'",
                self.name
            ))
        };
        let permission = http
            .state
            .broker
            .access()
            .permission(&self.name, vhost)
            .ok_or_else(|| {
                ApiError::not_authorised(format!(
                    "access to vhost '{vhost}' refused for user '{}'",
                    self.name
                ))
            })?;
        let grant = Grant::new(&permission).map_err(|_| refused())?;
        let resource = pigeon_broker::permission::resource_name(name);
        if grant.allows(access, resource) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

/// Splits `Authorization: Basic base64(user:password)`.
fn basic_credentials(parts: &Parts) -> Option<(String, Vec<u8>)> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let value = value.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = String::from_utf8(decoded[..colon].to_vec()).ok()?;
    Some((user, decoded[colon + 1..].to_vec()))
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, http: &Shared) -> Result<Caller, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_canonical())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let Some((user, password)) = basic_credentials(parts) else {
            return Err(ApiError::not_authorised("Login failed"));
        };
        let state = std::sync::Arc::clone(&http.state);
        // Hashing is quick (one salted SHA-256), but the limiter and the user lookup are
        // shared with the protocol listeners: keep them off the request's future anyway.
        let found = super::blocking(move || state.auth.authenticate(&user, &password, peer))
            .await?
            .map_err(|_| ApiError::not_authorised("Login failed"))?;
        let caller = Caller {
            name: found.name,
            tags: found.tags,
        };
        if !MANAGEMENT_TAGS.iter().any(|t| caller.has(t)) {
            tracing::info!(%peer, user = ?caller.name, "management API refused: not a management user");
            return Err(ApiError::not_authorised("Not management user"));
        }
        Ok(caller)
    }
}
