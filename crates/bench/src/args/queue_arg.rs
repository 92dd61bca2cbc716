//! `--queue-arg KEY=VALUE`: an argument of the queues a run declares (`x-queue-type=quorum`,
//! `x-quorum-initial-group-size=3`, `x-max-length=1000`, ...).

use amqp_wire::{FieldTable, FieldValue, ShortString};
use bytes::Bytes;
use std::str::FromStr;

/// One queue argument, typed as RabbitMQ's tools type them: an integer is a signed 64-bit
/// integer (`l`, as `rabbitmqadmin` and PerfTest send numbers), `true`/`false` a boolean, anything
/// else a long string.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueArg {
    /// The argument's name.
    pub key: String,
    /// Its value.
    pub value: FieldValue,
}

impl FromStr for QueueArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((key, value)) = s.split_once('=') else {
            return Err(format!("expected KEY=VALUE, got {s:?}"));
        };
        if key.is_empty() || key.len() > 255 {
            return Err(format!("the argument name {key:?} must be 1 to 255 bytes"));
        }
        let value = if let Ok(n) = value.parse::<i64>() {
            FieldValue::I64(n)
        } else if value == "true" || value == "false" {
            FieldValue::Bool(value == "true")
        } else {
            FieldValue::LongString(Bytes::copy_from_slice(value.as_bytes()))
        };
        Ok(QueueArg {
            key: key.to_owned(),
            value,
        })
    }
}

/// The arguments table of a queue.declare.
pub fn table(args: &[QueueArg]) -> anyhow::Result<FieldTable> {
    let mut table = FieldTable::new();
    for arg in args {
        table.insert(ShortString::new(&arg.key)?, arg.value.clone());
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_as_rabbitmq_tools_type_them() {
        let a: QueueArg = "x-queue-type=quorum".parse().unwrap();
        assert_eq!(a.key, "x-queue-type");
        assert_eq!(a.value.as_str(), Some("quorum"));
        let a: QueueArg = "x-quorum-initial-group-size=3".parse().unwrap();
        assert_eq!(a.value, FieldValue::I64(3));
        let a: QueueArg = "x-single-active-consumer=true".parse().unwrap();
        assert_eq!(a.value, FieldValue::Bool(true));
        let a: QueueArg = "x-dead-letter-routing-key=a=b".parse().unwrap();
        assert_eq!(a.value.as_str(), Some("a=b"));
        assert!("x-queue-type".parse::<QueueArg>().is_err());
        assert!("=quorum".parse::<QueueArg>().is_err());
        let t = table(&["a=1".parse().unwrap(), "a=2".parse().unwrap()]).unwrap();
        assert_eq!(t.len(), 1, "a later value replaces an earlier one");
        assert_eq!(t.get("a"), Some(&FieldValue::I64(2)));
    }
}
