//! A stream queue's arguments: RabbitMQ's declare checks, the retention they ask for, and a
//! stream consumer's `x-stream-offset` / `x-stream-filter` (rabbit_stream_queue).

use std::time::Duration;

use pigeon_store::{OffsetSpec, StreamConfig};

use super::stream::pigeon_store_now_ms;
use crate::error::{BrokerError, Result};
use crate::value::{Table, Value};

/// RabbitMQ's `?MAX_STREAM_MAX_SEGMENT_SIZE` (3 GB).
const MAX_SEGMENT_SIZE: i64 = 3_000_000_000;

/// Arguments a stream accepts (RabbitMQ refuses the others for this queue type).
const STREAM_ARGS: &[&str] = &[
    "x-queue-type",
    "x-max-length-bytes",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-stream-filter-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

/// Whether `arguments` declare a stream.
pub fn is_stream_declaration(arguments: &Table) -> bool {
    super::typed::declares(arguments, "stream")
}

/// RabbitMQ's declare checks for a stream (rabbit_stream_queue `declare`, with
/// rabbit_queue_type_util's `check_auto_delete`, `check_exclusive`, `check_non_durable`, and
/// rabbit_amqqueue's per-type argument check), in its order.
pub fn check_declaration(
    name: &str,
    vhost: &str,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    arguments: &Table,
) -> Result<()> {
    let rs = super::typed::check_common(
        name,
        vhost,
        (durable, exclusive, auto_delete),
        arguments,
        STREAM_ARGS,
        "rabbit_stream_queue",
    )?;
    if let Some(v) = arguments.get("x-stream-max-segment-size-bytes") {
        if v.as_i64().is_some_and(|v| v > MAX_SEGMENT_SIZE) {
            return Err(BrokerError::PreconditionFailed(
                "Exceeded max value for x-stream-max-segment-size-bytes".into(),
            ));
        }
    }
    if let Some(v) = arguments.get("x-stream-filter-size-bytes") {
        if v.as_i64().is_some_and(|v| !(16..=255).contains(&v)) {
            return Err(BrokerError::PreconditionFailed(
                "Invalid value for  x-stream-filter-size-bytes".into(),
            ));
        }
    }
    if let Some(v) = arguments.get("x-max-age") {
        if v.as_str().and_then(parse_age).is_none() {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid arg 'x-max-age' for {rs}"
            )));
        }
    }
    Ok(())
}

/// An age as RabbitMQ writes it (rabbit_amqqueue `check_max_age`): a positive integer and a
/// unit, `Y`, `M`, `D`, `h`, `m` or `s` (a year is 365 days, a month 30).
pub fn parse_age(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok().filter(|&n| n > 0)?;
    let secs = match unit {
        "Y" => 365 * 24 * 3600,
        "M" => 30 * 24 * 3600,
        "D" => 24 * 3600,
        "h" => 3600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// The stream configuration its declare arguments ask for.
pub fn stream_config(arguments: &Table) -> StreamConfig {
    let mut config = StreamConfig::default();
    if let Some(v) = arguments
        .get("x-stream-max-segment-size-bytes")
        .and_then(Value::as_i64)
        .filter(|&v| v > 0)
    {
        config.max_segment_size_bytes = v as u64;
    }
    config.max_length_bytes = arguments
        .get("x-max-length-bytes")
        .and_then(Value::as_i64)
        .filter(|&v| v >= 0)
        .map(|v| v as u64);
    config.max_age = arguments
        .get("x-max-age")
        .and_then(Value::as_str)
        .and_then(parse_age);
    if let Some(v) = arguments
        .get("x-stream-filter-size-bytes")
        .and_then(Value::as_i64)
        .and_then(|v| u8::try_from(v).ok())
        .filter(|&v| v >= 16)
    {
        config.bloom_size = v;
    }
    config
}

/// Where a stream consumer starts and what it wants (its `basic.consume` arguments).
#[derive(Debug, Clone)]
pub struct StreamStart {
    /// `x-stream-offset`.
    pub offset: OffsetSpec,
    /// `x-stream-filter` values (empty: no filter) and `x-stream-match-unfiltered`.
    pub filter: Vec<Vec<u8>>,
    /// `x-stream-match-unfiltered`.
    pub match_unfiltered: bool,
}

/// Parses `x-stream-offset` as RabbitMQ does (rabbit_stream_queue `parse_offset_arg`): absent
/// is `next`; `first`, `last`, `next`; a number is an offset; an AMQP timestamp (seconds) is a
/// point in time; any other string is an age (`1h`, `30m`...) back from now.
pub fn parse_offset(value: Option<&Value>) -> Result<OffsetSpec> {
    let invalid = || BrokerError::PreconditionFailed("invalid arg 'x-stream-offset'".into());
    let Some(v) = value else {
        return Ok(OffsetSpec::Next);
    };
    if let Value::Timestamp(secs) = v {
        return Ok(OffsetSpec::Timestamp((*secs as i64).saturating_mul(1000)));
    }
    if let Some(s) = v.as_str() {
        return match s {
            "first" => Ok(OffsetSpec::First),
            "last" => Ok(OffsetSpec::Last),
            "next" => Ok(OffsetSpec::Next),
            age => {
                let age = parse_age(age).ok_or_else(invalid)?;
                let ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                Ok(OffsetSpec::Timestamp(
                    pigeon_store_now_ms().saturating_sub(ms),
                ))
            }
        };
    }
    match v.as_i64() {
        Some(n) if n >= 0 => Ok(OffsetSpec::Offset(n as u64)),
        _ => Err(invalid()),
    }
}

/// `x-stream-filter` (a string or an array of strings) and `x-stream-match-unfiltered`
/// (rabbit_stream_queue `filter_spec`).
pub fn parse_filter(arguments: &Table) -> (Vec<Vec<u8>>, bool) {
    let values: Vec<Vec<u8>> = match arguments.get("x-stream-filter") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(|s| s.as_bytes().to_vec()))
            .collect(),
        Some(v) => v
            .as_str()
            .map(|s| vec![s.as_bytes().to_vec()])
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let unfiltered = matches!(
        arguments.get("x-stream-match-unfiltered"),
        Some(Value::Bool(true))
    );
    (values, unfiltered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn err(r: Result<()>) -> String {
        match r {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn declarations_are_checked_in_rabbitmq_order() {
        let s = |t: &str| Value::Str(Bytes::copy_from_slice(t.as_bytes()));
        let stream = Table(vec![("x-queue-type".into(), s("stream"))]);
        assert!(check_declaration("q", "/", true, false, false, &stream).is_ok());
        // Auto-delete is reported before exclusive, exclusive before non-durable.
        assert_eq!(
            err(check_declaration("q", "/", false, true, true, &stream)),
            "invalid property 'auto-delete' for queue 'q' in vhost '/'"
        );
        assert_eq!(
            err(check_declaration("q", "/", false, true, false, &stream)),
            "invalid property 'exclusive-owner' for queue 'q' in vhost '/'"
        );
        let mut ttl = stream.clone();
        ttl.0.push(("x-message-ttl".into(), Value::Int(5)));
        assert_eq!(
            err(check_declaration("q", "/", false, false, false, &ttl)),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/' of queue type rabbit_stream_queue"
        );
        let mut age = stream.clone();
        age.0.push(("x-max-age".into(), s("7D")));
        assert!(check_declaration("q", "/", true, false, false, &age).is_ok());
        assert_eq!(
            stream_config(&age).max_age,
            Some(Duration::from_secs(7 * 86400))
        );
        age.0[1].1 = s("7 days");
        assert!(check_declaration("q", "/", true, false, false, &age).is_err());
    }

    #[test]
    fn ages_parse_as_rabbitmq() {
        assert_eq!(parse_age("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_age("2D"), Some(Duration::from_secs(2 * 86400)));
        assert_eq!(parse_age("1Y"), Some(Duration::from_secs(365 * 86400)));
        assert_eq!(parse_age("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_age("0s"), None);
        assert_eq!(parse_age("h"), None);
        assert_eq!(parse_age("5x"), None);
        assert_eq!(parse_age("5"), None);
    }

    #[test]
    fn offsets_parse_as_rabbitmq() {
        let s = |t: &str| Value::Str(Bytes::copy_from_slice(t.as_bytes()));
        assert_eq!(parse_offset(None).unwrap(), OffsetSpec::Next);
        assert_eq!(parse_offset(Some(&s("first"))).unwrap(), OffsetSpec::First);
        assert_eq!(parse_offset(Some(&s("last"))).unwrap(), OffsetSpec::Last);
        assert_eq!(
            parse_offset(Some(&Value::Int(7))).unwrap(),
            OffsetSpec::Offset(7)
        );
        assert_eq!(
            parse_offset(Some(&Value::Timestamp(5))).unwrap(),
            OffsetSpec::Timestamp(5000)
        );
        assert!(matches!(
            parse_offset(Some(&s("1h"))).unwrap(),
            OffsetSpec::Timestamp(_)
        ));
        assert!(parse_offset(Some(&s("bogus"))).is_err());
        assert!(parse_offset(Some(&Value::Int(-1))).is_err());
    }
}
