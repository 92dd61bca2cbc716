//! How policies and operator policies are kept in the metadata store, written through on
//! every change and read back whole at start (as `access/persist.rs` does for users):
//!
//! ```text
//! policies           vhost, name  -> pattern, apply-to, priority, definition
//! operator_policies  vhost, name  -> pattern, apply-to, priority, definition
//! ```
//!
//! Keys are length-prefixed strings; values use `record.rs`'s versioned layout.

use super::{ApplyTo, Policy, PolicyKind};
use crate::access::persist::{key, keys_where, split_key};
use crate::record::{self, get_string, get_table, get_u8, put_bytes, put_table};
use bytes::{Buf, BufMut};
use pigeon_store::{MetaOp, Store, StoreError};

/// Policies.
pub const POLICIES: &str = "policies";
/// Operator policies.
pub const OPERATOR_POLICIES: &str = "operator_policies";

/// The table of a kind of policy.
pub fn table(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Policy => POLICIES,
        PolicyKind::Operator => OPERATOR_POLICIES,
    }
}

fn apply_to_byte(a: ApplyTo) -> u8 {
    match a {
        ApplyTo::All => 0,
        ApplyTo::Queues => 1,
        ApplyTo::Exchanges => 2,
        ApplyTo::ClassicQueues => 3,
        ApplyTo::QuorumQueues => 4,
        ApplyTo::Streams => 5,
    }
}

fn byte_apply_to(b: u8) -> Option<ApplyTo> {
    match b {
        0 => Some(ApplyTo::All),
        1 => Some(ApplyTo::Queues),
        2 => Some(ApplyTo::Exchanges),
        3 => Some(ApplyTo::ClassicQueues),
        4 => Some(ApplyTo::QuorumQueues),
        5 => Some(ApplyTo::Streams),
        _ => None,
    }
}

fn encode(p: &Policy) -> Vec<u8> {
    let mut v = record::begin();
    put_bytes(&mut v, p.pattern.as_bytes());
    v.put_u8(apply_to_byte(p.apply_to));
    v.put_i32_le(p.priority);
    put_table(&mut v, &p.definition);
    v.to_vec()
}

fn decode(name: String, value: &[u8]) -> Option<Policy> {
    let mut v = record::open(value)?;
    let pattern = get_string(&mut v)?;
    let apply_to = byte_apply_to(get_u8(&mut v)?)?;
    if v.remaining() < 4 {
        return None;
    }
    let priority = v.get_i32_le();
    let definition = get_table(&mut v)?;
    Some(Policy {
        name,
        pattern,
        apply_to,
        priority,
        definition,
    })
}

/// Records a policy.
pub fn put(store: &Store, kind: PolicyKind, vhost: &str, p: &Policy) -> Result<(), StoreError> {
    store.meta_put(table(kind), &key(&[vhost, &p.name]), &encode(p))
}

/// Forgets a policy.
pub fn delete(store: &Store, kind: PolicyKind, vhost: &str, name: &str) -> Result<(), StoreError> {
    store.meta_delete(table(kind), &key(&[vhost, name]))
}

/// Every recorded policy of `kind`, by vhost (read once at start).
pub fn load_all(
    store: &Store,
    kind: PolicyKind,
) -> Result<std::collections::HashMap<String, Vec<Policy>>, StoreError> {
    let mut out: std::collections::HashMap<String, Vec<Policy>> = Default::default();
    for (k, v) in store.meta_scan(table(kind))? {
        let Some([vhost, name]) = split_key(&k, 2).and_then(|p| <[String; 2]>::try_from(p).ok())
        else {
            tracing::warn!("skipping an unreadable policy key");
            continue;
        };
        match decode(name, &v) {
            Some(p) => out.entry(vhost).or_default().push(p),
            None => tracing::warn!(%vhost, "skipping an unreadable policy record"),
        }
    }
    Ok(out)
}

/// The vhosts that have policy records of either kind (at start, to find what a deleted
/// vhost left behind).
pub fn vhosts(store: &Store) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut out = std::collections::BTreeSet::new();
    for kind in [PolicyKind::Policy, PolicyKind::Operator] {
        for (k, _) in store.meta_scan(table(kind))? {
            if let Some(mut p) = split_key(&k, 2) {
                p.truncate(1);
                out.extend(p);
            }
        }
    }
    Ok(out)
}

/// Deletes every policy record of `vhost` (the vhost is being deleted).
pub fn delete_vhost(store: &Store, vhost: &str) -> Result<(), StoreError> {
    for kind in [PolicyKind::Policy, PolicyKind::Operator] {
        let keys = keys_where(store, table(kind), 2, |p| p[0] == vhost)?;
        let ops: Vec<MetaOp<'_>> = keys
            .iter()
            .map(|k| MetaOp::Delete {
                table: table(kind),
                key: k,
            })
            .collect();
        if !ops.is_empty() {
            store.meta_batch(&ops)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Table, Value};

    #[test]
    fn policies_round_trip() {
        let p = Policy {
            name: "p".into(),
            pattern: "^a".into(),
            apply_to: ApplyTo::Queues,
            priority: -3,
            definition: Table(vec![("max-length".into(), Value::Int(2))]),
        };
        assert_eq!(decode("p".into(), &encode(&p)), Some(p));
        assert_eq!(decode("p".into(), b"\x01"), None);
    }
}
