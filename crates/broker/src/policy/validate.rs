//! Checking a policy before it is stored, as RabbitMQ's `rabbit_policy:validation/3` and
//! `rabbit_policies:validate_policy0/2` do: the pattern must compile, the definition must not
//! be empty, every key must be one RabbitMQ recognises for that kind of policy, and each value
//! must have the right type and range. The texts follow RabbitMQ's (which prints Erlang
//! terms: `<<"x">>` for a string).

use super::{Policy, PolicyKind, OPERATOR_KEYS};
use crate::queue::settings::QueueSettings;
use crate::value::{Table, Value};
use regex::Regex;

/// Why a policy was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The definition is invalid: the text says why, in RabbitMQ's words. The management API
    /// answers 400 "Validation failed\n\n{text}\n".
    #[error("{0}")]
    Invalid(String),
    /// The metadata store refused the write: nothing was changed.
    #[error("cannot write to the metadata store: {0}")]
    Store(#[from] pigeon_store::StoreError),
}

/// Keys Pigeon applies (queue settings and the alternate exchange).
const APPLIED: &[&str] = &[
    "dead-letter-exchange",
    "dead-letter-routing-key",
    // Quorum queues' at-least-once dead-lettering (helper dlxalo).
    "dead-letter-strategy",
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "delivery-limit",
    "alternate-exchange",
    // Streams (`vhost/streams.rs`).
    "max-age",
    "stream-max-segment-size-bytes",
    "stream-filter-size-bytes",
];

/// Keys RabbitMQ 3.13 recognises that Pigeon accepts without acting on them (classic queue
/// mirroring from rabbit_mirror_queue_misc, federation, quorum queue and stream settings, lazy
/// mode, queue version, consumer timeout): a RabbitMQ export with them imports, and exports
/// them back unchanged.
const INERT: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-master-locator",
    "queue-mode",
    "queue-version",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "max-segment-size-bytes",
    "queue-leader-locator",
    "initial-cluster-size",
    "target-group-size",
    "federation-upstream",
    "federation-upstream-set",
    "consumer-timeout",
];

/// Whether `key` is recognised but without effect in Pigeon.
pub(super) fn is_inert(key: &str) -> bool {
    INERT.contains(&key)
}

/// A value as Erlang prints it in RabbitMQ's messages (`~p`).
pub(crate) fn erlang(v: &Value) -> String {
    match v {
        Value::Str(b) | Value::Bytes(b) => format!("<<\"{}\">>", String::from_utf8_lossy(b)),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Void => "null".into(),
        Value::Array(list) => format!(
            "[{}]",
            list.iter().map(erlang).collect::<Vec<_>>().join(",")
        ),
        Value::Table(t) => format!(
            "#{{{}}}",
            t.iter()
                .map(|(k, v)| format!("<<\"{k}\">> => {}", erlang(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => format!("{other:?}"),
    }
}

fn int_at_least(v: &Value, min: i64) -> bool {
    matches!(v, Value::Int(_) | Value::UInt(_)) && v.as_i64().is_some_and(|i| i >= min)
}

fn one_of(v: &Value, allowed: &[&str]) -> bool {
    v.as_str().is_some_and(|s| allowed.contains(&s))
}

/// `rabbit_policies:validate_policy0/2` (and rabbit_mirror_queue_misc's for `ha-*`): `None`
/// when fine, RabbitMQ's complaint otherwise.
fn check_value(key: &str, v: &Value) -> Option<&'static str> {
    let string = v.as_str().is_some();
    let (ok, what) = match key {
        "alternate-exchange" => (string, "is not a valid alternate exchange name"),
        "dead-letter-exchange" => (string, "is not a valid dead letter exchange name"),
        "dead-letter-routing-key" => (string, "is not a valid dead letter routing key"),
        "dead-letter-strategy" => (
            one_of(v, &["at-most-once", "at-least-once"]),
            "is not a valid dead letter strategy",
        ),
        "message-ttl" => (int_at_least(v, 0), "is not a valid message TTL"),
        "expires" => (int_at_least(v, 1), "is not a valid queue expiry"),
        "max-length" => (int_at_least(v, 0), "is not a valid maximum length"),
        "max-length-bytes" => (int_at_least(v, 0), "is not a valid maximum length in bytes"),
        "max-in-memory-length" | "max-in-memory-bytes" => {
            (int_at_least(v, 0), "is not a valid maximum memory in bytes")
        }
        "delivery-limit" => (int_at_least(v, 0), "is not a valid delivery limit"),
        "overflow" => (
            one_of(v, &["drop-head", "reject-publish", "reject-publish-dlx"]),
            "is not a valid overflow value",
        ),
        "queue-mode" => (
            one_of(v, &["default", "lazy"]),
            "is not a valid queue-mode value",
        ),
        "queue-version" => (
            matches!(v.as_i64(), Some(1 | 2)),
            "is not a valid queue version",
        ),
        "queue-leader-locator" => (
            one_of(v, &["client-local", "random", "least-leaders", "balanced"]),
            "is not a valid queue leader locator value",
        ),
        "queue-master-locator" => (
            one_of(v, &["min-masters", "client-local", "random"]),
            "is not a valid queue master locator",
        ),
        "initial-cluster-size" | "target-group-size" => {
            (int_at_least(v, 0), "is not a valid cluster size")
        }
        "max-segment-size-bytes" => (int_at_least(v, 0), "is not a valid segment size"),
        // ?MAX_STREAM_MAX_SEGMENT_SIZE, 3 GB.
        "stream-max-segment-size-bytes" => (
            int_at_least(v, 0) && v.as_i64().is_some_and(|n| n <= 3_000_000_000),
            "is not a valid segment size",
        ),
        "stream-filter-size-bytes" => (
            int_at_least(v, 16) && v.as_i64().is_some_and(|n| n <= 255),
            "is not a valid filter size. Valid range is 16-255",
        ),
        // rabbit_amqqueue `check_max_age`.
        "max-age" => (
            v.as_str()
                .and_then(crate::queue::stream::parse_age)
                .is_some(),
            "is not a valid max age",
        ),
        "consumer-timeout" => (int_at_least(v, 0), "is not a valid consumer timeout"),
        "ha-mode" => (
            one_of(v, &["all", "exactly", "nodes"]),
            "is not a valid ha-mode value",
        ),
        "ha-sync-mode" => (
            one_of(v, &["manual", "automatic"]),
            "is not a valid ha-sync-mode value",
        ),
        "ha-sync-batch-size" => (int_at_least(v, 1), "is not a valid ha-sync-batch-size"),
        "ha-promote-on-shutdown"
        | "ha-promote-on-failure"
        | "federation-upstream"
        | "federation-upstream-set" => (string, "is not a valid value"),
        _ => (true, ""),
    };
    (!ok).then_some(what)
}

/// Checks `policy` as a policy of `kind`; returns its compiled pattern.
pub(super) fn check(kind: PolicyKind, policy: &Policy) -> Result<Regex, PolicyError> {
    let invalid = |s: String| PolicyError::Invalid(s);
    let regex = Regex::new(&policy.pattern).map_err(|e| {
        invalid(format!(
            "<<\"pattern\">> must be a valid regular expression: <<\"{}\">> ({e})",
            policy.pattern
        ))
    })?;
    if policy.definition.is_empty() {
        return Err(invalid("no policy provided".into()));
    }
    let recognised = |k: &str| match kind {
        PolicyKind::Policy => APPLIED.contains(&k) || INERT.contains(&k),
        PolicyKind::Operator => OPERATOR_KEYS.contains(&k),
    };
    let unknown: Vec<String> = policy
        .definition
        .iter()
        .filter(|(k, _)| !recognised(k))
        .map(|(k, v)| format!("{{<<\"{k}\">>,{}}}", erlang(v)))
        .collect();
    if !unknown.is_empty() {
        return Err(invalid(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        )));
    }
    for (key, value) in policy.definition.iter() {
        if let Some(what) = check_value(key, value) {
            return Err(invalid(format!("{} {what}", erlang(value))));
        }
    }
    // Pigeon's own limits on what it applies (a TTL that fits its timers...): refused now
    // rather than making every declaration of a matching queue fail later.
    let applied = Table(
        policy
            .definition
            .iter()
            .filter(|(k, _)| APPLIED.contains(k))
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    );
    QueueSettings::resolve(&Table::new(), Some(&applied)).map_err(|e| invalid(e.to_string()))?;
    Ok(regex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ApplyTo;
    use bytes::Bytes;

    fn policy(pattern: &str, def: Vec<(&str, Value)>) -> Policy {
        Policy {
            name: "p".into(),
            pattern: pattern.into(),
            apply_to: ApplyTo::All,
            priority: 0,
            definition: Table(def.into_iter().map(|(k, v)| (k.into(), v)).collect()),
        }
    }

    fn s(t: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(t.as_bytes()))
    }

    #[test]
    fn refuses_what_rabbitmq_refuses() {
        let bad = |p: Policy, kind| check(kind, &p).unwrap_err().to_string();
        assert_eq!(
            bad(policy(".*", vec![("foo", s("bar"))]), PolicyKind::Policy),
            "[{<<\"foo\">>,<<\"bar\">>}] are not recognised policy settings"
        );
        assert!(bad(
            policy("(", vec![("max-length", Value::Int(1))]),
            PolicyKind::Policy
        )
        .contains("regular expression"));
        assert_eq!(
            bad(
                policy(".*", vec![("max-length", s("x"))]),
                PolicyKind::Policy
            ),
            "<<\"x\">> is not a valid maximum length"
        );
        assert_eq!(
            bad(policy(".*", vec![]), PolicyKind::Policy),
            "no policy provided"
        );
        // Quorum queues' dead-letter strategy (helper dlxalo).
        assert_eq!(
            bad(
                policy(".*", vec![("dead-letter-strategy", s("sometimes"))]),
                PolicyKind::Policy
            ),
            "<<\"sometimes\">> is not a valid dead letter strategy"
        );
        assert!(check(
            PolicyKind::Policy,
            &policy(".*", vec![("dead-letter-strategy", s("at-least-once"))])
        )
        .is_ok());
        // An operator policy takes the capping keys only.
        assert!(bad(
            policy(".*", vec![("dead-letter-exchange", s("x"))]),
            PolicyKind::Operator
        )
        .contains("not recognised"));
    }

    #[test]
    fn accepts_recognised_keys_pigeon_does_not_act_on() {
        let p = policy(
            ".*",
            vec![("ha-mode", s("all")), ("max-length", Value::Int(3))],
        );
        assert!(check(PolicyKind::Policy, &p).is_ok());
        assert_eq!(p.inert_keys(), vec!["ha-mode"]);
    }
}
