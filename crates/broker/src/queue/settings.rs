//! A queue's effective settings: its declare arguments (`x-...`) and the matching policy,
//! resolved key by key as RabbitMQ resolves a classic queue's (rabbit_amqqueue_process
//! `process_args_policy`, through rabbit_queue_type_util `args_policy_lookup`): where only one
//! side sets a key, it applies; where both do, the numeric limits (`expires`, `message-ttl`,
//! `max-length`, `max-length-bytes`, and `delivery-limit`, as rabbit_quorum_queue resolves it)
//! take the lower value (`res_min`), and the others (`dead-letter-exchange`,
//! `dead-letter-routing-key`, `overflow`) take the argument's (`res_arg`). `x-max-priority` and
//! `x-single-active-consumer` are arguments only.

use crate::error::{BrokerError, Result};
use crate::value::{Table, Value};

/// What happens when a queue is at its length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest message to make room.
    #[default]
    DropHead,
    /// Refuse the new message (publisher confirm: nack).
    RejectPublish,
    /// Refuse the new message and dead-letter it.
    RejectPublishDlx,
}

/// Settings read from arguments and policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSettings {
    /// `x-message-ttl`, milliseconds.
    pub message_ttl: Option<u64>,
    /// `x-expires`: delete the queue after this long unused, milliseconds.
    pub expires: Option<u64>,
    /// `x-max-length`: most ready messages.
    pub max_length: Option<usize>,
    /// `x-max-length-bytes`: most bytes of ready message bodies.
    pub max_length_bytes: Option<usize>,
    /// `x-overflow`.
    pub overflow: Overflow,
    /// `x-dead-letter-exchange`.
    pub dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<String>,
    /// `x-max-priority` (0..=255).
    pub max_priority: Option<u8>,
    /// `x-single-active-consumer`.
    pub single_active_consumer: bool,
    /// `x-delivery-limit`: returns allowed before the message is dead-lettered.
    pub delivery_limit: Option<u32>,
    /// `x-dead-letter-strategy` is `at-least-once` (quorum queues only; anything else is
    /// RabbitMQ's default `at-most-once`).
    pub dead_letter_at_least_once: bool,
}

/// Refuses an `x-queue-type` other than `classic` or `stream` (`queue/stream.rs`), with
/// RabbitMQ's 406. Its texts: an unknown type is `"unsupported queue type 'x'"`, quoted as
/// Erlang prints a string (rabbit_amqqueue `check_queue_type`, reported by
/// `check_arguments_type_and_value`).
pub fn check_queue_type(arguments: &Table, queue: &str, vhost: &str) -> Result<()> {
    let Some(value) = arguments.get("x-queue-type") else {
        return Ok(());
    };
    let why = match value.as_str() {
        Some("classic" | "stream") => return Ok(()),
        // Quorum queues run on every node with a data directory: a node without `[cluster]`
        // is a cluster of one (`VHost::declare_queue` refuses them without a store).
        Some("quorum") => return Ok(()),
        Some(t) => format!("\"unsupported queue type '{t}'\""),
        None => "expected a string".to_string(),
    };
    Err(BrokerError::PreconditionFailed(format!(
        "invalid arg 'x-queue-type' for queue '{queue}' in vhost '{vhost}': {why}"
    )))
}

fn invalid(key: &str, why: &str) -> BrokerError {
    BrokerError::PreconditionFailed(format!("invalid arg '{key}': {why}"))
}

fn int(key: &str, v: &Value, min: i64, max: i64) -> Result<i64> {
    match v.as_i64() {
        Some(i) if (min..=max).contains(&i) => Ok(i),
        Some(i) => Err(invalid(key, &format!("{i} is out of range {min}..={max}"))),
        None => Err(invalid(key, "expected an integer")),
    }
}

fn text(key: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(key, "expected a string"))
}

impl QueueSettings {
    /// Resolves the settings from declare `arguments` and an optional policy `definition`
    /// (keys without the `x-` prefix, as RabbitMQ's policies write them).
    pub fn resolve(arguments: &Table, policy: Option<&Table>) -> Result<QueueSettings> {
        // `res_arg`: the argument, else the policy's value.
        let get = |arg: &str, key: &str| -> Option<(String, Value)> {
            arguments
                .get(arg)
                .map(|v| (arg.to_string(), v.clone()))
                .or_else(|| {
                    policy
                        .and_then(|p| p.get(key))
                        .map(|v| (key.to_string(), v.clone()))
                })
        };
        // `res_min`: each side checked on its own, then the lower of the two.
        let lowest = |arg: &str, key: &str, min: i64, max: i64| -> Result<Option<i64>> {
            let mine = arguments
                .get(arg)
                .map(|v| int(arg, v, min, max))
                .transpose()?;
            let theirs = policy
                .and_then(|p| p.get(key))
                .map(|v| int(key, v, min, max))
                .transpose()?;
            Ok(match (mine, theirs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
        };
        let mut s = QueueSettings::default();
        let as_u64 = |i: i64| u64::try_from(i).unwrap_or(0);
        let as_usize = |i: i64| usize::try_from(i).unwrap_or(usize::MAX);
        s.message_ttl = lowest("x-message-ttl", "message-ttl", 0, i64::from(u32::MAX))?.map(as_u64);
        s.expires = lowest("x-expires", "expires", 1, i64::from(u32::MAX))?.map(as_u64);
        s.max_length = lowest("x-max-length", "max-length", 0, i64::MAX)?.map(as_usize);
        s.max_length_bytes =
            lowest("x-max-length-bytes", "max-length-bytes", 0, i64::MAX)?.map(as_usize);
        if let Some((k, v)) = get("x-overflow", "overflow") {
            s.overflow = match text(&k, &v)?.as_str() {
                "drop-head" => Overflow::DropHead,
                "reject-publish" => Overflow::RejectPublish,
                "reject-publish-dlx" => Overflow::RejectPublishDlx,
                other => return Err(invalid(&k, &format!("unknown overflow '{other}'"))),
            };
        }
        if let Some((k, v)) = get("x-dead-letter-exchange", "dead-letter-exchange") {
            s.dead_letter_exchange = Some(text(&k, &v)?);
        }
        // RabbitMQ refuses a routing key argument without an exchange argument (a policy's
        // exchange does not count).
        if arguments.get("x-dead-letter-routing-key").is_some()
            && arguments.get("x-dead-letter-exchange").is_none()
        {
            return Err(invalid(
                "x-dead-letter-routing-key",
                "routing_key_but_no_dlx_defined",
            ));
        }
        if let Some((k, v)) = get("x-dead-letter-routing-key", "dead-letter-routing-key") {
            s.dead_letter_routing_key = Some(text(&k, &v)?);
        }
        // `res_arg`, as rabbit_quorum_queue's `dead_letter_handler/2` reads it.
        if let Some((_, v)) = get("x-dead-letter-strategy", "dead-letter-strategy") {
            s.dead_letter_at_least_once = v.as_str() == Some("at-least-once");
        }
        if let Some(v) = arguments.get("x-max-priority") {
            // 0 is accepted, as by RabbitMQ: a single priority level.
            s.max_priority = Some(int("x-max-priority", v, 0, 255)? as u8);
        }
        if let Some(v) = arguments.get("x-single-active-consumer") {
            s.single_active_consumer = match v {
                Value::Bool(b) => *b,
                _ => return Err(invalid("x-single-active-consumer", "expected a boolean")),
            };
        }
        s.delivery_limit = lowest("x-delivery-limit", "delivery-limit", 0, i64::from(u32::MAX))?
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX));
        Ok(s)
    }
}

impl QueueSettings {
    /// Caps these settings with an operator policy's `definition`: for each numeric key it
    /// sets, the lower of its value and the one already resolved wins. RabbitMQ merges the
    /// policy with the operator policy by `min` (rabbit_policy `merge_policy_value`) and then
    /// resolves these keys with `res_min` against the argument (rabbit_amqqueue_process
    /// `process_args_policy`), so the result is the lowest of the three, as here.
    pub fn capped_by(mut self, operator: Option<&Table>) -> QueueSettings {
        let Some(op) = operator else {
            return self;
        };
        let cap = |key: &str| {
            op.get(key)
                .and_then(Value::as_i64)
                .and_then(|i| u64::try_from(i).ok())
        };
        let lower = |mine: Option<u64>, theirs: Option<u64>| match (mine, theirs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.message_ttl = lower(self.message_ttl, cap("message-ttl"));
        self.expires = lower(self.expires, cap("expires"));
        let as_usize = |v: Option<u64>| v.map(|v| usize::try_from(v).unwrap_or(usize::MAX));
        self.max_length = as_usize(lower(self.max_length.map(|v| v as u64), cap("max-length")));
        self.max_length_bytes = as_usize(lower(
            self.max_length_bytes.map(|v| v as u64),
            cap("max-length-bytes"),
        ));
        self.delivery_limit = lower(self.delivery_limit.map(u64::from), cap("delivery-limit"))
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn t(entries: &[(&str, Value)]) -> Table {
        Table(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn numeric_keys_take_the_lower_value_and_the_others_the_argument() {
        let text = |b: &'static str| Value::Str(Bytes::from_static(b.as_bytes()));
        let args = t(&[
            ("x-message-ttl", Value::Int(100)),
            ("x-max-length", Value::Int(50)),
            ("x-expires", Value::Int(9000)),
            ("x-dead-letter-exchange", text("mine")),
            ("x-overflow", text("drop-head")),
        ]);
        let policy = t(&[
            ("message-ttl", Value::Int(5000)),
            ("max-length", Value::Int(3)),
            ("expires", Value::Int(10_000)),
            ("max-length-bytes", Value::Int(1024)),
            ("dead-letter-exchange", text("theirs")),
            ("overflow", text("reject-publish")),
        ]);
        let s = QueueSettings::resolve(&args, Some(&policy)).unwrap();
        assert_eq!(s.message_ttl, Some(100), "argument lower");
        assert_eq!(s.max_length, Some(3), "policy lower");
        assert_eq!(s.expires, Some(9000));
        assert_eq!(s.max_length_bytes, Some(1024), "policy alone");
        assert_eq!(s.dead_letter_exchange.as_deref(), Some("mine"));
        assert_eq!(s.overflow, Overflow::DropHead);
        let s = QueueSettings::resolve(&Table::new(), Some(&policy)).unwrap();
        assert_eq!(
            s.overflow,
            Overflow::RejectPublish,
            "policy fills what is unset"
        );
    }

    #[test]
    fn only_classic_queues_are_declared() {
        let with = |v: Value| t(&[("x-queue-type", v)]);
        let s = |b: &'static str| Value::Str(Bytes::from_static(b.as_bytes()));
        assert!(check_queue_type(&Table::new(), "q", "/").is_ok());
        assert!(check_queue_type(&with(s("classic")), "q", "/").is_ok());
        let text = |v| match check_queue_type(&with(v), "q", "/") {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            text(s("bogus")),
            "invalid arg 'x-queue-type' for queue 'q' in vhost '/': \"unsupported queue type 'bogus'\""
        );
        // Accepted here; a vhost without a store refuses it (`VHost::declare_queue`).
        assert!(check_queue_type(&with(s("quorum")), "q", "/").is_ok());
        assert!(check_queue_type(&with(s("stream")), "q", "/").is_ok());
        assert!(text(Value::Int(1)).ends_with("expected a string"));
    }

    /// A queue recovered with `x-queue-type: quorum` into a vhost with no store comes back (as
    /// a classic queue); new declarations there are refused: quorum queues need a data
    /// directory.
    #[test]
    fn recovery_keeps_queues_declared_with_another_type() {
        use crate::durable::{Definitions, QueueDef};
        let quorum = t(&[("x-queue-type", Value::Str(Bytes::from_static(b"quorum")))]);
        let defs = Definitions {
            exchanges: Vec::new(),
            queues: vec![QueueDef {
                vhost: "/".into(),
                name: "old-qq".into(),
                auto_delete: false,
                arguments: quorum.clone(),
            }],
            bindings: Vec::new(),
        };
        let vhost = crate::VHost::new("/");
        vhost.recover(&defs, &crate::OpaqueProperties);
        assert!(vhost.queue("old-qq").is_ok());
        let options = crate::QueueOptions {
            durable: true,
            arguments: quorum,
            ..Default::default()
        };
        assert!(matches!(
            vhost.declare_queue("new-qq", false, options, 1),
            Err(BrokerError::PreconditionFailed(_))
        ));
    }

    #[test]
    fn invalid_values_are_precondition_failures() {
        let bad = t(&[("x-max-priority", Value::Int(300))]);
        assert!(matches!(
            QueueSettings::resolve(&bad, None),
            Err(BrokerError::PreconditionFailed(_))
        ));
        let bad = t(&[("x-overflow", Value::Str(Bytes::from_static(b"nope")))]);
        assert!(QueueSettings::resolve(&bad, None).is_err());
        let key = Value::Str(Bytes::from_static(b"k"));
        let bad = t(&[("x-dead-letter-routing-key", key.clone())]);
        assert!(QueueSettings::resolve(&bad, None).is_err());
        let policy = t(&[("dead-letter-routing-key", key)]);
        assert!(QueueSettings::resolve(&Table::new(), Some(&policy)).is_ok());
    }
}
