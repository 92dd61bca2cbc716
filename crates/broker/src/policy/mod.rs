//! Policies: named, per-vhost settings applied to the queues and exchanges whose names match a
//! regular expression, as RabbitMQ's `rabbitmqctl set_policy` does. One policy applies to an
//! entity: the matching one with the highest priority. Where a queue's declare arguments set
//! the same key, the lower value wins for the numeric limits and the argument for the others
//! (`queue/settings.rs`, after rabbit_amqqueue_process `process_args_policy`).
//!
//! Operator policies (`rabbitmqctl set_operator_policy`) are a second, independent set, meant
//! for operators to cap what users ask for: they take a few numeric keys only, and the lower of
//! the policy's (or argument's) value and the operator policy's wins (rabbit_policies.erl
//! `merge_policy_value`: `min`). `persist.rs` keeps both in the metadata store; `validate.rs`
//! checks definitions as `rabbit_policy:validation/3` does.

pub mod persist;
mod validate;

pub use validate::PolicyError;

use crate::value::{Table, Value};
use regex::Regex;

/// Which entities a policy applies to (RabbitMQ 3.12+'s `apply-to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    /// Queues of every type.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Both.
    All,
    /// Classic queues only (not streams).
    ClassicQueues,
    /// Quorum queues only: Pigeon has none, so such a policy matches nothing yet.
    QuorumQueues,
    /// Streams only.
    Streams,
}

impl ApplyTo {
    /// Parses RabbitMQ's names (`queues`, `classic_queues`, `quorum_queues`, `streams`,
    /// `exchanges`, `all`).
    pub fn parse(s: &str) -> Option<ApplyTo> {
        match s {
            "queues" => Some(ApplyTo::Queues),
            "classic_queues" => Some(ApplyTo::ClassicQueues),
            "quorum_queues" => Some(ApplyTo::QuorumQueues),
            "streams" => Some(ApplyTo::Streams),
            "exchanges" => Some(ApplyTo::Exchanges),
            "all" => Some(ApplyTo::All),
            _ => None,
        }
    }

    /// RabbitMQ's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::QuorumQueues => "quorum_queues",
            ApplyTo::Streams => "streams",
        }
    }

    /// Whether a policy with this `apply-to` may apply to `target` (rabbit_policy
    /// `is_applicable`: a queue type's own name, `queues` or `all`).
    fn reaches(self, target: Target) -> bool {
        matches!(
            (self, target),
            (ApplyTo::All, _)
                | (ApplyTo::Exchanges, Target::Exchange)
                | (ApplyTo::Queues, Target::ClassicQueue | Target::Stream)
                | (ApplyTo::ClassicQueues, Target::ClassicQueue)
                | (ApplyTo::Streams, Target::Stream)
        )
    }
}

/// What a policy is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Exchange,
    ClassicQueue,
    Stream,
}

/// A policy or an operator policy (they differ in the keys they take and in how they apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// `rabbitmqctl set_policy`.
    #[default]
    Policy,
    /// `rabbitmqctl set_operator_policy`.
    Operator,
}

/// A policy.
#[derive(Debug, Clone, PartialEq)]
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

impl Policy {
    /// The keys of its definition that RabbitMQ knows but Pigeon does not act on (classic
    /// mirroring, federation, quorum and stream settings...): kept, exported, without effect.
    pub fn inert_keys(&self) -> Vec<&str> {
        self.definition
            .iter()
            .map(|(k, _)| k)
            .filter(|k| validate::is_inert(k))
            .collect()
    }
}

/// A policy whose pattern is compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    policy: Policy,
    regex: Regex,
}

impl Compiled {
    /// Checks `policy` as RabbitMQ would before storing it: its pattern, and each key of its
    /// definition against what a policy of `kind` may set.
    pub fn new(kind: PolicyKind, policy: Policy) -> Result<Compiled, PolicyError> {
        let regex = validate::check(kind, &policy)?;
        Ok(Compiled { policy, regex })
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// The policies (or operator policies) of a vhost.
#[derive(Default)]
pub struct Policies {
    list: Vec<Compiled>,
}

impl Policies {
    /// Adds or replaces a checked policy.
    pub fn insert(&mut self, compiled: Compiled) {
        if let Some(slot) = self
            .list
            .iter_mut()
            .find(|c| c.policy.name == compiled.policy.name)
        {
            *slot = compiled;
        } else {
            self.list.push(compiled);
        }
    }

    /// Removes a policy; returns whether it existed.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|c| c.policy.name != name);
        before != self.list.len()
    }

    /// The policy called `name`.
    pub fn get(&self, name: &str) -> Option<Policy> {
        self.list
            .iter()
            .find(|c| c.policy.name == name)
            .map(|c| c.policy.clone())
    }

    /// The policies, in the order they were first set.
    pub fn list(&self) -> Vec<Policy> {
        self.list.iter().map(|c| c.policy.clone()).collect()
    }

    /// The matching policy with the highest priority (RabbitMQ: `match_all` sorted by
    /// priority, first wins; among equals the first set).
    fn best(&self, name: &str, target: Target) -> Option<&Policy> {
        let mut best: Option<&Compiled> = None;
        for c in &self.list {
            if c.policy.apply_to.reaches(target)
                && best.is_none_or(|b| c.policy.priority > b.policy.priority)
                && c.regex.is_match(name)
            {
                best = Some(c);
            }
        }
        best.map(|c| &c.policy)
    }

    /// The policy that applies to the classic queue `name`.
    pub fn policy_for_queue(&self, name: &str) -> Option<&Policy> {
        self.best(name, Target::ClassicQueue)
    }

    /// The policy that applies to the queue `name`, a stream or not.
    pub fn policy_for_queue_of(&self, name: &str, stream: bool) -> Option<&Policy> {
        let target = if stream {
            Target::Stream
        } else {
            Target::ClassicQueue
        };
        self.best(name, target)
    }

    /// The definition that applies to the queue `name`, a stream or not.
    pub fn for_queue_of(&self, name: &str, stream: bool) -> Option<&Table> {
        self.policy_for_queue_of(name, stream)
            .map(|p| &p.definition)
    }

    /// The policy that applies to the exchange `name`.
    pub fn policy_for_exchange(&self, name: &str) -> Option<&Policy> {
        self.best(name, Target::Exchange)
    }

    /// The definition that applies to the classic queue `name`.
    pub fn for_queue(&self, name: &str) -> Option<&Table> {
        self.policy_for_queue(name).map(|p| &p.definition)
    }

    /// The definition that applies to the exchange `name`.
    pub fn for_exchange(&self, name: &str) -> Option<&Table> {
        self.policy_for_exchange(name).map(|p| &p.definition)
    }
}

/// The keys an operator policy may set; for each, the lower value wins when both the policy
/// (or a declare argument) and the operator policy set it (rabbit_policies.erl: the
/// `operator_policy_validator` and `policy_merge_strategy` registrations).
pub const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// The definition in effect for an entity with `policy` and `operator` matching it
/// (rabbit_policy.erl `merge_operator_definitions`): every key of both, the lower value where
/// both set one of [`OPERATOR_KEYS`], the policy's value for any other key both set.
pub fn merge_operator(policy: Option<&Table>, operator: Option<&Table>) -> Table {
    let mut out: Vec<(String, Value)> = policy.map(|p| p.0.clone()).unwrap_or_default();
    for (key, op) in operator.map(|t| t.0.as_slice()).unwrap_or_default() {
        match out.iter_mut().find(|(k, _)| k == key) {
            None => out.push((key.clone(), op.clone())),
            Some((_, mine)) if OPERATOR_KEYS.contains(&key.as_str()) => {
                if let (Some(a), Some(b)) = (mine.as_i64(), op.as_i64()) {
                    if b < a {
                        *mine = op.clone();
                    }
                }
            }
            Some(_) => {}
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Table(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(entries: &[(&str, i64)]) -> Table {
        Table(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Int(*v)))
                .collect(),
        )
    }

    fn policy(name: &str, pattern: &str, priority: i32, def: Table) -> Policy {
        Policy {
            name: name.into(),
            pattern: pattern.into(),
            apply_to: ApplyTo::All,
            priority,
            definition: def,
        }
    }

    #[test]
    fn operator_values_cap_policy_values() {
        let merged = merge_operator(
            Some(&t(&[("max-length", 10), ("message-ttl", 5)])),
            Some(&t(&[
                ("max-length", 3),
                ("message-ttl", 50),
                ("expires", 9),
            ])),
        );
        assert_eq!(
            merged,
            t(&[("expires", 9), ("max-length", 3), ("message-ttl", 5)])
        );
        assert_eq!(merge_operator(None, None), Table::new());
    }

    #[test]
    fn highest_priority_wins_and_names_replace() {
        let mut all = Policies::default();
        for p in [
            policy("low", ".*", 1, t(&[("max-length", 1)])),
            policy("high", "^q", 5, t(&[("max-length", 2)])),
        ] {
            all.insert(Compiled::new(PolicyKind::Policy, p).unwrap());
        }
        assert_eq!(all.policy_for_queue("q1").unwrap().name, "high");
        assert_eq!(all.policy_for_queue("x").unwrap().name, "low");
        all.insert(
            Compiled::new(
                PolicyKind::Policy,
                policy("high", "^x", 5, t(&[("max-length", 2)])),
            )
            .unwrap(),
        );
        assert_eq!(all.list().len(), 2);
        assert_eq!(all.policy_for_queue("q1").unwrap().name, "low");
    }
}
