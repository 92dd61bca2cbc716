//! Policies from the configuration, applied to the broker's vhosts.

use crate::config::{PolicyConfig, PolicyValue};
use bytes::Bytes;
use pigeon_broker::{ApplyTo, Broker, Policy, Table, Value};

/// Replaces every vhost's policies with `policies`; existing queues and exchanges pick up the
/// change at once. Returns the first invalid policy's error, having applied the valid ones.
pub fn apply(broker: &Broker, policies: &[PolicyConfig]) -> Result<(), String> {
    let mut first_error = None;
    for vhost in broker.vhosts() {
        let wanted: Vec<&PolicyConfig> = policies
            .iter()
            .filter(|p| p.vhost == vhost.name())
            .collect();
        for old in vhost.policies() {
            if !wanted.iter().any(|p| p.name == old.name) {
                vhost.clear_policy(&old.name);
            }
        }
        for p in wanted {
            if let Err(e) =
                convert(p).and_then(|policy| vhost.set_policy(policy).map_err(|e| e.to_string()))
            {
                tracing::warn!(policy = %p.name, error = %e, "policy not applied");
                first_error.get_or_insert(format!("policy '{}': {e}", p.name));
            }
        }
    }
    for p in policies {
        if broker.vhost(&p.vhost).is_none() {
            first_error.get_or_insert(format!("policy '{}': no vhost '{}'", p.name, p.vhost));
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn convert(p: &PolicyConfig) -> Result<Policy, String> {
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
