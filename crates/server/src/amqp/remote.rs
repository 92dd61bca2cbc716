//! Classic queues homed on another node of the cluster (cluster/forward.rs): while the home
//! node is down the queue is unavailable, and declaring it or consuming from it through
//! another node fails as in RabbitMQ: 404 NOT_FOUND "home node 'rabbit@a' of durable queue
//! 'q' in vhost '/' is down or inaccessible" (rabbit_amqqueue `not_found_or_absent`, the
//! `{absent, Q, nodedown}` case; the text as RabbitMQ clients report it).

use super::error::{AmqpError, AmqpResult};
use amqp_wire::ReplyCode;
use pigeon_broker::Queue;

/// Refuses the use of `queue` while its home node is down.
pub(super) fn check_home(queue: &Queue) -> AmqpResult {
    let Some(home) = queue.remote() else {
        return Ok(());
    };
    if home.available() {
        return Ok(());
    }
    Err(AmqpError::new(
        ReplyCode::NotFound,
        format!(
            "home node '{}' of durable queue '{}' in vhost '{}' is down or inaccessible",
            home.node(),
            queue.name(),
            queue.vhost_name()
        ),
    ))
}
