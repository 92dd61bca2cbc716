//! Declaring stream queues (`x-queue-type: stream`, see `queue/stream.rs`), and the policies
//! that reach them: `max-length-bytes`, `max-age`, `stream-max-segment-size-bytes` and
//! `stream-filter-size-bytes`, applied at declaration and whenever a policy changes.
//!
//! RabbitMQ's rule (rabbit_stream_queue `update_stream_conf` with `policy_precedence`, since
//! 3.10: "Policy values take precedence over stream args", so that a retention can be
//! extended beyond what the stream was declared with): for each key, the policy's value
//! (merged with the operator policy's, the lower `max-length-bytes` winning, rabbit_policy
//! `get0`) wins over the `x-` argument; without a policy value the argument applies. A running
//! stream takes the new retention and segment size at once (rabbit_stream_coordinator
//! `policy_changed` -> osiris `update_retention`); the bloom filter size only at its next open.

use super::VHost;
use crate::durable;
use crate::error::{BrokerError, Result};
use crate::policy;
use crate::queue::settings::QueueSettings;
use crate::queue::stream::{self, StreamQueue};
use crate::queue::{Queue, QueueOptions};
use crate::value::{Table, Value};
use crate::vhost::QueueDeclared;
use pigeon_store::{StreamConfig, StreamRetention};
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
        let config = self.stream_config_for(&name, &options.arguments);
        let sq = StreamQueue::open(store, durable::log_id(&self.name, &name), config)?;
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

    /// The configuration of the stream `name` declared with `arguments`: its arguments', with
    /// the policy's values taking precedence (see the module's comment).
    pub(crate) fn stream_config_for(&self, name: &str, arguments: &Table) -> StreamConfig {
        let mut config = stream::stream_config(arguments);
        let effective = {
            let policies = self.policies.read();
            let operator = self.operator_policies.read();
            policy::merge_operator(
                policies.for_queue_of(name, true),
                operator.for_queue_of(name, true),
            )
        };
        let int = |key: &str| effective.get(key).and_then(Value::as_i64);
        if let Some(v) = int("max-length-bytes").filter(|&v| v >= 0) {
            config.max_length_bytes = Some(v as u64);
        }
        if let Some(age) = effective
            .get("max-age")
            .and_then(Value::as_str)
            .and_then(stream::parse_age)
        {
            config.max_age = Some(age);
        }
        if let Some(v) = int("stream-max-segment-size-bytes").filter(|&v| v > 0) {
            config.max_segment_size_bytes = v as u64;
        }
        if let Some(v) = int("stream-filter-size-bytes").and_then(|v| u8::try_from(v).ok()) {
            if v >= 16 {
                config.bloom_size = v;
            }
        }
        config
    }

    /// Gives the stream `q` the retention and segment size its arguments and the current
    /// policies ask for, applying the retention at once when it changed.
    pub(super) fn apply_stream_policy(&self, q: &Queue) {
        let Some(log) = q.stream_log() else {
            return;
        };
        let wanted = StreamRetention::of(&self.stream_config_for(q.name(), &q.options().arguments));
        if log.retention() != wanted {
            let dropped = log.set_retention(wanted, stream::pigeon_store_now_ms());
            tracing::debug!(vhost = %self.name, stream = q.name(), retention = ?wanted,
                segments_dropped = dropped.segments, "stream retention changed by a policy");
        }
    }
}

#[cfg(test)]
#[path = "stream_policy_tests.rs"]
mod tests;
