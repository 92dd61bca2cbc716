//! What a connected user may do: the user's permissions and topic permissions in the
//! connection's vhost, compiled once per connection and checked by both protocol adapters.
//!
//! The checks follow RabbitMQ's (`rabbit_channel.erl`, `rabbit_access_control.erl`,
//! `rabbit_mqtt_processor.erl`): a resource is an exchange or a queue, checked under its name
//! (the default exchange as `amq.default`); a topic check applies only to topic exchanges and
//! matches the routing or binding key. A refusal carries RabbitMQ's text and is logged once,
//! here, with the user, the vhost, the resource and the permission that was missing.
//!
//! Caching: an [`Authz`] is compiled when the connection opens and again only when
//! [`AccessControl::generation`] moves (a permission or topic permission changed anywhere):
//! [`Authz::refresh`] is one atomic load. The three permission regexes of a user in a vhost
//! are compiled once per generation and shared by all of that user's connections
//! ([`Grants`]): compiled per connection they cost about 40 KB each (docs/performance.md,
//! "Idle connections"). So is the whole [`Authz`] when the user's topic permissions in the
//! vhost do not name `{client_id}` (then nothing in it depends on the connection): ~200 bytes
//! per idle connection. RabbitMQ caches per channel instead, until the
//! channel closes (or a tick for expiring backends); we re-check on the next operation after a
//! change, which is stricter.

use pigeon_broker::access::AccessControl;
use pigeon_broker::permission::{resource_name, Access, Grant, TopicGrant, TopicVars};
use pigeon_broker::{Exchange, ExchangeKind};
use std::collections::HashMap;
use std::sync::{Arc, Weak};

/// The compiled permissions of every (user, vhost) that has connections, valid for one
/// [`AccessControl::generation`]: emptied when it moves. One per server.
#[derive(Debug, Default)]
pub struct Grants {
    inner: parking_lot::Mutex<GrantsAt>,
}

/// (user, vhost).
type UserVHost = (Arc<str>, Arc<str>);

#[derive(Debug, Default)]
struct GrantsAt {
    generation: u64,
    /// `None`: no (usable) permission in the vhost.
    by: HashMap<UserVHost, Option<Arc<Grant>>>,
    /// The [`Authz`] shared by the user's connections in the vhost, when its topic
    /// permissions do not name `{client_id}`. Weak: the connections own it (and it points
    /// back at the [`Grants`]); a dead entry is replaced at the next connection.
    shared: HashMap<UserVHost, Weak<Authz>>,
}

impl GrantsAt {
    /// Forgets what was compiled at an older generation than `generation`.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            // Entries of an older generation may be stale; entries compiled at a newer one
            // than the caller read are not older than it, so they may be kept either way.
            self.by.clear();
            self.shared.clear();
            self.generation = generation;
        }
    }
}

impl Grants {
    /// `user`'s compiled permissions in `vhost` as of `generation` (read before calling, so
    /// that a change made meanwhile moves it again and the next refresh recompiles).
    fn get(
        at: &mut GrantsAt,
        access: &AccessControl,
        user: &Arc<str>,
        vhost: &Arc<str>,
    ) -> Option<Arc<Grant>> {
        let key = (Arc::clone(user), Arc::clone(vhost));
        if let Some(g) = at.by.get(&key) {
            return g.clone();
        }
        let grant = access
            .permission(user, vhost)
            .and_then(|p| match Grant::new(&p) {
                Ok(g) => Some(Arc::new(g)),
                Err(e) => {
                    // Unusable patterns deny everything rather than allow anything.
                    tracing::error!(user = %user, vhost = %vhost, error = %e, "invalid permission: access denied");
                    None
                }
            });
        at.by.insert(key, grant.clone());
        grant
    }
}

/// The kind of resource a permission is checked on (RabbitMQ's `#resource.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An exchange.
    Exchange,
    /// A queue.
    Queue,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Exchange => "exchange",
            Kind::Queue => "queue",
        }
    }
}

/// A refused operation: RabbitMQ's explanation (without the `ACCESS_REFUSED - ` prefix),
/// already logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// One connection's compiled permissions.
#[derive(Debug)]
pub struct Authz {
    user: Arc<str>,
    vhost: Arc<str>,
    /// The [`AccessControl::generation`] this was compiled at.
    generation: u64,
    /// `None`: no permissions in this vhost (no access at all). Shared by the user's
    /// connections in the vhost.
    grant: Option<Arc<Grant>>,
    /// Where `grant` came from (for [`Authz::refresh`]).
    grants: Arc<Grants>,
    topics: TopicGrant,
}

impl Authz {
    /// Compiles `user`'s permissions in `vhost` (`client_id`: MQTT only, for `{client_id}`),
    /// with a cache of its own (tests; connections use [`Authz::compile_shared`]).
    #[cfg(test)]
    pub fn compile(
        access: &AccessControl,
        user: &str,
        vhost: &str,
        client_id: Option<&str>,
    ) -> Arc<Authz> {
        Authz::compile_shared(&Arc::default(), access, user, vhost, client_id)
    }

    /// `user`'s permissions in `vhost` (`client_id`: MQTT only, for `{client_id}`), shared
    /// through `grants` (the server's) with the user's other connections in the vhost unless
    /// its topic permissions name `{client_id}`.
    pub fn compile_shared(
        grants: &Arc<Grants>,
        access: &AccessControl,
        user: &str,
        vhost: &str,
        client_id: Option<&str>,
    ) -> Arc<Authz> {
        Authz::build(grants, access, Arc::from(user), Arc::from(vhost), client_id)
    }

    fn build(
        grants: &Arc<Grants>,
        access: &AccessControl,
        user: Arc<str>,
        vhost: Arc<str>,
        client_id: Option<&str>,
    ) -> Arc<Authz> {
        // Read the generation first: a change made while we compile moves it again, so the
        // next refresh recompiles rather than keeping a stale grant.
        let generation = access.generation();
        let mut at = grants.inner.lock();
        at.at(generation);
        let key = (Arc::clone(&user), Arc::clone(&vhost));
        if let Some(shared) = at.shared.get(&key).and_then(Weak::upgrade) {
            return shared;
        }
        let grant = Grants::get(&mut at, access, &user, &vhost);
        let perms = access.topic_permissions(&user, &vhost);
        // Without `{client_id}` in a pattern the client id changes nothing that is compiled.
        let per_client = perms
            .iter()
            .any(|p| p.write.contains("{client_id}") || p.read.contains("{client_id}"));
        let vars = TopicVars {
            username: &user,
            vhost: &vhost,
            client_id: if per_client { client_id } else { None },
        };
        let topics = match TopicGrant::new(&perms, &vars) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(user = %user, vhost = %vhost, error = %e, "invalid topic permission: topic access denied");
                deny_all_topics(&perms)
            }
        };
        let authz = Arc::new(Authz {
            generation,
            grant,
            grants: Arc::clone(grants),
            topics,
            user,
            vhost,
        });
        if !per_client {
            at.shared.insert(key, Arc::downgrade(&authz));
        }
        authz
    }

    /// Recompiles `this` if permissions changed since it was compiled (one atomic load when
    /// they did not). True if it was recompiled. For a connection without a client id
    /// (AMQP, stream); MQTT's use [`Authz::refresh_for`].
    pub fn refresh(this: &mut Arc<Authz>, access: &AccessControl) -> bool {
        Authz::refresh_for(this, access, None)
    }

    /// [`Authz::refresh`] for an MQTT connection: `client_id` is its client id (not kept in
    /// the `Authz`, which may be shared by connections of other client ids).
    pub fn refresh_for(
        this: &mut Arc<Authz>,
        access: &AccessControl,
        client_id: Option<&str>,
    ) -> bool {
        if access.generation() == this.generation {
            return false;
        }
        *this = Authz::build(
            &Arc::clone(&this.grants),
            access,
            Arc::clone(&this.user),
            Arc::clone(&this.vhost),
            client_id,
        );
        true
    }

    /// The generation it was compiled at (what per-channel caches compare against).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the user has any permission in the vhost (RabbitMQ's `check_vhost_access` of
    /// the internal backend). Refusal text: `access to vhost '/' refused for user 'u'`.
    pub fn check_vhost(&self) -> Result<(), Refused> {
        if self.grant.is_some() {
            return Ok(());
        }
        let text = format!(
            "access to vhost '{}' refused for user '{}'",
            self.vhost, self.user
        );
        tracing::warn!(user = %self.user, vhost = %self.vhost, "access refused: no permissions in the vhost");
        Err(Refused(text))
    }

    /// Whether `access` to the resource is allowed, without logging.
    pub fn allows(&self, access: Access, kind: Kind, name: &str) -> bool {
        let name = match kind {
            Kind::Exchange => resource_name(name),
            Kind::Queue => name,
        };
        self.grant.as_ref().is_some_and(|g| g.allows(access, name))
    }

    /// Checks `access` to an exchange or queue (`rabbit_access_control:check_resource_access`).
    pub fn check(&self, access: Access, kind: Kind, name: &str) -> Result<(), Refused> {
        if self.allows(access, kind, name) {
            return Ok(());
        }
        let name = match kind {
            Kind::Exchange => resource_name(name),
            Kind::Queue => name,
        };
        tracing::warn!(
            user = %self.user,
            vhost = %self.vhost,
            kind = kind.as_str(),
            resource = %name,
            permission = access.as_str(),
            "access refused"
        );
        Err(Refused(format!(
            "{} access to {} '{}' in vhost '{}' refused for user '{}'",
            access.as_str(),
            kind.as_str(),
            name,
            self.vhost,
            self.user
        )))
    }

    /// A passive declare needs any of the three permissions on the resource (RabbitMQ
    /// 4.x, rabbitmq-server#16085: `check_any_resource_access_permitted`). Configure is
    /// reported when none is held, as for a regular declare.
    pub fn check_any(&self, kind: Kind, name: &str) -> Result<(), Refused> {
        if [Access::Read, Access::Write]
            .into_iter()
            .any(|a| self.allows(a, kind, name))
        {
            return Ok(());
        }
        self.check(Access::Configure, kind, name)
    }

    /// Whether any topic permission is set for this user in this vhost (else topic checks
    /// are skipped).
    pub fn has_topic_permissions(&self) -> bool {
        !self.topics.is_empty()
    }

    /// Checks a topic permission: `access` Write with a routing key on publish, Read with a
    /// binding key on bind / subscribe. Only topic exchanges are checked, as RabbitMQ's
    /// `check_topic_authorisation`.
    pub fn check_topic(
        &self,
        access: Access,
        exchange: &Exchange,
        key: &str,
    ) -> Result<(), Refused> {
        if exchange.kind != ExchangeKind::Topic || self.topics.is_empty() {
            return Ok(());
        }
        if self.topics.allows(access, &exchange.name, key) {
            return Ok(());
        }
        tracing::warn!(
            user = %self.user,
            vhost = %self.vhost,
            kind = "topic",
            exchange = %exchange.name,
            key = %key,
            permission = access.as_str(),
            "topic access refused"
        );
        // rabbit_access_control:check_topic_access; rabbit_misc:rs of a topic resource is
        // "'x' in vhost 'v'".
        Err(Refused(format!(
            "{} access to topic '{}' in exchange '{}' in vhost '{}' refused for user '{}'",
            access.as_str(),
            key,
            exchange.name,
            self.vhost,
            self.user
        )))
    }
}

/// Topic grants that refuse every key on the exchanges named in `perms` (used when a
/// pattern does not compile).
fn deny_all_topics(perms: &[pigeon_broker::permission::TopicPermission]) -> TopicGrant {
    let denied: Vec<_> = perms
        .iter()
        .map(|p| pigeon_broker::permission::TopicPermission {
            exchange: p.exchange.clone(),
            write: String::new(),
            read: String::new(),
        })
        .collect();
    // Empty patterns compile (to `^$`), so this cannot fail; fall back to no grant at all.
    TopicGrant::new(&denied, &TopicVars::default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pigeon_broker::permission::{Permission, TopicPermission};

    #[test]
    fn refusal_texts_are_rabbitmqs() {
        let access = AccessControl::new();
        access.set_permission(
            "u",
            "/",
            Permission {
                configure: "^own-".into(),
                write: "".into(),
                read: ".*".into(),
            },
        );
        let a = Authz::compile(&access, "u", "/", None);
        assert!(a.check(Access::Configure, Kind::Queue, "own-q").is_ok());
        assert_eq!(
            a.check(Access::Configure, Kind::Queue, "q"),
            Err(Refused(
                "configure access to queue 'q' in vhost '/' refused for user 'u'".into()
            ))
        );
        assert_eq!(
            a.check(Access::Write, Kind::Exchange, ""),
            Err(Refused(
                "write access to exchange 'amq.default' in vhost '/' refused for user 'u'".into()
            ))
        );
        // Passive: any permission will do.
        assert!(a.check_any(Kind::Queue, "q").is_ok());
        let none = Authz::compile(&access, "other", "/", None);
        assert!(none.check_vhost().is_err());
    }

    #[test]
    fn refresh_follows_the_generation() {
        let access = AccessControl::new();
        let mut a = Authz::compile(&access, "u", "/", None);
        assert!(!Authz::refresh(&mut a, &access));
        assert!(a.check_vhost().is_err());
        access.set_permission("u", "/", Permission::all());
        assert!(Authz::refresh(&mut a, &access));
        assert!(a.check_vhost().is_ok());
        access.set_topic_permission(
            "u",
            "/",
            TopicPermission {
                exchange: "amq.topic".into(),
                write: "^{client_id}\\.".into(),
                read: ".*".into(),
            },
        );
        let mut m = Authz::compile(&access, "u", "/", Some("c1"));
        assert!(!Authz::refresh(&mut m, &access));
        assert!(m.has_topic_permissions());
    }

    #[test]
    fn connections_share_an_authz_unless_it_names_the_client_id() {
        let access = AccessControl::new();
        access.set_permission("u", "/", Permission::all());
        let grants = Arc::default();
        let a = Authz::compile_shared(&grants, &access, "u", "/", Some("c1"));
        let b = Authz::compile_shared(&grants, &access, "u", "/", Some("c2"));
        let amqp = Authz::compile_shared(&grants, &access, "u", "/", None);
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&a, &amqp));
        let other = Authz::compile_shared(&grants, &access, "u", "other", Some("c1"));
        assert!(!Arc::ptr_eq(&a, &other));

        access.set_topic_permission(
            "u",
            "/",
            TopicPermission {
                exchange: "amq.topic".into(),
                write: "^{client_id}\\.".into(),
                read: ".*".into(),
            },
        );
        let topic = Exchange::new(
            "amq.topic",
            ExchangeKind::Topic,
            true,
            false,
            false,
            Default::default(),
        );
        let mut a = a;
        let mut b = b;
        assert!(Authz::refresh_for(&mut a, &access, Some("c1")));
        assert!(Authz::refresh_for(&mut b, &access, Some("c2")));
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(a.check_topic(Access::Write, &topic, "c1.x").is_ok());
        assert!(a.check_topic(Access::Write, &topic, "c2.x").is_err());
        assert!(b.check_topic(Access::Write, &topic, "c2.x").is_ok());
    }
}
