//! Authentication, shared by every protocol: a user name and password (AMQP PLAIN/AMQPLAIN,
//! MQTT CONNECT) or a certificate's user name (SASL EXTERNAL), checked against the users in
//! the broker's store (`pigeon_broker::access`).
//!
//! - The answer and the work are the same whether the user exists or not: an unknown user's
//!   password is hashed against a dummy (`AccessControl::check_password`), and clients only
//!   ever learn "refused".
//! - A source that keeps failing is slowed down (`limiter.rs`): after a burst of failures its
//!   attempts are refused unchecked, with the same answer, until its bucket refills.
//! - `loopback_users` (RabbitMQ's, default `["guest"]`) may only connect from a loopback
//!   address; checked after the password, as `rabbit_access_control:check_user_loopback`.
//!
//! Nothing here holds a lock while hashing: the user is looked up under a short read lock, and
//! the limiter's shards are locked only to count.

mod limiter;

use pigeon_broker::Broker;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

pub use limiter::LoginLimiter;

/// Why a login was refused (logged; clients only learn that it was).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The client picked a SASL mechanism we do not offer.
    #[error("unsupported authentication mechanism {0:?}")]
    Mechanism(String),
    /// The SASL response could not be parsed.
    #[error("malformed {0} response")]
    Malformed(&'static str),
    /// Unknown user, wrong password, or a user without a password. (User names come from
    /// the network: logged quoted and escaped, `{:?}`.)
    #[error("invalid credentials for user {0:?}")]
    Credentials(String),
    /// The user may only connect from loopback.
    #[error("user {0:?} can only connect via localhost")]
    LoopbackOnly(String),
    /// Too many failed logins from this source: refused without checking.
    #[error("too many failed logins from this address, refusing user {0:?} unchecked")]
    Throttled(String),
}

/// Who logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedUser {
    /// The user's name.
    pub name: String,
    /// Its tags (`administrator`, `monitoring`, ...).
    pub tags: Vec<String>,
}

/// Checks logins against the broker's users.
pub struct Authenticator {
    broker: Arc<Broker>,
    loopback_users: HashSet<String>,
    limiter: LoginLimiter,
}

impl Authenticator {
    /// Users in `loopback_users` may only connect from loopback; failed logins are limited to
    /// `burst` in a row per source, then `rate` per second.
    pub fn new(
        broker: Arc<Broker>,
        loopback_users: impl IntoIterator<Item = String>,
        rate: f64,
        burst: u32,
    ) -> Authenticator {
        Authenticator {
            broker,
            loopback_users: loopback_users.into_iter().collect(),
            limiter: LoginLimiter::new(rate, burst),
        }
    }

    /// Checks `user`'s `password` for a client at `peer`. A refusal is logged here (without
    /// the password), once; the caller answers the client the protocol's way.
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer: IpAddr,
    ) -> Result<AuthenticatedUser, AuthError> {
        let now = Instant::now();
        if !self.limiter.allows(peer, now) {
            // Refused unchecked: the source is guessing. Logged at debug only, or a flood
            // would flood the log too (the moment it was throttled was logged).
            tracing::debug!(%peer, ?user, "login refused: too many failures from this address");
            return Err(AuthError::Throttled(user.to_string()));
        }
        let Some(found) = self.broker.access().check_password(user, password) else {
            let e = AuthError::Credentials(user.to_string());
            if self.limiter.failed(peer, now) {
                tracing::warn!(%peer, ?user, "too many failed logins from this address: slowing it down");
            } else {
                tracing::warn!(%peer, error = %e, "login refused");
            }
            return Err(e);
        };
        self.check_loopback(&found.name, peer)?;
        Ok(AuthenticatedUser {
            name: found.name.clone(),
            tags: found.tags.clone(),
        })
    }

    /// A user identified by other means (a client certificate, SASL EXTERNAL): it must exist;
    /// no password is checked. `loopback_users` still applies.
    pub fn authenticate_external(
        &self,
        user: &str,
        peer: IpAddr,
    ) -> Result<AuthenticatedUser, AuthError> {
        let Some(found) = self.broker.access().user(user) else {
            let e = AuthError::Credentials(user.to_string());
            tracing::warn!(%peer, error = %e, "login refused (no such user)");
            return Err(e);
        };
        self.check_loopback(&found.name, peer)?;
        Ok(AuthenticatedUser {
            name: found.name.clone(),
            tags: found.tags.clone(),
        })
    }

    fn check_loopback(&self, user: &str, peer: IpAddr) -> Result<(), AuthError> {
        if self.loopback_users.contains(user) && !peer.to_canonical().is_loopback() {
            let e = AuthError::LoopbackOnly(user.to_string());
            tracing::warn!(%peer, error = %e, "login refused");
            return Err(e);
        }
        Ok(())
    }
}

/// Whether `user` may open `vhost`: it exists and the user has a permission record there
/// (any, as RabbitMQ's `rabbit_auth_backend_internal:check_vhost_access`).
pub fn may_open_vhost(broker: &Broker, user: &str, vhost: &str) -> bool {
    broker.vhost(vhost).is_some_and(|v| !v.is_deleted())
        && broker.access().permission(user, vhost).is_some()
}

/// RabbitMQ's refusal of `connection.open` (and of an MQTT CONNECT) to a vhost that does not
/// exist or that the user has no permissions in: the same text either way
/// (`rabbit_access_control:check_vhost_access`).
pub fn vhost_refused(user: &str, vhost: &str) -> String {
    format!("access to vhost '{vhost}' refused for user '{user}'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_broker::permission::Permission;

    fn broker() -> Arc<Broker> {
        let b = Broker::new();
        b.access()
            .add_user("guest", Some("guest"), vec!["administrator".into()])
            .unwrap();
        b.access().add_user("app", Some("pw"), Vec::new()).unwrap();
        b.access().add_user("cert", None, Vec::new()).unwrap();
        b.access().set_permission("app", "/", Permission::all());
        b
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn passwords_loopback_and_external_logins() {
        let a = Authenticator::new(broker(), ["guest".to_string()], 1.0, 100);
        let lo = ip("127.0.0.1");
        let far = ip("10.0.0.1");
        let guest = a.authenticate("guest", b"guest", lo).unwrap();
        assert_eq!(guest.tags, ["administrator"]);
        assert_eq!(
            a.authenticate("guest", b"guest", far),
            Err(AuthError::LoopbackOnly("guest".into()))
        );
        assert_eq!(a.authenticate("app", b"pw", far).unwrap().name, "app");
        for (user, pass) in [("app", &b"PW"[..]), ("nobody", b"pw"), ("cert", b"")] {
            assert_eq!(
                a.authenticate(user, pass, far),
                Err(AuthError::Credentials(user.into()))
            );
        }
        assert_eq!(a.authenticate_external("cert", far).unwrap().name, "cert");
        assert!(a.authenticate_external("nobody", far).is_err());
    }

    #[test]
    fn a_guessing_source_is_refused_even_with_the_right_password() {
        let a = Authenticator::new(broker(), Vec::new(), 0.001, 2);
        let bad = ip("10.0.0.9");
        for _ in 0..2 {
            assert!(matches!(
                a.authenticate("app", b"guess", bad),
                Err(AuthError::Credentials(_))
            ));
        }
        assert!(matches!(
            a.authenticate("app", b"pw", bad),
            Err(AuthError::Throttled(_))
        ));
        // Another source logs in normally meanwhile.
        assert!(a.authenticate("app", b"pw", ip("10.0.0.10")).is_ok());
    }

    #[test]
    fn vhost_access_needs_a_permission_record() {
        let b = broker();
        assert!(may_open_vhost(&b, "app", "/"));
        assert!(!may_open_vhost(&b, "guest", "/"));
        assert!(!may_open_vhost(&b, "app", "nowhere"));
    }
}
