//! How access control is kept in the metadata store: one table per kind of record, written
//! through on every change and read back whole at start.
//!
//! ```text
//! users              name                       -> hash (algorithm byte ++ salt ++ digest, or empty), tags
//! permissions        user, vhost                -> configure, write, read
//! topic_permissions  user, vhost, exchange      -> write, read
//! vhost_limits       vhost                      -> max-connections, max-queues
//! user_limits        user                       -> max-connections, max-channels
//! access             "bootstrapped"             -> (empty): the default user was created once
//! ```
//!
//! Keys are length-prefixed strings (`record::put_bytes`), so that no name needs a separator it
//! cannot contain; values use `record.rs`'s versioned layout.

use super::password::PasswordHash;
use super::users::User;
use super::{UserLimits, VHostLimits};
use crate::permission::{Permission, TopicPermission};
use crate::record::{self, get_bytes, get_string, get_u8, put_bytes};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pigeon_store::{Store, StoreError};
use std::collections::HashMap;

/// Users.
pub const USERS: &str = "users";
/// Vhost permissions.
pub const PERMISSIONS: &str = "permissions";
/// Topic permissions.
pub const TOPIC_PERMISSIONS: &str = "topic_permissions";
/// Vhost limits.
pub const VHOST_LIMITS: &str = "vhost_limits";
/// User limits.
pub const USER_LIMITS: &str = "user_limits";
/// Markers (the bootstrap).
pub const ACCESS: &str = "access";
/// The marker written once the first start created its default user and vhost.
pub const BOOTSTRAPPED: &[u8] = b"bootstrapped";

/// A key of length-prefixed parts.
pub fn key(parts: &[&str]) -> Vec<u8> {
    let mut k = BytesMut::new();
    for p in parts {
        put_bytes(&mut k, p.as_bytes());
    }
    k.to_vec()
}

/// The `n` parts of a key made by [`key`], or `None` if it has other parts.
pub fn split_key(k: &[u8], n: usize) -> Option<Vec<String>> {
    let mut b = Bytes::copy_from_slice(k);
    let parts: Option<Vec<String>> = (0..n).map(|_| get_string(&mut b)).collect();
    parts.filter(|_| b.is_empty())
}

/// The stored value of a user.
pub fn encode_user(u: &User) -> Vec<u8> {
    let mut v = record::begin();
    put_bytes(
        &mut v,
        &u.password
            .as_ref()
            .map(PasswordHash::encode)
            .unwrap_or_default(),
    );
    v.put_u32_le(u.tags.len() as u32);
    for t in &u.tags {
        put_bytes(&mut v, t.as_bytes());
    }
    v.to_vec()
}

fn decode_user(name: String, value: &[u8]) -> Option<User> {
    let mut v = record::open(value)?;
    let hash = get_bytes(&mut v)?;
    let password = if hash.is_empty() {
        None
    } else {
        Some(PasswordHash::decode(&hash)?)
    };
    if v.remaining() < 4 {
        return None;
    }
    let n = v.get_u32_le();
    let tags: Option<Vec<String>> = (0..n).map(|_| get_string(&mut v)).collect();
    Some(User {
        name,
        password,
        tags: tags?,
    })
}

/// The stored value of a permission.
pub fn encode_permission(p: &Permission) -> Vec<u8> {
    let mut v = record::begin();
    for s in [&p.configure, &p.write, &p.read] {
        put_bytes(&mut v, s.as_bytes());
    }
    v.to_vec()
}

/// The stored value of a topic permission (the exchange is in the key).
pub fn encode_topic_permission(p: &TopicPermission) -> Vec<u8> {
    let mut v = record::begin();
    put_bytes(&mut v, p.write.as_bytes());
    put_bytes(&mut v, p.read.as_bytes());
    v.to_vec()
}

fn put_limit(v: &mut BytesMut, limit: Option<u64>) {
    match limit {
        None => v.put_u8(0),
        Some(n) => {
            v.put_u8(1);
            v.put_u64_le(n);
        }
    }
}

fn get_limit(v: &mut Bytes) -> Option<Option<u64>> {
    match get_u8(v)? {
        0 => Some(None),
        1 if v.remaining() >= 8 => Some(Some(v.get_u64_le())),
        _ => None,
    }
}

/// The stored value of a vhost's limits.
pub fn encode_vhost_limits(l: &VHostLimits) -> Vec<u8> {
    let mut v = record::begin();
    put_limit(&mut v, l.max_connections);
    put_limit(&mut v, l.max_queues);
    v.to_vec()
}

/// The stored value of a user's limits.
pub fn encode_user_limits(l: &UserLimits) -> Vec<u8> {
    let mut v = record::begin();
    put_limit(&mut v, l.max_connections);
    put_limit(&mut v, l.max_channels);
    v.to_vec()
}

/// Everything the store holds about access control.
#[derive(Default)]
pub struct Loaded {
    /// Users by name.
    pub users: HashMap<String, User>,
    /// Permissions by (user, vhost).
    pub permissions: HashMap<(String, String), Permission>,
    /// Topic permissions by (user, vhost).
    pub topic_permissions: HashMap<(String, String), Vec<TopicPermission>>,
    /// Vhost limits.
    pub vhost_limits: HashMap<String, VHostLimits>,
    /// User limits.
    pub user_limits: HashMap<String, UserLimits>,
    /// The bootstrap marker was found.
    pub bootstrapped: bool,
}

fn skip(what: &str) {
    tracing::warn!("skipping an unreadable {what} record");
}

/// Reads every access-control record (at start).
pub fn load(store: &Store) -> Result<Loaded, StoreError> {
    let mut out = Loaded {
        bootstrapped: store.meta_get(ACCESS, BOOTSTRAPPED)?.is_some(),
        ..Loaded::default()
    };
    for (k, v) in store.meta_scan(USERS)? {
        let user = split_key(&k, 1)
            .and_then(|mut p| p.pop())
            .and_then(|name| decode_user(name, &v));
        match user {
            Some(u) => {
                out.users.insert(u.name.clone(), u);
            }
            None => skip("user"),
        }
    }
    for (k, v) in store.meta_scan(PERMISSIONS)? {
        let parsed = split_key(&k, 2)
            .zip(record::open(&v))
            .and_then(|(p, mut v)| {
                let perm = Permission {
                    configure: get_string(&mut v)?,
                    write: get_string(&mut v)?,
                    read: get_string(&mut v)?,
                };
                let [user, vhost]: [String; 2] = p.try_into().ok()?;
                Some(((user, vhost), perm))
            });
        match parsed {
            Some((k, p)) => {
                out.permissions.insert(k, p);
            }
            None => skip("permission"),
        }
    }
    for (k, v) in store.meta_scan(TOPIC_PERMISSIONS)? {
        let parsed = split_key(&k, 3)
            .zip(record::open(&v))
            .and_then(|(p, mut v)| {
                let [user, vhost, exchange]: [String; 3] = p.try_into().ok()?;
                let perm = TopicPermission {
                    exchange,
                    write: get_string(&mut v)?,
                    read: get_string(&mut v)?,
                };
                Some(((user, vhost), perm))
            });
        match parsed {
            Some((k, p)) => out.topic_permissions.entry(k).or_default().push(p),
            None => skip("topic permission"),
        }
    }
    for (k, v) in store.meta_scan(VHOST_LIMITS)? {
        let parsed = split_key(&k, 1)
            .zip(record::open(&v))
            .and_then(|(mut p, mut v)| {
                let limits = VHostLimits {
                    max_connections: get_limit(&mut v)?,
                    max_queues: get_limit(&mut v)?,
                };
                Some((p.pop()?, limits))
            });
        match parsed {
            Some((k, l)) => {
                out.vhost_limits.insert(k, l);
            }
            None => skip("vhost limits"),
        }
    }
    for (k, v) in store.meta_scan(USER_LIMITS)? {
        let parsed = split_key(&k, 1)
            .zip(record::open(&v))
            .and_then(|(mut p, mut v)| {
                let limits = UserLimits {
                    max_connections: get_limit(&mut v)?,
                    max_channels: get_limit(&mut v)?,
                };
                Some((p.pop()?, limits))
            });
        match parsed {
            Some((k, l)) => {
                out.user_limits.insert(k, l);
            }
            None => skip("user limits"),
        }
    }
    Ok(out)
}

/// The keys of `table` (of `parts` parts each) that `pick` chooses: the rows of one user or of
/// one vhost, including any the memory does not know of (unreadable values).
pub fn keys_where(
    store: &Store,
    table: &str,
    parts: usize,
    pick: impl Fn(&[String]) -> bool,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .meta_scan(table)?
        .into_iter()
        .filter(|(k, _)| split_key(k, parts).is_some_and(|p| pick(&p)))
        .map(|(k, _)| k)
        .collect())
}
