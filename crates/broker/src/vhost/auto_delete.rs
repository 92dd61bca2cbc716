//! Automatic deletions of durable entities, told to whoever asked (a cluster, which makes the
//! same deletion on its other nodes: docs/clustering.md, "What is replicated").
//!
//! An auto-delete queue losing its last consumer and an auto-delete exchange losing its last
//! binding are deleted by the node where that happens, not by a client's command; a single
//! node needs nothing more. Exclusive queues are never told: they belong to their
//! connection's node.

use super::VHost;
use crate::exchange::Exchange;
use crate::queue::Queue;
use std::sync::Arc;

/// What was deleted automatically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoDeleted<'a> {
    /// A durable, non-exclusive, auto-delete queue that lost its last consumer.
    Queue(&'a str),
    /// A durable auto-delete exchange that lost its last binding.
    Exchange(&'a str),
}

/// Called with the vhost and what it deleted, on the thread that deleted it (with no lock of
/// the vhost held): it must not block.
pub type AutoDeleteHook = Arc<dyn Fn(&VHost, AutoDeleted<'_>) + Send + Sync>;

impl VHost {
    /// Tells `hook` of this vhost's automatic deletions of durable entities from now on.
    pub fn set_auto_delete_hook(&self, hook: AutoDeleteHook) {
        *self.auto_delete_hook.write() = Some(hook);
    }

    /// Whether a hook is set.
    pub fn has_auto_delete_hook(&self) -> bool {
        self.auto_delete_hook.read().is_some()
    }

    fn tell(&self, what: AutoDeleted<'_>) {
        let hook = self.auto_delete_hook.read().clone();
        if let Some(hook) = hook {
            hook(self, what);
        }
    }

    pub(super) fn auto_deleted_queue(&self, q: &Queue) {
        let o = q.options();
        if o.durable && o.exclusive_owner.is_none() {
            self.tell(AutoDeleted::Queue(q.name()));
        }
    }

    pub(super) fn auto_deleted_exchange(&self, x: &Arc<Exchange>) {
        if x.durable {
            self.tell(AutoDeleted::Exchange(&x.name));
        }
    }
}
