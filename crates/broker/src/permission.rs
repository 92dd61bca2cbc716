//! Permissions as RabbitMQ checks them: per user and vhost, three regular expressions
//! (configure, write, read) matched against resource names; per user, vhost and topic exchange,
//! two more (write, read) matched against routing keys.
//!
//! This file holds the records ([`Permission`], [`TopicPermission`]) and their compiled forms
//! ([`Grant`], [`TopicGrant`]). Where they are kept (the metadata store) is `access/`; where
//! they are checked is each protocol adapter, which compiles a user's grant once per connection
//! (or channel) so that the publish path costs a regex match only when the resource changes.
//!
//! Matching follows `rabbit_auth_backend_internal`: a regex matches anywhere in the name
//! (unanchored, as Erlang's `re:run`), and an empty pattern means `^$` (it matches only the
//! empty name, so it denies every real resource). The default exchange is checked under the
//! name `amq.default`.

use regex::Regex;

/// What an operation needs on a resource (RabbitMQ's access-control table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Create or delete the resource, or alter its behaviour (declare, delete).
    Configure,
    /// Inject messages into it (publish to an exchange, bind a queue as destination).
    Write,
    /// Take messages from it (consume, get, purge a queue; bind from an exchange).
    Read,
}

impl Access {
    /// The word RabbitMQ logs and reports for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Configure => "configure",
            Access::Write => "write",
            Access::Read => "read",
        }
    }
}

/// A user's permissions in one vhost, as `rabbitmqctl set_permissions` sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Regex of the resources the user may configure.
    pub configure: String,
    /// Regex of the resources the user may write to.
    pub write: String,
    /// Regex of the resources the user may read from.
    pub read: String,
}

impl Permission {
    /// Every resource, every access (`".*" ".*" ".*"`).
    pub fn all() -> Permission {
        Permission {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// A user's topic permission on one topic exchange of one vhost, as `rabbitmqctl
/// set_topic_permissions` sets it. The patterns may use `{username}`, `{vhost}` and
/// `{client_id}` (MQTT only), expanded when checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    /// The topic exchange it applies to.
    pub exchange: String,
    /// Regex of the routing keys the user may publish with.
    pub write: String,
    /// Regex of the binding keys the user may bind (subscribe) with.
    pub read: String,
}

/// Why a permission pattern could not be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid permission pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// The regex engine's complaint.
    pub reason: String,
}

fn compile(pattern: &str) -> Result<Regex, PatternError> {
    // rabbit_auth_backend_internal: <<"">> -> <<"^$">>.
    let effective = if pattern.is_empty() { "^$" } else { pattern };
    Regex::new(effective).map_err(|e| PatternError {
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

/// A [`Permission`] compiled for checking.
#[derive(Debug, Clone)]
pub struct Grant {
    configure: Regex,
    write: Regex,
    read: Regex,
}

impl Grant {
    /// Compiles the three patterns.
    pub fn new(p: &Permission) -> Result<Grant, PatternError> {
        Ok(Grant {
            configure: compile(&p.configure)?,
            write: compile(&p.write)?,
            read: compile(&p.read)?,
        })
    }

    /// Whether `access` to the resource called `name` is allowed (the default exchange is
    /// `amq.default`: see [`resource_name`]).
    pub fn allows(&self, access: Access, name: &str) -> bool {
        let re = match access {
            Access::Configure => &self.configure,
            Access::Write => &self.write,
            Access::Read => &self.read,
        };
        re.is_match(name)
    }
}

/// The name a resource is checked under: the default exchange (`""`) is `amq.default`.
pub fn resource_name(exchange: &str) -> &str {
    if exchange.is_empty() {
        "amq.default"
    } else {
        exchange
    }
}

/// The values `{username}`, `{vhost}` and `{client_id}` expand to in topic permissions.
#[derive(Debug, Clone, Default)]
pub struct TopicVars<'a> {
    /// The user's name.
    pub username: &'a str,
    /// The vhost's name.
    pub vhost: &'a str,
    /// The MQTT client id (`None` for AMQP: the variable then matches nothing).
    pub client_id: Option<&'a str>,
}

/// A user's [`TopicPermission`]s in one vhost, compiled for one connection (the variables are
/// expanded once, at compile time: they do not change while the connection lives).
#[derive(Debug, Clone, Default)]
pub struct TopicGrant {
    by_exchange: Vec<(String, Regex, Regex)>,
}

impl TopicGrant {
    /// Compiles the patterns with the connection's variables expanded. A variable's value is
    /// escaped before it goes into the pattern, so a user called `a.b` does not match `axb`
    /// (RabbitMQ substitutes it raw; escaping only ever narrows what matches).
    pub fn new(
        perms: &[TopicPermission],
        vars: &TopicVars<'_>,
    ) -> Result<TopicGrant, PatternError> {
        let expand = |pattern: &str| {
            let client_id = match vars.client_id {
                Some(c) => regex::escape(c),
                // An AMQP connection has no client id: `{client_id}` can match nothing.
                None => "[^\\s\\S]".to_string(),
            };
            pattern
                .replace("{username}", &regex::escape(vars.username))
                .replace("{vhost}", &regex::escape(vars.vhost))
                .replace("{client_id}", &client_id)
        };
        let mut by_exchange = Vec::with_capacity(perms.len());
        for p in perms {
            let write = compile(&expand(&p.write)).map_err(|e| PatternError {
                pattern: p.write.clone(),
                ..e
            })?;
            let read = compile(&expand(&p.read)).map_err(|e| PatternError {
                pattern: p.read.clone(),
                ..e
            })?;
            by_exchange.push((p.exchange.clone(), write, read));
        }
        Ok(TopicGrant { by_exchange })
    }

    /// Whether `access` (write: publish with `routing_key`; read: bind or subscribe with it)
    /// is allowed on the topic exchange `exchange`. An exchange without a topic permission
    /// allows everything, as RabbitMQ's. Only `Write` and `Read` are meaningful here.
    pub fn allows(&self, access: Access, exchange: &str, routing_key: &str) -> bool {
        match self.by_exchange.iter().find(|(e, _, _)| e == exchange) {
            None => true,
            Some((_, write, read)) => match access {
                Access::Write => write.is_match(routing_key),
                Access::Read => read.is_match(routing_key),
                Access::Configure => true,
            },
        }
    }

    /// Whether any topic permission is set (when none is, checks can be skipped).
    pub fn is_empty(&self) -> bool {
        self.by_exchange.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(c: &str, w: &str, r: &str) -> Permission {
        Permission {
            configure: c.into(),
            write: w.into(),
            read: r.into(),
        }
    }

    #[test]
    fn patterns_match_anywhere_and_empty_denies() {
        let g = Grant::new(&perm("", "^amq\\.", "queue")).unwrap();
        assert!(!g.allows(Access::Configure, "anything"));
        assert!(g.allows(Access::Write, "amq.default"));
        assert!(!g.allows(Access::Write, "x.amq.y"));
        // Unanchored, as Erlang's re:run.
        assert!(g.allows(Access::Read, "my-queue-1"));
        assert!(!g.allows(Access::Read, "other"));
    }

    #[test]
    fn default_exchange_is_checked_as_amq_default() {
        assert_eq!(resource_name(""), "amq.default");
        assert_eq!(resource_name("x"), "x");
    }

    #[test]
    fn invalid_pattern_is_an_error() {
        assert!(Grant::new(&perm("(", ".*", ".*")).is_err());
    }

    #[test]
    fn topic_permissions_expand_variables() {
        let perms = [TopicPermission {
            exchange: "amq.topic".into(),
            write: "^{username}\\.{client_id}\\.".into(),
            read: "^{vhost}\\.".into(),
        }];
        let vars = TopicVars {
            username: "a.b",
            vhost: "v1",
            client_id: Some("c1"),
        };
        let g = TopicGrant::new(&perms, &vars).unwrap();
        assert!(g.allows(Access::Write, "amq.topic", "a.b.c1.x"));
        assert!(!g.allows(Access::Write, "amq.topic", "axb.c1.x"));
        assert!(!g.allows(Access::Write, "amq.topic", "a.b.c2.x"));
        assert!(g.allows(Access::Read, "amq.topic", "v1.#"));
        assert!(!g.allows(Access::Read, "amq.topic", "v2.#"));
        // Other exchanges are not restricted.
        assert!(g.allows(Access::Write, "other", "anything"));
        // Without a client id, {client_id} matches nothing.
        let amqp = TopicGrant::new(
            &perms,
            &TopicVars {
                client_id: None,
                ..vars
            },
        )
        .unwrap();
        assert!(!amqp.allows(Access::Write, "amq.topic", "a.b.c1.x"));
    }
}
