//! The argument equivalence check of a queue declared again (`rabbit_amqqueue:assert_args_equivalence/2`,
//! `rabbit_misc:assert_args_equivalence/4` and `equivalence_fail/4`), with RabbitMQ's texts:
//! "inequivalent arg 'K' for queue 'Q' in vhost 'V': received X but current is Y", X and Y
//! being `none` or "the value 'v' of type 't'".

use crate::error::BrokerError;
use crate::value::{Table, Value};

/// The arguments RabbitMQ compares for a stream (`rabbit_stream_queue:capabilities/0`,
/// `queue_arguments`): one given on one side only is a difference too.
const STREAM_ARGUMENTS: [&str; 7] = [
    "x-max-length-bytes",
    "x-queue-type",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
    "x-stream-filter-size-bytes",
];

/// The AMQP 0-9-1 type name RabbitMQ prints for a value (`rabbit_binary_parser` names).
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Int(i) if i32::try_from(*i).is_ok() => "signedint",
        Value::Int(_) | Value::UInt(_) => "long",
        Value::Float(_) => "double",
        Value::Decimal { .. } => "decimal",
        Value::Str(_) => "longstr",
        Value::Bytes(_) => "binary",
        Value::Timestamp(_) => "timestamp",
        Value::Array(_) => "array",
        Value::Table(_) => "table",
        Value::Void => "void",
    }
}

/// `rabbit_misc:val/1`: `none` for a missing argument, else "the value 'v' of type 't'".
fn describe(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "none".to_string();
    };
    let text = match v {
        Value::Str(b) | Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Timestamp(t) => t.to_string(),
        other => format!("{other:?}"),
    };
    format!("the value '{text}' of type '{}'", type_name(v))
}

fn same(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.matches(b),
        _ => false,
    }
}

fn fail(
    key: &str,
    name: &str,
    vhost: &str,
    got: Option<&Value>,
    had: Option<&Value>,
) -> BrokerError {
    BrokerError::PreconditionFailed(format!(
        "inequivalent arg '{key}' for queue '{name}' in vhost '{vhost}': received {} but current is {}",
        describe(got),
        describe(had)
    ))
}

/// Checks the arguments `got` of a declaration against those `had` of the existing queue
/// `name` (a stream when `stream`).
///
/// A stream compares RabbitMQ's stream arguments strictly (given on one side only differs,
/// so a declaration without `x-queue-type` fails: "received none but current is the value
/// 'stream' of type 'longstr'"). A classic queue accepts a missing or `classic` `x-queue-type`
/// (it may have been declared with or without it) and, as before, compares only the other
/// arguments given on both sides.
pub(super) fn check(
    had: &Table,
    got: &Table,
    stream: bool,
    name: &str,
    vhost: &str,
) -> Result<(), BrokerError> {
    const TYPE: &str = "x-queue-type";
    if stream {
        for key in STREAM_ARGUMENTS {
            let (g, h) = (got.get(key), had.get(key));
            if !same(g, h) {
                return Err(fail(key, name, vhost, g, h));
            }
        }
        return Ok(());
    }
    let classic = |v: Option<&Value>| v.is_none_or(|v| v.as_str() == Some("classic"));
    let (g, h) = (got.get(TYPE), had.get(TYPE));
    let both_classic = classic(g) && classic(h);
    if !both_classic && !same(g, h) {
        return Err(fail(TYPE, name, vhost, g, h));
    }
    for (key, value) in got.iter() {
        if key == TYPE {
            continue;
        }
        if let Some(h) = had.get(key).filter(|h| !h.matches(value)) {
            return Err(fail(key, name, vhost, Some(value), Some(h)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn s(v: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn text(r: Result<(), BrokerError>) -> String {
        match r {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("expected PRECONDITION_FAILED, got {other:?}"),
        }
    }

    #[test]
    fn stream_without_a_type_is_inequivalent_as_in_rabbitmq() {
        let had = Table(vec![("x-queue-type".into(), s("stream"))]);
        assert_eq!(
            text(check(&had, &Table::new(), true, "X", "/")),
            "inequivalent arg 'x-queue-type' for queue 'X' in vhost '/': received none but current is the value 'stream' of type 'longstr'"
        );
        let got = Table(vec![("x-queue-type".into(), s("classic"))]);
        assert_eq!(
            text(check(&had, &got, true, "X", "/")),
            "inequivalent arg 'x-queue-type' for queue 'X' in vhost '/': received the value 'classic' of type 'longstr' but current is the value 'stream' of type 'longstr'"
        );
        assert!(check(&had, &had, true, "X", "/").is_ok());
        // A stream argument on one side only.
        let more = Table(vec![
            ("x-queue-type".into(), s("stream")),
            ("x-max-age".into(), s("1h")),
        ]);
        assert!(check(&more, &had, true, "X", "/").is_err());
    }

    #[test]
    fn classic_queues_keep_their_lenient_check() {
        let none = Table::new();
        let classic = Table(vec![("x-queue-type".into(), s("classic"))]);
        assert!(check(&none, &none, false, "q", "/").is_ok());
        assert!(check(&none, &classic, false, "q", "/").is_ok());
        assert!(check(&classic, &none, false, "q", "/").is_ok());
        let ttl = Table(vec![("x-message-ttl".into(), Value::Int(10))]);
        assert!(check(&none, &ttl, false, "q", "/").is_ok());
        let other = Table(vec![("x-message-ttl".into(), Value::Int(20))]);
        assert_eq!(
            text(check(&ttl, &other, false, "q", "/")),
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received the value '20' of type 'signedint' but current is the value '10' of type 'signedint'"
        );
    }
}
