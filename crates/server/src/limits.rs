//! Connection, channel and accept-rate limits.
//!
//! The per-vhost and per-user limits are RabbitMQ's (`rabbitmqctl set_vhost_limits`,
//! `set_user_limits`; the values live in the broker's `AccessControl`). The server counts what
//! they bound: connections per vhost and per user, channels per user (over all of the user's
//! connections, as `rabbit_channel_tracking` counts them). Each count is an atomic in a small
//! map, taken with a [`Slot`] that gives it back when dropped, so every way a connection or a
//! channel ends releases it.
//!
//! The accept-rate limit is ours (RabbitMQ has none; a reverse proxy usually does it): at most
//! `connection_rate_limit` new connections per second from one source address; the excess is
//! closed as soon as it is accepted, before any protocol work.

use parking_lot::Mutex;
use pigeon_broker::access::AccessControl;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A limit that refused a connection, a channel or a queue, with RabbitMQ's explanation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The vhost's `max-connections` (rabbit_reader `is_over_vhost_connection_limit`).
    #[error("access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached")]
    VHostConnections {
        /// The vhost.
        vhost: String,
        /// The user.
        user: String,
        /// The limit.
        limit: u64,
    },
    /// The user's `max-connections` (rabbit_reader `is_over_user_connection_limit`).
    #[error("connection refused for user '{user}': user connection limit ({limit}) is reached")]
    UserConnections {
        /// The user.
        user: String,
        /// The limit.
        limit: u64,
    },
    /// The user's `max-channels` (rabbit_reader `is_over_limits`).
    #[error("number of channels opened for user '{user}' has reached the maximum allowed user limit of {limit}")]
    UserChannels {
        /// The user.
        user: String,
        /// The limit.
        limit: u64,
    },
    /// The vhost's `max-queues` (rabbit_queue_type `check_vhost_queue_limit`).
    #[error("cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({limit}) is reached")]
    Queues {
        /// The queue being declared.
        queue: String,
        /// The vhost.
        vhost: String,
        /// The limit.
        limit: u64,
    },
}

/// One counted connection or channel; the count goes down when it is dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicU64>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's slots in its vhost's and its user's counts.
#[derive(Debug)]
pub struct ConnectionSlots {
    _vhost: Slot,
    _user: Slot,
}

#[derive(Default)]
struct Counts(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Counts {
    fn counter(&self, key: &str) -> Arc<AtomicU64> {
        let mut map = self.0.lock();
        if let Some(c) = map.get(key) {
            return Arc::clone(c);
        }
        let c = Arc::new(AtomicU64::new(0));
        map.insert(key.to_string(), Arc::clone(&c));
        c
    }

    /// Takes one under `limit` (`None`: unlimited; `Some(0)` refuses all, as RabbitMQ's
    /// `is_over_limit`), or `Err(limit)`.
    fn take(&self, key: &str, limit: Option<u64>) -> Result<Slot, u64> {
        let c = self.counter(key);
        let before = c.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(c);
        match limit {
            Some(max) if before >= max => Err(max), // `slot` drops: the count goes back
            _ => Ok(slot),
        }
    }
}

/// Everything the server counts to enforce limits.
#[derive(Default)]
pub struct Limits {
    vhost_connections: Counts,
    user_connections: Counts,
    user_channels: Counts,
    accept: AcceptRate,
}

impl Limits {
    /// Limits with an accept rate of `per_second` connections per source address (0: none);
    /// loopback sources are exempt unless `include_loopback`.
    pub fn new(per_second: u32, include_loopback: bool) -> Limits {
        let mut accept = AcceptRate::new(per_second);
        accept.include_loopback = include_loopback;
        Limits {
            accept,
            ..Limits::default()
        }
    }

    /// Counts a new connection of `user` to `vhost`, or says which limit refuses it (the vhost's
    /// first, as RabbitMQ checks them at `connection.open`).
    pub fn open_connection(
        &self,
        access: &AccessControl,
        vhost: &str,
        user: &str,
    ) -> Result<ConnectionSlots, LimitError> {
        let v = self
            .vhost_connections
            .take(vhost, access.vhost_limits(vhost).max_connections)
            .map_err(|limit| LimitError::VHostConnections {
                vhost: vhost.to_string(),
                user: user.to_string(),
                limit,
            })?;
        let u = self
            .user_connections
            .take(user, access.user_limits(user).max_connections)
            .map_err(|limit| LimitError::UserConnections {
                user: user.to_string(),
                limit,
            })?;
        Ok(ConnectionSlots {
            _vhost: v,
            _user: u,
        })
    }

    /// Counts a new channel of `user`, or refuses it over the user's `max-channels`.
    pub fn open_channel(&self, access: &AccessControl, user: &str) -> Result<Slot, LimitError> {
        self.user_channels
            .take(user, access.user_limits(user).max_channels)
            .map_err(|limit| LimitError::UserChannels {
                user: user.to_string(),
                limit,
            })
    }

    /// Whether a connection just accepted from `ip` is within the accept rate.
    pub fn accept(&self, ip: IpAddr) -> bool {
        self.accept.allow(ip)
    }
}

/// Refuses a new queue of `vhost` over its `max-queues` (`exists`: the name is already
/// declared, which is never refused: the limit is for new queues only, as RabbitMQ's).
pub fn check_queue_limit(
    access: &AccessControl,
    vhost: &pigeon_broker::VHost,
    name: &str,
) -> Result<(), LimitError> {
    let Some(limit) = access.vhost_limits(vhost.name()).max_queues else {
        return Ok(());
    };
    if vhost.queue(name).is_ok() || (vhost.queue_count() as u64) < limit {
        return Ok(());
    }
    Err(LimitError::Queues {
        queue: name.to_string(),
        vhost: vhost.name().to_string(),
        limit,
    })
}

/// Per source address, new connections in the current one-second window.
struct AcceptRate {
    per_second: u32,
    /// Whether loopback sources count. By default they do not: the limit is against floods
    /// from the network, and local tools (client libraries' test suites, `pigeon bench idle`
    /// opening thousands of connections) must not be turned away.
    include_loopback: bool,
    started: Instant,
    windows: Mutex<HashMap<IpAddr, (u64, u32)>>,
    /// The second of the last "too many connections" log line (one a second at most).
    last_log: AtomicU64,
}

impl Default for AcceptRate {
    fn default() -> Self {
        AcceptRate::new(0)
    }
}

impl AcceptRate {
    fn new(per_second: u32) -> AcceptRate {
        AcceptRate {
            per_second,
            include_loopback: true,
            started: Instant::now(),
            windows: Mutex::new(HashMap::new()),
            last_log: AtomicU64::new(u64::MAX),
        }
    }

    fn allow(&self, ip: IpAddr) -> bool {
        if self.per_second == 0 || (!self.include_loopback && ip.to_canonical().is_loopback()) {
            return true;
        }
        let now = self.started.elapsed().as_secs();
        let count = {
            let mut windows = self.windows.lock();
            // Forget past windows once the map grows, so a scan of many addresses costs
            // bounded memory.
            if windows.len() >= 4096 {
                windows.retain(|_, (second, _)| *second == now);
            }
            let w = windows.entry(ip.to_canonical()).or_insert((now, 0));
            if w.0 != now {
                *w = (now, 0);
            }
            w.1 = w.1.saturating_add(1);
            w.1
        };
        if count <= self.per_second {
            return true;
        }
        if self.last_log.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(peer = %ip, limit = self.per_second, "connection rate limit reached, closing new connections from this address (logged once a second)");
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_broker::access::{UserLimits, VHostLimits};

    #[test]
    fn slots_count_and_give_back() {
        let access = AccessControl::new();
        access.set_vhost_limits(
            "/",
            VHostLimits {
                max_connections: Some(1),
                max_queues: None,
            },
        );
        let limits = Limits::new(0, false);
        let first = limits.open_connection(&access, "/", "u").unwrap();
        let err = limits.open_connection(&access, "/", "u").unwrap_err();
        assert_eq!(
            err.to_string(),
            "access to vhost '/' refused for user 'u': connection limit (1) is reached"
        );
        drop(first);
        // Given back: the next one fits.
        assert!(limits.open_connection(&access, "/", "u").is_ok());
        access.set_user_limits(
            "u",
            UserLimits {
                max_connections: None,
                max_channels: Some(0),
            },
        );
        assert!(limits.open_channel(&access, "u").is_err());
    }

    #[test]
    fn accept_rate_is_per_address() {
        let rate = AcceptRate::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(rate.allow(a) && rate.allow(a));
        // The third within the same second is refused (unless the second just turned).
        let third = rate.allow(a);
        let fourth = rate.allow(a);
        assert!(!(third && fourth));
        assert!(rate.allow(b));
    }
}
