//! The log of a transient queue (non-durable or exclusive): opened in the store the first time
//! the queue pages out, deleted with the queue and at every start.
//!
//! Such a log holds only messages that paged out (never a message that stayed in memory), is
//! never synced (nobody's confirm waits for it: [`pigeon_store::Store::volatile_queue_log`])
//! and is never read after a restart: its id starts with
//! [`crate::durable::VOLATILE_LOG_PREFIX`], which no durable queue owns, so `durable::load`
//! deletes it at start. Its messages are dropped at a restart, as their queue is.
//! RabbitMQ's classic queues v2 likewise page transient messages out to a per-queue store and
//! throw it away on restart.

use super::Queue;
use pigeon_store::{QueueLog, Store};
use std::sync::Arc;

/// Where a transient queue opens its log.
pub(super) struct VolatileLog {
    pub(super) store: Arc<Store>,
    /// Unique to this queue in this process (a queue redeclared after a deletion gets another).
    pub(super) id: String,
}

impl Queue {
    /// The log to page out to: a durable queue's own, or a transient queue's, opened now if this
    /// is its first page-out. `None` when there is none (no store, or the store refused).
    pub(super) fn log_for_paging(&self) -> Option<&Arc<QueueLog>> {
        if let Some(log) = self.log.get() {
            return Some(log);
        }
        // Under the queue's lock (from `page_out`): no other thread opens it meanwhile.
        let volatile = self.volatile.as_ref()?;
        match volatile.store.volatile_queue_log(&volatile.id) {
            Ok(log) => Some(self.log.get_or_init(|| log)),
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "cannot open a log to page messages out to");
                None
            }
        }
    }

    /// Deletes a transient queue's log, if it opened one.
    pub(super) fn delete_volatile_log(&self) {
        if let (Some(volatile), Some(_)) = (&self.volatile, self.log.get()) {
            if let Err(e) = volatile.store.delete_queue_log(&volatile.id) {
                tracing::warn!(queue = %self.name, error = %e, "cannot delete a transient queue's log");
            }
        }
    }
}

impl Drop for Queue {
    /// A transient queue dropped without `delete` (its vhost went away) takes its log along; a
    /// log already deleted is not found again, so this is harmless after `delete`.
    fn drop(&mut self) {
        self.delete_volatile_log();
    }
}
