//! A vhost's policies and operator policies: setting and clearing them (written through to
//! the metadata store first, `policy/persist.rs`), recovering them at start, and applying them
//! to the queues and exchanges they match, at once.

use super::VHost;
use crate::error::Result;
use crate::exchange::Exchange;
use crate::policy::{self, persist, Compiled, Policies, Policy, PolicyError, PolicyKind};
use crate::queue::settings::QueueSettings;
use crate::queue::stream;
use crate::queue::Queue;
use crate::value::Table;
use parking_lot::RwLock;
use std::sync::Arc;

/// What applies to a queue or an exchange, as the management API shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedPolicies {
    /// The name of the policy that applies.
    pub policy: Option<String>,
    /// The name of the operator policy that applies.
    pub operator_policy: Option<String>,
    /// Both definitions merged (rabbit_policy.erl `merge_operator_definitions`).
    pub effective: Table,
}

impl VHost {
    fn policy_set(&self, kind: PolicyKind) -> &RwLock<Policies> {
        match kind {
            PolicyKind::Policy => &self.policies,
            PolicyKind::Operator => &self.operator_policies,
        }
    }

    /// Adds or replaces a policy of `kind` (checked first, as RabbitMQ does), durably when the
    /// vhost has a store, and applies it to existing queues and exchanges. Returns whether it
    /// is new.
    pub fn put_policy(&self, kind: PolicyKind, policy: Policy) -> Result<bool, PolicyError> {
        let compiled = Compiled::new(kind, policy)?;
        let created = {
            // Held across the store write so that the store and the memory see concurrent
            // changes in the same order.
            let mut set = self.policy_set(kind).write();
            if let Some(store) = &self.store {
                persist::put(store, kind, &self.name, compiled.policy())?;
            }
            let created = set.get(&compiled.policy().name).is_none();
            set.insert(compiled);
            created
        };
        self.apply_policies();
        Ok(created)
    }

    /// Removes a policy of `kind` (durably); returns whether it existed.
    pub fn remove_policy(&self, kind: PolicyKind, name: &str) -> Result<bool, PolicyError> {
        let removed = {
            let mut set = self.policy_set(kind).write();
            if set.get(name).is_none() {
                return Ok(false);
            }
            if let Some(store) = &self.store {
                persist::delete(store, kind, &self.name, name)?;
            }
            set.remove(name)
        };
        if removed {
            self.apply_policies();
        }
        Ok(removed)
    }

    /// Adds or replaces a policy and applies it to existing queues and exchanges.
    pub fn set_policy(&self, policy: Policy) -> Result<(), PolicyError> {
        self.put_policy(PolicyKind::Policy, policy).map(|_| ())
    }

    /// Removes a policy; returns whether it existed (a store failure is logged).
    pub fn clear_policy(&self, name: &str) -> bool {
        self.remove_policy(PolicyKind::Policy, name)
            .unwrap_or_else(|e| {
                tracing::error!(policy = %name, error = %e, "cannot clear the policy");
                false
            })
    }

    /// The vhost's policies.
    pub fn policies(&self) -> Vec<Policy> {
        self.policies.read().list()
    }

    /// The vhost's policies of `kind`.
    pub fn policies_of(&self, kind: PolicyKind) -> Vec<Policy> {
        self.policy_set(kind).read().list()
    }

    /// The policy of `kind` called `name`.
    pub fn policy(&self, kind: PolicyKind, name: &str) -> Option<Policy> {
        self.policy_set(kind).read().get(name)
    }

    /// Takes back the policies the store held for this vhost (at start, before its queues
    /// are recovered, so that they are declared with their policies).
    pub(crate) fn recover_policies(&self, kind: PolicyKind, stored: Vec<Policy>) {
        let mut set = self.policy_set(kind).write();
        for p in stored {
            let name = p.name.clone();
            match Compiled::new(kind, p) {
                Ok(c) => set.insert(c),
                Err(e) => {
                    tracing::warn!(vhost = %self.name, policy = %name, error = %e, "stored policy not applied")
                }
            }
        }
    }

    /// The settings of the queue `name` declared with `arguments`: the arguments and the
    /// matching policy resolved key by key (`QueueSettings::resolve`), capped by the matching
    /// operator policy.
    pub(crate) fn queue_settings(&self, name: &str, arguments: &Table) -> Result<QueueSettings> {
        let stream = stream::is_stream_declaration(arguments);
        let settings =
            QueueSettings::resolve(arguments, self.policies.read().for_queue_of(name, stream))?;
        Ok(settings.capped_by(self.operator_policies.read().for_queue_of(name, stream)))
    }

    /// The policies that apply to the queue `name` (a stream's: `apply-to` `streams` reaches
    /// it, `classic_queues` does not).
    pub fn queue_policies(&self, name: &str) -> AppliedPolicies {
        let stream = self.queue(name).is_ok_and(|q| q.is_stream());
        let policies = self.policies.read();
        let operator = self.operator_policies.read();
        applied(
            policies.policy_for_queue_of(name, stream),
            operator.policy_for_queue_of(name, stream),
        )
    }

    /// The policies that apply to the exchange `name`.
    pub fn exchange_policies(&self, name: &str) -> AppliedPolicies {
        let policies = self.policies.read();
        let operator = self.operator_policies.read();
        applied(
            policies.policy_for_exchange(name),
            operator.policy_for_exchange(name),
        )
    }

    /// Applies the current policies to every queue and exchange.
    pub(crate) fn apply_policies(&self) {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        for q in queues {
            if let Ok(settings) = self.queue_settings(q.name(), &q.options().arguments) {
                if settings != q.settings() {
                    q.apply_settings(settings);
                }
            }
            if q.is_stream() {
                self.apply_stream_policy(&q);
            }
        }
        let policies = self.policies.read();
        for x in exchanges {
            let ae = policies
                .for_exchange(&x.name)
                .and_then(|d| d.get_str("alternate-exchange"))
                .map(str::to_string);
            x.set_policy_alternate(ae);
        }
    }
}

fn applied(policy: Option<&Policy>, operator: Option<&Policy>) -> AppliedPolicies {
    AppliedPolicies {
        policy: policy.map(|p| p.name.clone()),
        operator_policy: operator.map(|p| p.name.clone()),
        effective: policy::merge_operator(
            policy.map(|p| &p.definition),
            operator.map(|p| &p.definition),
        ),
    }
}
