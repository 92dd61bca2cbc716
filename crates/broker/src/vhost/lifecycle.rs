//! The end of a vhost (`rabbitmqctl delete_vhost`) and its description.
//!
//! [`Broker::delete_vhost`](crate::Broker::delete_vhost) takes the vhost out of the broker, then
//! calls [`VHost::close`]: from then on it is marked deleted, refuses new exchanges and queues,
//! and has no queue and no binding left (its exchanges route nowhere until the last connection
//! holding the vhost lets go of it). The store's records go next (`durable::delete_vhost`); connections still
//! holding the vhost see [`VHost::is_deleted`] and are closed by the server.

use super::VHost;
use crate::access::VHostInfo;
use crate::error::{BrokerError, Result};
use crate::exchange::Destination;
use crate::queue::Queue;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl VHost {
    /// Whether the vhost was deleted: its connections must close.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Its description and tags.
    pub fn info(&self) -> VHostInfo {
        self.info.read().clone()
    }

    /// Replaces its description and tags (memory only: the broker records them).
    pub(crate) fn set_info(&self, info: VHostInfo) {
        *self.info.write() = info;
    }

    /// Refuses to create anything in a deleted vhost (a connection may still be open on it
    /// for a moment): nothing is then written to the store under its name.
    pub(super) fn refuse_if_deleted(&self) -> Result<()> {
        if self.is_deleted() {
            return Err(BrokerError::NotFound(format!(
                "vhost '{}' is deleted",
                self.name
            )));
        }
        Ok(())
    }

    /// Marks the vhost deleted and empties it in memory: every queue is deleted (consumers are
    /// told), every binding dropped, retained messages and reply queues forgotten. The store's
    /// records are not touched (the caller deletes them all at once). Returns how many queues
    /// there were.
    pub(crate) fn close(&self) -> usize {
        self.deleted.store(true, Ordering::Release);
        let queues: Vec<Arc<Queue>> = self.queues.write().drain().map(|(_, q)| q).collect();
        let exchanges: Vec<_> = self.exchanges.read().values().cloned().collect();
        for q in &queues {
            let gone = Destination::Queue(Arc::clone(q));
            for x in &exchanges {
                x.unbind_destination(&gone);
            }
        }
        for x in &exchanges {
            let gone = Destination::Exchange(Arc::clone(x));
            for other in &exchanges {
                other.unbind_destination(&gone);
            }
        }
        let replies: Vec<Arc<Queue>> = self.reply_queues.write().drain().map(|(_, q)| q).collect();
        for q in queues.iter().chain(&replies) {
            for c in q.delete().consumers {
                c.sink.cancelled();
            }
        }
        self.retained.clear_memory();
        queues.len()
    }
}
