//! Users, vhosts, permissions and limits as the server sets them up and as an operator changes
//! them: the first start's bootstrap, the configured users, the hook that closes the
//! connections of a deleted vhost or user, and the [`ServerHandle`] methods the management
//! API (and, until it exists, the tests) call. Each is a thin wrapper over
//! `pigeon_broker::access`, where the rules and the store live.

use crate::config::ServerConfig;
use crate::{ServerHandle, ServerState};
use pigeon_broker::access::{
    AccessError, Bootstrap, DefaultUser, Deleted, PasswordHash, User, UserLimits, VHostInfo,
    VHostLimits,
};
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_broker::Broker;
use std::sync::{Arc, Weak};

/// The first start's default vhost and user (once per data directory, or per process in
/// memory), then the configured `users`, created or updated at every start with `.*` on `/`.
pub(crate) fn bootstrap(broker: &Broker, config: &ServerConfig) -> Result<(), AccessError> {
    let p = &config.default_permissions;
    let user = (!config.default_user.is_empty()).then(|| DefaultUser {
        name: config.default_user.clone(),
        password: config.default_pass.clone(),
        tags: config.default_user_tags.clone(),
        permission: Permission {
            configure: p.configure.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
        },
    });
    broker.bootstrap(&Bootstrap {
        vhost: config.default_vhost.clone(),
        user,
    })?;
    for u in &config.users {
        let existing = broker.access().user(&u.name);
        // Rehash (and rewrite) only when the configured password or tags changed.
        let same = existing.as_ref().is_some_and(|e| {
            e.tags == u.tags
                && e.password
                    .as_ref()
                    .is_some_and(|h| h.verify(u.password.as_bytes()))
        });
        if !same {
            broker
                .access()
                .put_user(User::with_password(&u.name, &u.password, u.tags.clone()))?;
        }
        if broker.vhost("/").is_none() {
            tracing::warn!(user = %u.name, "configured user gets no permissions: vhost '/' does not exist");
        } else if broker.access().permission(&u.name, "/").is_none() {
            broker.set_permissions(&u.name, "/", Permission::all())?;
        }
    }
    Ok(())
}

/// The users that may only connect from loopback: `loopback_users`, and configured users
/// marked `loopback_only`.
pub(crate) fn loopback_users(config: &ServerConfig) -> Vec<String> {
    let mut all = config.loopback_users.clone();
    all.extend(
        config
            .users
            .iter()
            .filter(|u| u.loopback_only)
            .map(|u| u.name.clone()),
    );
    all
}

/// Registers what happens when a vhost or user is deleted: MQTT sessions of a deleted vhost
/// end (they were in it), and every connection is told to look whether it is concerned (by
/// waking its task; `state.kicks` moves too, for whoever watches it); those whose vhost or
/// user is gone close (`connection.rs` of each protocol).
pub(crate) fn register_hooks(state: &Arc<ServerState>) {
    let weak: Weak<ServerState> = Arc::downgrade(state);
    state.broker.on_deleted(Arc::new(move |deleted: &Deleted| {
        let Some(state) = weak.upgrade() else {
            return;
        };
        match deleted {
            Deleted::VHost(name) => {
                tracing::info!(vhost = %name, "closing all connections in vhost '{name}' because it's being deleted");
                state.mqtt.registry.end_vhost(name);
            }
            Deleted::User(name) => {
                tracing::info!(user = %name, "closing all connections from user '{name}' because it's being deleted");
                state.mqtt.registry.wake_all();
            }
        }
        state.kicks.send_modify(|n| *n = n.wrapping_add(1));
        // AMQP connections look at their vhost and user when woken (`amqp/connection.rs`).
        state.registry.wake_all();
    }));
}

/// Administration, as `rabbitmqctl` and the HTTP API do it. Every change is durable (with a
/// data directory) when the call returns.
impl ServerHandle {
    /// `add_user`: a new user with a password (hashed) or none (certificate login only).
    pub fn add_user(
        &self,
        name: &str,
        password: Option<&str>,
        tags: &[&str],
    ) -> Result<(), AccessError> {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        self.broker.access().add_user(name, password, tags)
    }

    /// Creates or replaces a user with a password hash imported from RabbitMQ (a definitions
    /// file's `password_hash` and `hashing_algorithm`).
    pub fn import_user(
        &self,
        name: &str,
        password_hash: &str,
        hashing_algorithm: &str,
        tags: &[&str],
    ) -> Result<(), AccessError> {
        let hash = PasswordHash::from_definition(password_hash, hashing_algorithm)?;
        self.broker.access().put_user(User {
            name: name.to_string(),
            password: Some(hash),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        })
    }

    /// `delete_user`: the user, its permissions and limits; its connections are closed.
    pub fn delete_user(&self, name: &str) -> Result<bool, AccessError> {
        self.broker.delete_user(name)
    }

    /// `change_password` (`Some`) or `clear_password` (`None`). Open connections stay open.
    pub fn change_password(&self, name: &str, password: Option<&str>) -> Result<(), AccessError> {
        self.broker.access().change_password(name, password)
    }

    /// `set_user_tags`: replaces the user's tags.
    pub fn set_user_tags(&self, name: &str, tags: &[&str]) -> Result<(), AccessError> {
        let tags = tags.iter().map(|t| t.to_string()).collect();
        self.broker.access().set_tags(name, tags)
    }

    /// Every user.
    pub fn users(&self) -> Vec<Arc<User>> {
        self.broker.access().users()
    }

    /// `add_vhost` (or updates the description and tags of an existing one).
    pub fn add_vhost(&self, name: &str, info: VHostInfo) -> Result<(), AccessError> {
        self.broker.add_vhost(name, info).map(|_| ())
    }

    /// `delete_vhost`: everything in it goes, on disk too, and its connections are closed
    /// (320 CONNECTION_FORCED "vhost 'x' is deleted"; MQTT 5 DISCONNECT 0x98).
    pub fn delete_vhost(&self, name: &str) -> Result<bool, AccessError> {
        self.broker.delete_vhost(name)
    }

    /// The names of every vhost.
    pub fn vhosts(&self) -> Vec<String> {
        self.broker
            .vhosts()
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    }

    /// `set_permissions`: the user and vhost must exist.
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        let p = Permission {
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
        };
        self.broker.set_permissions(user, vhost, p)
    }

    /// `clear_permissions`; false if there were none.
    pub fn clear_permissions(&self, user: &str, vhost: &str) -> Result<bool, AccessError> {
        self.broker.access().try_clear_permission(user, vhost)
    }

    /// `set_topic_permissions`: the user and vhost must exist.
    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<(), AccessError> {
        self.broker.check_user_and_vhost(user, vhost)?;
        let p = TopicPermission {
            exchange: exchange.into(),
            write: write.into(),
            read: read.into(),
        };
        self.broker
            .access()
            .try_set_topic_permission(user, vhost, p)
    }

    /// `clear_topic_permissions`, for one exchange or all.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), AccessError> {
        self.broker
            .access()
            .try_clear_topic_permissions(user, vhost, exchange)
    }

    /// `set_vhost_limits` (all `None`: `clear_vhost_limits`); the vhost must exist.
    pub fn set_vhost_limits(&self, vhost: &str, limits: VHostLimits) -> Result<(), AccessError> {
        if self.broker.vhost(vhost).is_none() {
            return Err(AccessError::NoSuchVHost(vhost.to_string()));
        }
        self.broker.access().try_set_vhost_limits(vhost, limits)
    }

    /// `set_user_limits` (all `None`: `clear_user_limits`); the user must exist.
    pub fn set_user_limits(&self, user: &str, limits: UserLimits) -> Result<(), AccessError> {
        if self.broker.access().user(user).is_none() {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        self.broker.access().try_set_user_limits(user, limits)
    }
}
