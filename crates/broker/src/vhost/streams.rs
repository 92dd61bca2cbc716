//! Declaring stream queues (`x-queue-type: stream`, see `queue/stream.rs`).

use super::VHost;
use crate::durable;
use crate::error::{BrokerError, Result};
use crate::queue::settings::QueueSettings;
use crate::queue::stream::{self, StreamQueue};
use crate::queue::{Queue, QueueOptions};
use crate::vhost::QueueDeclared;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl VHost {
    /// Creates the stream queue `name` (not declared yet), under the write lock of the queue
    /// map: RabbitMQ's checks, then its log in the store, recorded as a durable queue so that
    /// it comes back at restart with its definition.
    pub(super) fn declare_stream(
        &self,
        mut queues: parking_lot::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Queue>>>,
        name: String,
        options: QueueOptions,
        settings: QueueSettings,
        me: &Arc<VHost>,
    ) -> Result<QueueDeclared> {
        stream::check_declaration(
            &name,
            &self.name,
            options.durable,
            options.exclusive_owner.is_some(),
            options.auto_delete,
            &options.arguments,
        )?;
        let Some(store) = &self.store else {
            return Err(BrokerError::PreconditionFailed(format!(
                "stream '{name}' in vhost '{}' needs a data directory (data_dir)",
                self.name
            )));
        };
        let sq = StreamQueue::open(
            store,
            durable::log_id(&self.name, &name),
            &options.arguments,
        )?;
        let q = Arc::new(Queue::new(&name, me, options, settings, None).with_stream(sq));
        q.attach_stream();
        durable::put_queue(store, &self.name, &q);
        queues.insert(name.into(), Arc::clone(&q));
        self.queue_totals.created.fetch_add(1, Ordering::Relaxed);
        Ok(QueueDeclared {
            message_count: 0,
            consumer_count: 0,
            queue: q,
        })
    }
}
