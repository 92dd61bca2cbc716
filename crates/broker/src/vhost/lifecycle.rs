//! The start of a vhost after a restart ([`VHost::recover`]), its end (`rabbitmqctl
//! delete_vhost`) and its description.
//!
//! [`Broker::delete_vhost`](crate::Broker::delete_vhost) takes the vhost out of the broker, then
//! calls [`VHost::close`]: from then on it is marked deleted, refuses new exchanges and queues,
//! and has no queue and no binding left (its exchanges route nowhere until the last connection
//! holding the vhost lets go of it). The store's records go next (`durable::delete_vhost`); connections still
//! holding the vhost see [`VHost::is_deleted`] and are closed by the server.

use super::VHost;
use crate::access::VHostInfo;
use crate::durable;
use crate::error::{BrokerError, Result};
use crate::exchange::Destination;
use crate::exchange::{Binding, Exchange};
use crate::message::PropertiesCodec;
use crate::queue::Queue;
use crate::queue::QueueOptions;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl VHost {
    /// Recreates what `defs` recorded for this vhost, and loads the messages of its durable
    /// queues. Returns the number of messages recovered.
    pub fn recover(
        &self,
        defs: &durable::Definitions,
        codec: &'static dyn PropertiesCodec,
    ) -> usize {
        let mine = |v: &str| v == &*self.name;
        for d in defs.exchanges.iter().filter(|d| mine(&d.vhost)) {
            if self.exchange(&d.name).is_ok() {
                continue;
            }
            let x = Arc::new(Exchange::new(
                &d.name,
                d.kind,
                true,
                d.auto_delete,
                d.internal,
                d.arguments.clone(),
            ));
            self.exchanges.write().insert(Arc::clone(&x.name), x);
        }
        let retained = self.retained.recover(codec);
        if retained > 0 {
            tracing::info!(vhost = %self.name, retained, "retained messages recovered");
        }
        let mut messages = 0;
        for d in defs.queues.iter().filter(|d| mine(&d.vhost)) {
            let options = QueueOptions {
                durable: true,
                exclusive_owner: None,
                auto_delete: d.auto_delete,
                arguments: d.arguments.clone(),
            };
            match self.declare_queue_as(&d.name, false, false, options, 0, false) {
                Ok(declared) => messages += declared.queue.restore(codec),
                Err(e) => tracing::warn!(queue = %d.name, error = %e, "queue not recovered"),
            }
        }
        for b in defs.bindings.iter().filter(|d| mine(&d.vhost)) {
            let destination = if b.to_exchange {
                self.exchange(&b.destination).map(Destination::Exchange)
            } else {
                self.queue(&b.destination).map(Destination::Queue)
            };
            let (Ok(x), Ok(destination)) = (self.exchange(&b.source), destination) else {
                continue;
            };
            x.bind(Binding {
                destination,
                routing_key: b.routing_key.clone(),
                arguments: b.arguments.clone(),
            });
        }
        messages
    }

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
