//! Vhosts created and deleted at runtime (`rabbitmqctl add_vhost` / `delete_vhost`), their
//! record in the store (table `vhosts`), and the first start's bootstrap (RabbitMQ's
//! `default_user`, `default_pass`, `default_vhost`, `default_user_tags`,
//! `default_permissions`).
//!
//! Deleting a vhost removes everything in it, in memory and on disk: queues (their consumers
//! are cancelled, their logs deleted), exchanges, bindings, retained messages, and the
//! permissions, topic permissions and limits that name it. Connections are the server's: the
//! vhost is marked deleted ([`VHost::is_deleted`]) and the hooks registered with
//! [`Broker::on_deleted`] are called, so that the server closes its connections (RabbitMQ:
//! 320 CONNECTION_FORCED "vhost 'x' is deleted").
//!
//! The vhost's own record goes first: a crash half-way leaves records of a vhost that no
//! longer exists, which [`Broker::open`](crate::Broker::open) deletes at the next start.

use super::{AccessError, User};
use crate::permission::Permission;
use crate::record::{self, get_string, put_bytes};
use crate::vhost::VHost;
use crate::{durable, Broker};
use bytes::{Buf, BufMut};
use pigeon_store::{Store, StoreError};
use std::sync::Arc;

/// The table of vhosts (key: the name).
pub const VHOSTS: &str = "vhosts";

/// What describes a vhost beyond its name (the management UI shows both).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VHostInfo {
    /// Free text.
    pub description: String,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// The queue type of a declare that names none (RabbitMQ 3.11+ vhost metadata
    /// `default_queue_type`: `classic`, `quorum` or `stream`; `None`: classic). See
    /// `vhost/default_type.rs`.
    pub default_queue_type: Option<String>,
}

/// What was deleted, as told to the hooks of [`Broker::on_deleted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// A vhost: its connections must close.
    VHost(String),
    /// A user: its connections must close (RabbitMQ: "user 'x' is deleted").
    User(String),
}

/// A hook called after a vhost or user is deleted.
pub type DeletedHook = Arc<dyn Fn(&Deleted) + Send + Sync>;

/// The user the first start creates.
#[derive(Debug, Clone)]
pub struct DefaultUser {
    /// `default_user`.
    pub name: String,
    /// `default_pass`.
    pub password: String,
    /// `default_user_tags`.
    pub tags: Vec<String>,
    /// `default_permissions` (configure, write, read) in the default vhost.
    pub permission: Permission,
}

/// What the first start on an empty data directory creates.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// `default_vhost`.
    pub vhost: String,
    /// The administrator, or none (`default_user = ""`).
    pub user: Option<DefaultUser>,
}

fn encode_info(info: &VHostInfo) -> Vec<u8> {
    let mut v = record::begin();
    put_bytes(&mut v, info.description.as_bytes());
    v.put_u32_le(info.tags.len() as u32);
    for t in &info.tags {
        put_bytes(&mut v, t.as_bytes());
    }
    // Appended later (quorumone): older records end after the tags.
    if let Some(t) = &info.default_queue_type {
        put_bytes(&mut v, t.as_bytes());
    }
    v.to_vec()
}

fn decode_info(value: &[u8]) -> Option<VHostInfo> {
    let mut v = record::open(value)?;
    let description = get_string(&mut v)?;
    if v.remaining() < 4 {
        return None;
    }
    let n = v.get_u32_le();
    let tags: Option<Vec<String>> = (0..n).map(|_| get_string(&mut v)).collect();
    let tags = tags?;
    let default_queue_type = if v.has_remaining() {
        Some(get_string(&mut v)?)
    } else {
        None
    };
    Some(VHostInfo {
        description,
        tags,
        default_queue_type,
    })
}

/// The vhosts recorded in `store`.
pub fn load(store: &Store) -> Result<Vec<(String, VHostInfo)>, StoreError> {
    let mut out = Vec::new();
    for (k, v) in store.meta_scan(VHOSTS)? {
        let Ok(name) = String::from_utf8(k) else {
            tracing::warn!("skipping a vhost record with an unreadable name");
            continue;
        };
        let info = decode_info(&v).unwrap_or_else(|| {
            tracing::warn!(vhost = %name, "unreadable vhost description, using none");
            VHostInfo::default()
        });
        out.push((name, info));
    }
    Ok(out)
}

/// Records a vhost.
pub fn put(store: &Store, name: &str, info: &VHostInfo) -> Result<(), StoreError> {
    store.meta_put(VHOSTS, name.as_bytes(), &encode_info(info))
}

impl Broker {
    /// `rabbitmqctl add_vhost`: creates the vhost, or updates the description and tags of an
    /// existing one (as the HTTP API's `PUT /api/vhosts/{name}`). Durable when it returns.
    pub fn add_vhost(&self, name: &str, info: VHostInfo) -> Result<Arc<VHost>, AccessError> {
        if name.is_empty() {
            return Err(AccessError::InvalidName(
                "a vhost name cannot be empty".into(),
            ));
        }
        // One writer at a time, so that two racing adds create one vhost.
        let _w = self.vhost_writes.lock();
        if let Some(store) = &self.store {
            put(store, name, &info)?;
        }
        if let Some(existing) = self.vhost(name) {
            existing.set_info(info);
            return Ok(existing);
        }
        let vhost = VHost::with_store(name, self.store.clone(), self.paging);
        vhost.set_info(info);
        self.vhosts
            .write()
            .insert(name.to_string(), Arc::clone(&vhost));
        tracing::info!(vhost = %name, "vhost created");
        Ok(vhost)
    }

    /// `rabbitmqctl delete_vhost`: removes the vhost and everything in it, in memory and on
    /// disk, and tells the [`Broker::on_deleted`] hooks (which close its connections). False if
    /// there was no such vhost.
    pub fn delete_vhost(&self, name: &str) -> Result<bool, AccessError> {
        {
            // Held to the end: a vhost of the same name added meanwhile would lose its
            // records to the deletion below.
            let _w = self.vhost_writes.lock();
            if self.vhost(name).is_none() {
                return Ok(false);
            }
            if let Some(store) = &self.store {
                store.meta_delete(VHOSTS, name.as_bytes())?;
            }
            let Some(vhost) = self.vhosts.write().remove(name) else {
                return Ok(false);
            };
            let queues = vhost.close();
            if let Some(store) = &self.store {
                durable::delete_vhost(store, name);
            }
            self.access().forget_vhost(name)?;
            self.parameters().forget_vhost(name)?;
            if let Some(store) = &self.store {
                crate::policy::persist::delete_vhost(store, name)?;
            }
            tracing::info!(vhost = %name, queues, "vhost deleted");
        }
        self.notify(&Deleted::VHost(name.to_string()));
        Ok(true)
    }

    /// The description and tags of a vhost.
    pub fn vhost_info(&self, name: &str) -> Option<VHostInfo> {
        self.vhost(name).map(|v| v.info())
    }

    /// `rabbitmqctl delete_user`, telling the [`Broker::on_deleted`] hooks (which close the
    /// user's connections).
    pub fn delete_user(&self, name: &str) -> Result<bool, AccessError> {
        let deleted = self.access().delete_user(name)?;
        if deleted {
            tracing::info!(user = %name, "user deleted");
            self.notify(&Deleted::User(name.to_string()));
        }
        Ok(deleted)
    }

    /// `rabbitmqctl set_permissions`: the user and the vhost must exist.
    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        permission: Permission,
    ) -> Result<(), AccessError> {
        self.check_user_and_vhost(user, vhost)?;
        self.access().try_set_permission(user, vhost, permission)
    }

    /// Refuses with the missing one unless both exist.
    pub fn check_user_and_vhost(&self, user: &str, vhost: &str) -> Result<(), AccessError> {
        if self.access().user(user).is_none() {
            return Err(AccessError::NoSuchUser(user.to_string()));
        }
        if self.vhost(vhost).is_none() {
            return Err(AccessError::NoSuchVHost(vhost.to_string()));
        }
        Ok(())
    }

    /// Registers a hook called after each deletion of a vhost or user (the server closes the
    /// connections concerned). Hooks run on the deleting thread and must not block.
    pub fn on_deleted(&self, hook: DeletedHook) {
        self.deleted_hooks.write().push(hook);
    }

    fn notify(&self, what: &Deleted) {
        let hooks: Vec<DeletedHook> = self.deleted_hooks.read().clone();
        for hook in hooks {
            hook(what);
        }
    }

    /// The first start on an empty data directory (or in memory): creates the default vhost
    /// and, unless there is none, the default user with its permissions there, then records
    /// that this happened so that it never happens again (RabbitMQ seeds its database once,
    /// too: deleting `guest` later does not bring it back). Returns whether it ran.
    pub fn bootstrap(&self, b: &Bootstrap) -> Result<bool, AccessError> {
        if self.access().is_bootstrapped() {
            return Ok(false);
        }
        self.add_vhost(
            &b.vhost,
            VHostInfo {
                description: "Default virtual host".into(),
                tags: Vec::new(),
                default_queue_type: None,
            },
        )?;
        if let Some(u) = &b.user {
            let user = User::with_password(&u.name, &u.password, u.tags.clone());
            self.access().put_user(user)?;
            self.access()
                .try_set_permission(&u.name, &b.vhost, u.permission.clone())?;
            tracing::info!(user = %u.name, vhost = %b.vhost, "created the default user");
        }
        self.access().mark_bootstrapped()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_info_round_trips() {
        let info = VHostInfo {
            description: "prod".into(),
            tags: vec!["a".into(), "b".into()],
            default_queue_type: None,
        };
        assert_eq!(decode_info(&encode_info(&info)), Some(info.clone()));
        let quorum = VHostInfo {
            default_queue_type: Some("quorum".into()),
            ..info
        };
        assert_eq!(decode_info(&encode_info(&quorum)), Some(quorum));
        assert_eq!(decode_info(b"\x07"), None);
    }
}
