//! Access control data: who may do what where. Users, their vhost permissions, topic
//! permissions and the vhost and user limits (RabbitMQ's `rabbitmqctl add_user`,
//! `set_permissions`, `set_topic_permissions`, `set_vhost_limits`, `set_user_limits`).
//!
//! The protocol adapters read it when a connection opens (and when [`AccessControl::generation`]
//! moves) and keep compiled grants (`permission.rs`) per connection or channel: nothing here is
//! on the per-message path.
//!
//! With a store ([`AccessControl::open`]) every change is written through to the metadata
//! store first (`persist.rs`) and applied in memory only once it is durable; a failed write
//! changes nothing and is returned by the `try_` methods (the plain setters log it). Writers
//! are serialised by one mutex so that the store and the memory see changes in the same order;
//! readers only take the short read locks of the maps, never that mutex.
//!
//! The rooms: `password.rs` (RabbitMQ's salted hashes), `users.rs` (the user record),
//! `limits.rs` (vhost and user limits), `persist.rs` (the tables), `vhosts.rs` (creating, deleting and recovering vhosts, and the
//! first start's bootstrap, on [`Broker`](crate::Broker)).

mod limits;
pub mod password;
pub mod persist;
pub mod users;
pub mod vhosts;

pub use limits::{UserLimits, VHostLimits};

pub use password::{hash_password, HashingAlgorithm, PasswordError, PasswordHash};
pub use users::{parse_tags, User};
pub use vhosts::{Bootstrap, DefaultUser, Deleted, VHostInfo};

use crate::permission::{Grant, PatternError, Permission, TopicGrant, TopicPermission, TopicVars};
use parking_lot::{Mutex, RwLock};
use persist::{PERMISSIONS, TOPIC_PERMISSIONS, USERS, USER_LIMITS, VHOST_LIMITS};
use pigeon_store::{MetaOp, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Why a change to users, vhosts, permissions or limits was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The user does not exist.
    #[error("no such user '{0}'")]
    NoSuchUser(String),
    /// The vhost does not exist.
    #[error("no such vhost '{0}'")]
    NoSuchVHost(String),
    /// `add_user` of a name already taken (change its password or tags instead).
    #[error("user '{0}' already exists")]
    UserExists(String),
    /// An empty or otherwise unusable user or vhost name.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// A permission pattern is not a valid regular expression.
    #[error(transparent)]
    Pattern(#[from] PatternError),
    /// An imported password hash cannot be read.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The metadata store refused the write: nothing was changed.
    #[error("cannot write to the metadata store: {0}")]
    Store(#[from] StoreError),
}

type ByUserVHost<T> = RwLock<HashMap<(String, String), T>>;

/// Users, permissions, topic permissions and limits of every user and vhost.
#[derive(Default)]
pub struct AccessControl {
    users: RwLock<HashMap<String, Arc<User>>>,
    permissions: ByUserVHost<Permission>,
    topic_permissions: ByUserVHost<Vec<TopicPermission>>,
    vhost_limits: RwLock<HashMap<String, VHostLimits>>,
    user_limits: RwLock<HashMap<String, UserLimits>>,
    generation: AtomicU64,
    /// Where changes are written through (`None`: memory only).
    store: Option<Arc<Store>>,
    /// Serialises writers (store write, then memory), never taken by readers.
    writes: Mutex<()>,
    /// The first start's default user and vhost were created (marker in the store).
    bootstrapped: AtomicBool,
}

fn pair(user: &str, vhost: &str) -> (String, String) {
    (user.to_string(), vhost.to_string())
}

fn logged(what: &str, r: Result<(), AccessError>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot {what}");
    }
}

impl AccessControl {
    /// Nothing granted, no limits, no users, memory only.
    pub fn new() -> AccessControl {
        AccessControl::default()
    }

    /// Everything `store` holds; changes are written through to it.
    pub fn open(store: Arc<Store>) -> Result<AccessControl, StoreError> {
        let loaded = persist::load(&store)?;
        Ok(AccessControl {
            users: RwLock::new(
                loaded
                    .users
                    .into_iter()
                    .map(|(k, u)| (k, Arc::new(u)))
                    .collect(),
            ),
            permissions: RwLock::new(loaded.permissions),
            topic_permissions: RwLock::new(loaded.topic_permissions),
            vhost_limits: RwLock::new(loaded.vhost_limits),
            user_limits: RwLock::new(loaded.user_limits),
            generation: AtomicU64::new(0),
            store: Some(store),
            writes: Mutex::new(()),
            bootstrapped: AtomicBool::new(loaded.bootstrapped),
        })
    }

    /// Moves on every change, so that connections know their cached grants are stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes `ops` to the store (if any) in one transaction.
    fn persist(&self, ops: &[MetaOp<'_>]) -> Result<(), AccessError> {
        match &self.store {
            Some(store) if !ops.is_empty() => Ok(store.meta_batch(ops)?),
            _ => Ok(()),
        }
    }

    // --- Users ---

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<Arc<User>> {
        self.users.read().get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<Arc<User>> {
        let mut all: Vec<Arc<User>> = self.users.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates or replaces a user (definitions import, bootstrap).
    pub fn put_user(&self, user: User) -> Result<(), AccessError> {
        if user.name.is_empty() {
            return Err(AccessError::InvalidName(
                "a user name cannot be empty".into(),
            ));
        }
        let _w = self.writes.lock();
        self.write_user(user)
    }

    fn write_user(&self, user: User) -> Result<(), AccessError> {
        let k = persist::key(&[&user.name]);
        let v = persist::encode_user(&user);
        self.persist(&[MetaOp::Put {
            table: USERS,
            key: &k,
            value: &v,
        }])?;
        self.users.write().insert(user.name.clone(), Arc::new(user));
        self.changed();
        Ok(())
    }

    /// `rabbitmqctl add_user`: a new user with `password` (hashed; `None`: no password login)
    /// and `tags`. Refused if the name is taken.
    pub fn add_user(
        &self,
        name: &str,
        password: Option<&str>,
        tags: Vec<String>,
    ) -> Result<(), AccessError> {
        if name.is_empty() {
            return Err(AccessError::InvalidName(
                "a user name cannot be empty".into(),
            ));
        }
        let _w = self.writes.lock();
        if self.users.read().contains_key(name) {
            return Err(AccessError::UserExists(name.to_string()));
        }
        self.write_user(User {
            name: name.to_string(),
            password: password.map(hash_password),
            tags: users::normalize_tags(tags),
        })
    }

    /// Changes a user with `edit` (under the writers' lock) and writes it.
    fn update_user(&self, name: &str, edit: impl FnOnce(&mut User)) -> Result<(), AccessError> {
        let _w = self.writes.lock();
        let mut user = self
            .user(name)
            .map(|u| (*u).clone())
            .ok_or_else(|| AccessError::NoSuchUser(name.to_string()))?;
        edit(&mut user);
        self.write_user(user)
    }

    /// `rabbitmqctl change_password` (`Some`) or `clear_password` (`None`).
    pub fn change_password(&self, name: &str, password: Option<&str>) -> Result<(), AccessError> {
        // Hashed before taking the writers' lock: nobody waits for SHA-256.
        let hash = password.map(hash_password);
        self.update_user(name, |u| u.password = hash)
    }

    /// Sets a user's password hash as imported from RabbitMQ (`None`: no password login).
    pub fn set_password_hash(
        &self,
        name: &str,
        hash: Option<PasswordHash>,
    ) -> Result<(), AccessError> {
        self.update_user(name, |u| u.password = hash)
    }

    /// `rabbitmqctl set_user_tags`: replaces the user's tags.
    pub fn set_tags(&self, name: &str, tags: Vec<String>) -> Result<(), AccessError> {
        let tags = users::normalize_tags(tags);
        self.update_user(name, |u| u.tags = tags)
    }

    /// `rabbitmqctl delete_user`: the user, its permissions, topic permissions and limits.
    /// False if there was no such user.
    pub fn delete_user(&self, name: &str) -> Result<bool, AccessError> {
        let _w = self.writes.lock();
        if !self.users.read().contains_key(name) {
            return Ok(false);
        }
        let mut keys: Vec<(&str, Vec<u8>)> = vec![
            (USERS, persist::key(&[name])),
            (USER_LIMITS, persist::key(&[name])),
        ];
        if let Some(store) = &self.store {
            let mine = |p: &[String]| p.first().is_some_and(|u| u == name);
            for k in persist::keys_where(store, PERMISSIONS, 2, mine)? {
                keys.push((PERMISSIONS, k));
            }
            for k in persist::keys_where(store, TOPIC_PERMISSIONS, 3, mine)? {
                keys.push((TOPIC_PERMISSIONS, k));
            }
        }
        let ops: Vec<MetaOp<'_>> = keys
            .iter()
            .map(|(table, key)| MetaOp::Delete { table, key })
            .collect();
        self.persist(&ops)?;
        self.users.write().remove(name);
        self.permissions.write().retain(|(u, _), _| u != name);
        self.topic_permissions.write().retain(|(u, _), _| u != name);
        self.user_limits.write().remove(name);
        self.changed();
        Ok(true)
    }

    /// The user `name` if `password` is theirs. Costs one hash whether or not the user exists
    /// or has a password (an unknown user is checked against a dummy hash), and holds no lock
    /// while hashing.
    pub fn check_password(&self, name: &str, password: &[u8]) -> Option<Arc<User>> {
        let user = self.user(name);
        let hash = user
            .as_ref()
            .and_then(|u| u.password.as_ref())
            .unwrap_or_else(|| password::dummy());
        let matches = hash.verify(password);
        // A passwordless user was checked against the dummy: it never matches.
        user.filter(|u| matches && u.password.is_some())
    }

    // --- Permissions ---

    /// `user`'s permissions in `vhost`, if any were set.
    pub fn permission(&self, user: &str, vhost: &str) -> Option<Permission> {
        self.permissions.read().get(&pair(user, vhost)).cloned()
    }

    /// Every permission: (user, vhost, permission), sorted.
    pub fn all_permissions(&self) -> Vec<(String, String, Permission)> {
        let mut all: Vec<_> = self
            .permissions
            .read()
            .iter()
            .map(|((u, v), p)| (u.clone(), v.clone(), p.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }

    /// Sets `user`'s permissions in `vhost` (a failure is logged: see
    /// [`AccessControl::try_set_permission`]).
    pub fn set_permission(&self, user: &str, vhost: &str, permission: Permission) {
        logged(
            "set a permission",
            self.try_set_permission(user, vhost, permission),
        );
    }

    /// Sets `user`'s permissions in `vhost`, durably. Patterns that are not valid regular
    /// expressions are refused (RabbitMQ validates them too).
    pub fn try_set_permission(
        &self,
        user: &str,
        vhost: &str,
        permission: Permission,
    ) -> Result<(), AccessError> {
        Grant::new(&permission)?;
        let _w = self.writes.lock();
        let k = persist::key(&[user, vhost]);
        let v = persist::encode_permission(&permission);
        self.persist(&[MetaOp::Put {
            table: PERMISSIONS,
            key: &k,
            value: &v,
        }])?;
        self.permissions
            .write()
            .insert(pair(user, vhost), permission);
        self.changed();
        Ok(())
    }

    /// Removes `user`'s permissions in `vhost`; false if there were none (or the store
    /// refused: logged).
    pub fn clear_permission(&self, user: &str, vhost: &str) -> bool {
        match self.try_clear_permission(user, vhost) {
            Ok(removed) => removed,
            Err(e) => {
                tracing::error!(error = %e, "cannot clear a permission");
                false
            }
        }
    }

    /// Removes `user`'s permissions in `vhost`, durably; false if there were none.
    pub fn try_clear_permission(&self, user: &str, vhost: &str) -> Result<bool, AccessError> {
        let _w = self.writes.lock();
        let k = persist::key(&[user, vhost]);
        self.persist(&[MetaOp::Delete {
            table: PERMISSIONS,
            key: &k,
        }])?;
        let removed = self
            .permissions
            .write()
            .remove(&pair(user, vhost))
            .is_some();
        self.changed();
        Ok(removed)
    }

    // --- Topic permissions ---

    /// `user`'s topic permissions in `vhost` (one per topic exchange).
    pub fn topic_permissions(&self, user: &str, vhost: &str) -> Vec<TopicPermission> {
        self.topic_permissions
            .read()
            .get(&pair(user, vhost))
            .cloned()
            .unwrap_or_default()
    }

    /// Every topic permission: (user, vhost, permission), sorted.
    pub fn all_topic_permissions(&self) -> Vec<(String, String, TopicPermission)> {
        let mut all: Vec<_> = self
            .topic_permissions
            .read()
            .iter()
            .flat_map(|((u, v), ps)| ps.iter().map(|p| (u.clone(), v.clone(), p.clone())))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1, &a.2.exchange).cmp(&(&b.0, &b.1, &b.2.exchange)));
        all
    }

    /// Sets `user`'s topic permission in `vhost` for `permission.exchange` (replacing the one
    /// for that exchange). A failure is logged.
    pub fn set_topic_permission(&self, user: &str, vhost: &str, permission: TopicPermission) {
        logged(
            "set a topic permission",
            self.try_set_topic_permission(user, vhost, permission),
        );
    }

    /// The same, durably; invalid patterns are refused. (The patterns may contain
    /// `{username}`-style variables, so they are checked expanded as a connection would.)
    pub fn try_set_topic_permission(
        &self,
        user: &str,
        vhost: &str,
        permission: TopicPermission,
    ) -> Result<(), AccessError> {
        let vars = TopicVars {
            username: user,
            vhost,
            client_id: Some("client"),
        };
        TopicGrant::new(std::slice::from_ref(&permission), &vars)?;
        let _w = self.writes.lock();
        let k = persist::key(&[user, vhost, &permission.exchange]);
        let v = persist::encode_topic_permission(&permission);
        self.persist(&[MetaOp::Put {
            table: TOPIC_PERMISSIONS,
            key: &k,
            value: &v,
        }])?;
        let mut all = self.topic_permissions.write();
        let list = all.entry(pair(user, vhost)).or_default();
        list.retain(|p| p.exchange != permission.exchange);
        list.push(permission);
        drop(all);
        self.changed();
        Ok(())
    }

    /// Removes `user`'s topic permissions in `vhost`: for one exchange, or all of them. A
    /// failure is logged.
    pub fn clear_topic_permissions(&self, user: &str, vhost: &str, exchange: Option<&str>) {
        logged(
            "clear topic permissions",
            self.try_clear_topic_permissions(user, vhost, exchange),
        );
    }

    /// The same, durably.
    pub fn try_clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> Result<(), AccessError> {
        let _w = self.writes.lock();
        let exchanges: Vec<String> = self
            .topic_permissions(user, vhost)
            .into_iter()
            .map(|p| p.exchange)
            .filter(|x| exchange.is_none_or(|e| e == x))
            .collect();
        let keys: Vec<Vec<u8>> = exchanges
            .iter()
            .map(|x| persist::key(&[user, vhost, x]))
            .collect();
        let ops: Vec<MetaOp<'_>> = keys
            .iter()
            .map(|key| MetaOp::Delete {
                table: TOPIC_PERMISSIONS,
                key,
            })
            .collect();
        self.persist(&ops)?;
        let mut all = self.topic_permissions.write();
        let key = pair(user, vhost);
        match exchange {
            None => {
                all.remove(&key);
            }
            Some(x) => {
                if let Some(list) = all.get_mut(&key) {
                    list.retain(|p| p.exchange != x);
                    if list.is_empty() {
                        all.remove(&key);
                    }
                }
            }
        }
        drop(all);
        self.changed();
        Ok(())
    }

    // --- Vhosts and the bootstrap ---

    /// Forgets every permission, topic permission and limit of `vhost` (it is being deleted).
    pub fn forget_vhost(&self, vhost: &str) -> Result<(), AccessError> {
        let _w = self.writes.lock();
        let mut keys: Vec<(&str, Vec<u8>)> = vec![(VHOST_LIMITS, persist::key(&[vhost]))];
        if let Some(store) = &self.store {
            let in_vhost = |p: &[String]| p.get(1).is_some_and(|v| v == vhost);
            for k in persist::keys_where(store, PERMISSIONS, 2, in_vhost)? {
                keys.push((PERMISSIONS, k));
            }
            for k in persist::keys_where(store, TOPIC_PERMISSIONS, 3, in_vhost)? {
                keys.push((TOPIC_PERMISSIONS, k));
            }
        }
        let ops: Vec<MetaOp<'_>> = keys
            .iter()
            .map(|(table, key)| MetaOp::Delete { table, key })
            .collect();
        self.persist(&ops)?;
        self.permissions.write().retain(|(_, v), _| v != vhost);
        self.topic_permissions
            .write()
            .retain(|(_, v), _| v != vhost);
        self.vhost_limits.write().remove(vhost);
        self.changed();
        Ok(())
    }

    /// Whether the first start's default user and vhost were created (ever, on this store).
    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped.load(Ordering::Acquire)
    }

    /// Records that the bootstrap happened, so that it never happens again (even if every
    /// user is deleted later, as RabbitMQ).
    pub fn mark_bootstrapped(&self) -> Result<(), AccessError> {
        self.persist(&[MetaOp::Put {
            table: persist::ACCESS,
            key: persist::BOOTSTRAPPED,
            value: &[],
        }])?;
        self.bootstrapped.store(true, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
