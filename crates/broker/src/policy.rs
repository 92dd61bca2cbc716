//! Policies: named, per-vhost settings applied to the queues and exchanges whose names match a
//! regular expression, as RabbitMQ's `rabbitmqctl set_policy` does. One policy applies to an
//! entity: the matching one with the highest priority. Declare arguments win over it.

use crate::error::{BrokerError, Result};
use crate::value::Table;
use regex::Regex;

/// Which entities a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    /// Queues only.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Both.
    All,
}

impl ApplyTo {
    /// Parses RabbitMQ's names (`queues`, `exchanges`, `all`).
    pub fn parse(s: &str) -> Option<ApplyTo> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }
}

/// Keys a policy definition may set.
const KEYS: &[&str] = &[
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "delivery-limit",
    "alternate-exchange",
];

/// A policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its name (setting a policy with the same name replaces it).
    pub name: String,
    /// Regular expression matched against entity names.
    pub pattern: String,
    /// What it applies to.
    pub apply_to: ApplyTo,
    /// Higher wins when several match.
    pub priority: i32,
    /// The settings (`message-ttl`, `dead-letter-exchange`, ...).
    pub definition: Table,
}

struct Compiled {
    policy: Policy,
    regex: Regex,
}

/// The policies of a vhost.
#[derive(Default)]
pub struct Policies {
    list: Vec<Compiled>,
}

impl Policies {
    /// Adds or replaces a policy; an invalid pattern or an unknown key is refused.
    pub fn set(&mut self, policy: Policy) -> Result<()> {
        let regex = Regex::new(&policy.pattern)
            .map_err(|e| BrokerError::PreconditionFailed(format!("invalid policy pattern: {e}")))?;
        if let Some((key, _)) = policy.definition.iter().find(|(k, _)| !KEYS.contains(k)) {
            return Err(BrokerError::PreconditionFailed(format!(
                "unknown policy key '{key}'"
            )));
        }
        // Values are checked now, as RabbitMQ's set_policy does: a bad one would otherwise make
        // every declaration of a matching queue fail.
        crate::queue::settings::QueueSettings::resolve(&Table::new(), Some(&policy.definition))?;
        if let Some(v) = policy.definition.get("alternate-exchange") {
            if v.as_str().is_none() {
                return Err(BrokerError::PreconditionFailed(
                    "invalid policy value for 'alternate-exchange': expected a string".into(),
                ));
            }
        }
        self.list.retain(|c| c.policy.name != policy.name);
        self.list.push(Compiled { policy, regex });
        Ok(())
    }

    /// Removes a policy; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|c| c.policy.name != name);
        before != self.list.len()
    }

    /// The policies, in the order they were set.
    pub fn list(&self) -> Vec<Policy> {
        self.list.iter().map(|c| c.policy.clone()).collect()
    }

    fn best(&self, name: &str, queue: bool) -> Option<&Table> {
        self.list
            .iter()
            .filter(|c| match c.policy.apply_to {
                ApplyTo::All => true,
                ApplyTo::Queues => queue,
                ApplyTo::Exchanges => !queue,
            })
            .filter(|c| c.regex.is_match(name))
            .max_by_key(|c| c.policy.priority)
            .map(|c| &c.policy.definition)
    }

    /// The definition that applies to the queue `name`.
    pub fn for_queue(&self, name: &str) -> Option<&Table> {
        self.best(name, true)
    }

    /// The definition that applies to the exchange `name`.
    pub fn for_exchange(&self, name: &str) -> Option<&Table> {
        self.best(name, false)
    }
}
