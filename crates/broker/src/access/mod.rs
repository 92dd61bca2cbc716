//! Access control data: who may do what where. Users, their vhost permissions, topic
//! permissions and the vhost and user limits (RabbitMQ's `rabbitmqctl set_permissions`,
//! `set_topic_permissions`, `set_vhost_limits`, `set_user_limits`).
//!
//! The protocol adapters read it when a connection opens (and when [`AccessControl::generation`]
//! moves) and keep compiled grants (`permission.rs`) per connection or channel: nothing here is
//! on the per-message path.

use crate::permission::{Permission, TopicPermission};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Permissions, topic permissions and limits of every user and vhost.
#[derive(Default)]
pub struct AccessControl {
    permissions: RwLock<HashMap<(String, String), Permission>>,
    topic_permissions: RwLock<HashMap<(String, String), Vec<TopicPermission>>>,
    vhost_limits: RwLock<HashMap<String, VHostLimits>>,
    user_limits: RwLock<HashMap<String, UserLimits>>,
    generation: AtomicU64,
}

impl AccessControl {
    /// Nothing granted, no limits.
    pub fn new() -> AccessControl {
        AccessControl::default()
    }

    /// Moves on every change, so that connections know their cached grants are stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// `user`'s permissions in `vhost`, if any were set.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<Permission> {
        self.permissions
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
    }

    /// Sets `user`'s permissions in `vhost`.
    pub fn set_permission(&self, user: &str, vhost: &str, permission: Permission) {
        self.permissions
            .write()
            .insert((user.to_string(), vhost.to_string()), permission);
        self.changed();
    }

    /// Removes `user`'s permissions in `vhost`; false if there were none.
    pub fn clear_permission(&self, user: &str, vhost: &str) -> bool {
        let removed = self
            .permissions
            .write()
            .remove(&(user.to_string(), vhost.to_string()))
            .is_some();
        self.changed();
        removed
    }

    /// `user`'s topic permissions in `vhost` (one per topic exchange).
    pub fn topic_permissions(&self, user: &str, vhost: &str) -> Vec<TopicPermission> {
        self.topic_permissions
            .read()
            .get(&(user.to_string(), vhost.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Sets `user`'s topic permission in `vhost` for `permission.exchange` (replacing the one
    /// for that exchange).
    pub fn set_topic_permission(&self, user: &str, vhost: &str, permission: TopicPermission) {
        let mut all = self.topic_permissions.write();
        let list = all
            .entry((user.to_string(), vhost.to_string()))
            .or_default();
        list.retain(|p| p.exchange != permission.exchange);
        list.push(permission);
        drop(all);
        self.changed();
    }

    /// Removes `user`'s topic permissions in `vhost`: for one exchange, or all of them.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) {
        let mut all = self.topic_permissions.write();
        let key = (user.to_string(), vhost.to_string());
        match exchange {
            None => {
                all.remove(&key);
            }
            Some(x) => {
                if let Some(list) = all.get_mut(&key) {
                    list.retain(|p| p.exchange != x);
                }
            }
        }
        drop(all);
        self.changed();
    }

    /// The limits of `vhost`.
    pub fn vhost_limits(&self, vhost: &str) -> VHostLimits {
        self.vhost_limits
            .read()
            .get(vhost)
            .copied()
            .unwrap_or_default()
    }

    /// Sets the limits of `vhost`.
    pub fn set_vhost_limits(&self, vhost: &str, limits: VHostLimits) {
        self.vhost_limits.write().insert(vhost.to_string(), limits);
        self.changed();
    }

    /// The limits of `user`.
    pub fn user_limits(&self, user: &str) -> UserLimits {
        self.user_limits
            .read()
            .get(user)
            .copied()
            .unwrap_or_default()
    }

    /// Sets the limits of `user`.
    pub fn set_user_limits(&self, user: &str, limits: UserLimits) {
        self.user_limits.write().insert(user.to_string(), limits);
        self.changed();
    }
}
