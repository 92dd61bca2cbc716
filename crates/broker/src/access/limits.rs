//! Vhost and user limits (RabbitMQ's `set_vhost_limits`, `set_user_limits`), kept by
//! [`AccessControl`] and enforced by the protocol adapters.

use super::{logged, persist, AccessControl, AccessError};
use persist::{USER_LIMITS, VHOST_LIMITS};
use pigeon_store::MetaOp;

/// A vhost's limits (RabbitMQ's `set_vhost_limits`); `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VHostLimits {
    /// Most client connections to the vhost at once (`max-connections`).
    pub max_connections: Option<u64>,
    /// Most queues in the vhost (`max-queues`).
    pub max_queues: Option<u64>,
}

/// A user's limits (RabbitMQ's `set_user_limits`); `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserLimits {
    /// Most connections of the user at once (`max-connections`).
    pub max_connections: Option<u64>,
    /// Most channels per connection of the user (`max-channels`).
    pub max_channels: Option<u64>,
}

impl AccessControl {
    /// The limits of `vhost`.
    pub fn vhost_limits(&self, vhost: &str) -> VHostLimits {
        self.vhost_limits
            .read()
            .get(vhost)
            .copied()
            .unwrap_or_default()
    }

    /// Sets the limits of `vhost` (all `None` clears them). A failure is logged.
    pub fn set_vhost_limits(&self, vhost: &str, limits: VHostLimits) {
        logged("set vhost limits", self.try_set_vhost_limits(vhost, limits));
    }

    /// The same, durably.
    pub fn try_set_vhost_limits(
        &self,
        vhost: &str,
        limits: VHostLimits,
    ) -> Result<(), AccessError> {
        let _w = self.writes.lock();
        let k = persist::key(&[vhost]);
        let v = persist::encode_vhost_limits(&limits);
        self.persist(&[if limits == VHostLimits::default() {
            MetaOp::Delete {
                table: VHOST_LIMITS,
                key: &k,
            }
        } else {
            MetaOp::Put {
                table: VHOST_LIMITS,
                key: &k,
                value: &v,
            }
        }])?;
        let mut all = self.vhost_limits.write();
        if limits == VHostLimits::default() {
            all.remove(vhost);
        } else {
            all.insert(vhost.to_string(), limits);
        }
        drop(all);
        self.changed();
        Ok(())
    }

    /// The limits of `user`.
    pub fn user_limits(&self, user: &str) -> UserLimits {
        self.user_limits
            .read()
            .get(user)
            .copied()
            .unwrap_or_default()
    }

    /// Sets the limits of `user` (all `None` clears them). A failure is logged.
    pub fn set_user_limits(&self, user: &str, limits: UserLimits) {
        logged("set user limits", self.try_set_user_limits(user, limits));
    }

    /// The same, durably.
    pub fn try_set_user_limits(&self, user: &str, limits: UserLimits) -> Result<(), AccessError> {
        let _w = self.writes.lock();
        let k = persist::key(&[user]);
        let v = persist::encode_user_limits(&limits);
        self.persist(&[if limits == UserLimits::default() {
            MetaOp::Delete {
                table: USER_LIMITS,
                key: &k,
            }
        } else {
            MetaOp::Put {
                table: USER_LIMITS,
                key: &k,
                value: &v,
            }
        }])?;
        let mut all = self.user_limits.write();
        if limits == UserLimits::default() {
            all.remove(user);
        } else {
            all.insert(user.to_string(), limits);
        }
        drop(all);
        self.changed();
        Ok(())
    }
}
