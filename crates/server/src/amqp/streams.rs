//! `basic.consume` on a stream queue (`x-queue-type: stream`): RabbitMQ's checks and the
//! consumer's arguments (rabbit_stream_queue `consume`), and the `x-stream-offset` header every
//! delivery from a stream carries.

use super::convert;
use super::error::{AmqpError, AmqpResult};
use amqp_wire::{BasicProperties, FieldValue, ReplyCode};
use bytes::Bytes;
use pigeon_broker::queue::stream::{parse_filter, parse_offset, StreamStart};
use pigeon_broker::Queue;

/// Checks a `basic.consume` on stream `q` as RabbitMQ does, in its order, and reads where the
/// consumer starts: a consumer needs a (per-consumer) prefetch and manual acknowledgement.
pub(super) fn check_consume(
    q: &Queue,
    vhost: &str,
    m: &amqp_wire::BasicConsume,
    prefetch: u32,
    global_prefetch: u32,
) -> AmqpResult<StreamStart> {
    let rs = format!("queue '{}' in vhost '{vhost}'", q.name());
    if prefetch == 0 {
        return Err(AmqpError::new(
            ReplyCode::PreconditionFailed,
            format!("consumer prefetch count is not set for stream {rs}"),
        ));
    }
    if m.no_ack {
        return Err(AmqpError::new(
            ReplyCode::NotImplemented,
            format!("automatic acknowledgement not supported by stream {rs}"),
        ));
    }
    if global_prefetch > 0 {
        // rabbit_channel on `global_qos_not_supported_for_queue_type`.
        return Err(AmqpError::new(
            ReplyCode::NotImplemented,
            format!("{rs} does not support global qos"),
        ));
    }
    let args = convert::table(&m.arguments);
    let offset = parse_offset(args.get("x-stream-offset"))?;
    let (filter, match_unfiltered) = parse_filter(&args);
    Ok(StreamStart {
        offset,
        filter,
        match_unfiltered,
    })
}

/// The properties of a delivery from a stream: the `x-stream-offset` header (a long) added.
pub(super) fn with_stream_offset(raw: &Bytes, offset: u64) -> Bytes {
    let mut p = BasicProperties::decode(raw).unwrap_or_default();
    let mut headers = p.headers.take().unwrap_or_default();
    headers.insert(
        "x-stream-offset",
        FieldValue::I64(i64::try_from(offset).unwrap_or(i64::MAX)),
    );
    p.headers = Some(headers);
    p.to_bytes()
}
