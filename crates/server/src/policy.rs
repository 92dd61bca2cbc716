//! Policies from the configuration file, applied to the broker's vhosts.
//!
//! They are a bootstrap, as configured users are: applied (and stored) at every start and on
//! SIGHUP, replacing a policy of the same name; policies set through the management API or a
//! definitions import are left alone. A policy that was in the file and no longer is goes on
//! the next reload of the same process (`owned` remembers what the file set); after a restart
//! it stays, like any stored policy, until cleared through the API.

use crate::config::{PolicyConfig, PolicyValue};
use bytes::Bytes;
use parking_lot::Mutex;
use pigeon_broker::{ApplyTo, Broker, Policy, Table, Value};
use std::collections::BTreeSet;

/// The (vhost, name) of the policies the configuration file set in this process.
pub(crate) type Owned = Mutex<BTreeSet<(String, String)>>;

/// Applies `policies` to their vhosts; clears those in `owned` the file no longer has.
/// Returns the first invalid policy's error, having applied the valid ones.
pub fn apply(broker: &Broker, policies: &[PolicyConfig], owned: &Owned) -> Result<(), String> {
    let mut first_error = None;
    let mut owned = owned.lock();
    let wanted: BTreeSet<(String, String)> = policies
        .iter()
        .map(|p| (p.vhost.clone(), p.name.clone()))
        .collect();
    for (vhost, name) in owned.difference(&wanted) {
        if let Some(v) = broker.vhost(vhost) {
            v.clear_policy(name);
        }
    }
    owned.clear();
    for p in policies {
        let Some(vhost) = broker.vhost(&p.vhost) else {
            first_error.get_or_insert(format!("policy '{}': no vhost '{}'", p.name, p.vhost));
            continue;
        };
        match convert(p).and_then(|policy| vhost.set_policy(policy).map_err(|e| e.to_string())) {
            Ok(()) => {
                owned.insert((p.vhost.clone(), p.name.clone()));
            }
            Err(e) => {
                tracing::warn!(policy = %p.name, error = %e, "policy not applied");
                first_error.get_or_insert(format!("policy '{}': {e}", p.name));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Checks `policies` without applying them (a clustered node writes them through the cluster
/// once it formed: `cluster/seed.rs`): the first invalid one's error.
pub(crate) fn check(policies: &[PolicyConfig]) -> Result<(), String> {
    for p in policies {
        convert(p).map_err(|e| format!("policy '{}': {e}", p.name))?;
    }
    Ok(())
}

pub(crate) fn convert(p: &PolicyConfig) -> Result<Policy, String> {
    let apply_to = ApplyTo::parse(&p.apply_to).ok_or_else(|| {
        format!(
            "apply_to must be queues, exchanges or all, not '{}'",
            p.apply_to
        )
    })?;
    let definition = Table(
        p.definition
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    PolicyValue::Int(i) => Value::Int(*i),
                    PolicyValue::Text(t) => Value::Str(Bytes::copy_from_slice(t.as_bytes())),
                };
                (k.clone(), value)
            })
            .collect(),
    );
    Ok(Policy {
        name: p.name.clone(),
        pattern: p.pattern.clone(),
        apply_to,
        priority: p.priority,
        definition,
    })
}
