//! What RabbitMQ's replicated queue types (streams, quorum queues) check alike when declared:
//! the `x-queue-type` argument, then rabbit_amqqueue's per-type argument check and
//! rabbit_queue_type_util's `check_auto_delete`, `check_exclusive`, `check_non_durable`, in
//! that order.

use crate::error::{BrokerError, Result};
use crate::value::{Table, Value};

/// Whether `arguments` declare a queue of type `kind` (`x-queue-type`).
pub(super) fn declares(arguments: &Table, kind: &str) -> bool {
    arguments
        .get("x-queue-type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == kind)
}

/// The checks every such type makes, with RabbitMQ's texts (`type_module` as RabbitMQ names
/// the type in them, e.g. `rabbit_stream_queue`). Returns the queue's description ("queue 'q'
/// in vhost '/'") for the type's own checks that follow.
pub(super) fn check_common(
    name: &str,
    vhost: &str,
    (durable, exclusive, auto_delete): (bool, bool, bool),
    arguments: &Table,
    allowed: &[&str],
    type_module: &str,
) -> Result<String> {
    let rs = format!("queue '{name}' in vhost '{vhost}'");
    if let Some((key, _)) = arguments
        .iter()
        .find(|(key, _)| key.starts_with("x-") && !allowed.contains(key))
    {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg '{key}' for {rs} of queue type {type_module}"
        )));
    }
    let property = |p: &str| {
        Err(BrokerError::PreconditionFailed(format!(
            "invalid property '{p}' for {rs}"
        )))
    };
    if auto_delete {
        return property("auto-delete");
    }
    if exclusive {
        return property("exclusive-owner");
    }
    if !durable {
        return property("non-durable");
    }
    Ok(rs)
}
