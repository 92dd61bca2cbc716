//! RabbitMQ's JSON for statistics: a count beside its `<name>_details` (`{"rate": r}`, plus
//! `samples`, `avg_rate` and `avg` when a range was asked for), grouped as
//! `rabbit_mgmt_stats:format_rate` groups them. A group nobody ever counted is left out, as
//! RabbitMQ leaves out the stats it has no samples of.
//!
//! Counts are read live (exact at the time of the request); rates come from the rings.

use super::ring::{details, Range, Ring};
use super::values::{
    ACK, CONFIRM, DELIVER, DELIVER_GET, DELIVER_NO_ACK, DROP_UNROUTABLE, GET, GET_EMPTY,
    GET_NO_ACK, MSG, PUBLISH, REDELIVER, RETURN_UNROUTABLE,
};
use super::Ctx;
use serde_json::{json, Map, Value};

/// Inserts `name` (the sum of `fields` now) and `name_details`.
#[allow(clippy::too_many_arguments)]
fn put<const F: usize>(
    out: &mut Map<String, Value>,
    name: &str,
    now: &[u64; F],
    rings: &[&Ring<F>],
    fields: &[usize],
    gauge: bool,
    range: Option<Range>,
    ctx: &Ctx,
) {
    let count: u64 = fields
        .iter()
        .map(|&i| now.get(i).copied().unwrap_or(0))
        .sum();
    out.insert(name.to_string(), json!(count));
    out.insert(
        format!("{name}_details"),
        details(rings, fields, gauge, range, ctx.clock),
    );
}

/// Which message counters an object has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Publishes, confirms and unroutable messages, and deliveries (the broker, channels).
    Full,
    /// Publishes and deliveries (queues, vhosts).
    PublishAndDeliveries,
}

/// `message_stats` of values laid out with the message counters first (`values::MSG`).
pub(crate) fn message_stats<const F: usize>(
    now: &[u64; F],
    rings: &[&Ring<F>],
    kind: Kind,
    ctx: &Ctx,
) -> Value {
    let mut out = Map::new();
    let range = ctx.msg;
    let any = |fields: &[usize]| fields.iter().any(|&i| now.get(i).is_some_and(|&v| v > 0));
    match kind {
        Kind::Full => {
            let fine = [
                ("publish", PUBLISH),
                ("confirm", CONFIRM),
                ("return_unroutable", RETURN_UNROUTABLE),
                ("drop_unroutable", DROP_UNROUTABLE),
            ];
            if any(&[PUBLISH, CONFIRM, RETURN_UNROUTABLE, DROP_UNROUTABLE]) {
                for (name, i) in fine {
                    put(&mut out, name, now, rings, &[i], false, range, ctx);
                }
            }
        }
        Kind::PublishAndDeliveries => {
            if any(&[PUBLISH]) {
                put(
                    &mut out,
                    "publish",
                    now,
                    rings,
                    &[PUBLISH],
                    false,
                    range,
                    ctx,
                );
            }
        }
    }
    if any(&[
        DELIVER,
        DELIVER_NO_ACK,
        GET,
        GET_NO_ACK,
        REDELIVER,
        ACK,
        GET_EMPTY,
    ]) {
        for (name, i) in [
            ("get", GET),
            ("get_no_ack", GET_NO_ACK),
            ("deliver", DELIVER),
            ("deliver_no_ack", DELIVER_NO_ACK),
            ("redeliver", REDELIVER),
            ("ack", ACK),
            ("get_empty", GET_EMPTY),
        ] {
            put(&mut out, name, now, rings, &[i], false, range, ctx);
        }
        put(
            &mut out,
            "deliver_get",
            now,
            rings,
            &DELIVER_GET,
            false,
            range,
            ctx,
        );
    }
    debug_assert!(F >= MSG);
    Value::Object(out)
}

/// Inserts `messages`, `messages_ready`, `messages_unacknowledged` and their `_details`
/// (`queue_msg_stats`); `fields` are where they are in the values.
pub(crate) fn lengths<const F: usize>(
    out: &mut Map<String, Value>,
    now: &[u64; F],
    rings: &[&Ring<F>],
    fields: [usize; 3],
    ctx: &Ctx,
) {
    let [messages, ready, unacked] = fields;
    put(
        out,
        "messages",
        now,
        rings,
        &[messages],
        true,
        ctx.lengths,
        ctx,
    );
    put(
        out,
        "messages_ready",
        now,
        rings,
        &[ready],
        true,
        ctx.lengths,
        ctx,
    );
    put(
        out,
        "messages_unacknowledged",
        now,
        rings,
        &[unacked],
        true,
        ctx.lengths,
        ctx,
    );
}

/// Inserts named counters and their `_details` (`fields`: (name, index, gauge)); `range`
/// chooses which of the query's ranges applies.
pub(crate) fn named<const F: usize>(
    out: &mut Map<String, Value>,
    now: &[u64; F],
    rings: &[&Ring<F>],
    fields: &[(&str, usize, bool)],
    range: Option<Range>,
    ctx: &Ctx,
) {
    for &(name, i, gauge) in fields {
        put(out, name, now, rings, &[i], gauge, range, ctx);
    }
}

/// The object of [`named`] alone.
pub(crate) fn named_object<const F: usize>(
    now: &[u64; F],
    rings: &[&Ring<F>],
    fields: &[(&str, usize, bool)],
    range: Option<Range>,
    ctx: &Ctx,
) -> Value {
    let mut out = Map::new();
    named(&mut out, now, rings, fields, range, ctx);
    Value::Object(out)
}

/// Inserts `message_stats` into `out` unless it is empty (RabbitMQ leaves it out of an
/// object that never saw a message).
pub(crate) fn insert_message_stats(out: &mut Map<String, Value>, stats: Value) {
    if stats.as_object().is_some_and(|m| !m.is_empty()) {
        out.insert("message_stats".into(), stats);
    }
}
