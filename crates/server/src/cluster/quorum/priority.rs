//! Consumer priorities on quorum queues (`x-priority` on `basic.consume`, helper quorumrest):
//! the consumer's priority travels in its checkout, and the group's state machine serves the
//! highest-priority consumers with credit first (cluster crate, `quorum/priority.rs`).

use pigeon_cluster::quorum::{ConsumerId, QueueOp};

/// The checkout of a consumer with `priority`: plain `Checkout` for the default priority (0),
/// so that a queue whose consumers set none writes only what older nodes read too.
pub(super) fn checkout(consumer: ConsumerId, prefetch: u32, priority: i32) -> QueueOp {
    if priority == 0 {
        QueueOp::Checkout { consumer, prefetch }
    } else {
        QueueOp::CheckoutPriority {
            consumer,
            prefetch,
            priority,
        }
    }
}
