//! Quorum queue operations beyond publishing and consuming (issue 13 item 4, docs/clustering.md
//! "Quorum queues in the broker"):
//!
//! - **`basic.get`** is a `QueueOp::Dequeue` under a new consumer id of this node, as
//!   RabbitMQ's (rabbit_quorum_queue `dequeue` -> rabbit_fifo_client `dequeue`, a checkout
//!   `{dequeue, settled | unsettled}` by a consumer `{DeliveryTag, ChannelPid}` of its own).
//!   The committed reply carries the message and the number still ready; an unsettled one is
//!   tracked like a consumer's delivery (a handle in the member's books), so the channel's
//!   ack, nack, reject or close settles or returns it through the group.
//! - **`queue.purge`** is answered with the number the group purged, once committed.
//! - **Policies**: a changed policy (or operator policy) gives the queue new settings on every
//!   node; a node with a replica proposes `QueueOp::UpdateConfig` when its replica's
//!   configuration differs, so that limits, TTL and the delivery limit follow the policy on a
//!   running queue (rabbit_quorum_queue `policy_changed` -> `rabbit_fifo` `update_config`).
//!   Dead-lettering reads the queue's current settings, so its exchange and routing key follow
//!   the policy without a command.

use super::member::{config_of, QuorumMember};
use super::message;
use pigeon_broker::queue::quorum::QuorumBackend;
use pigeon_broker::queue::quorum_ops::{GetDone, PurgeDone, QuorumOpError};
use pigeon_broker::{BrokerError, Queue, QueuedMessage};
use pigeon_cluster::quorum::{QueueOp, Reply};
use std::sync::Arc;

impl QuorumMember {
    /// `basic.get` through the group; `done` gets the message (or none) once committed.
    pub(super) fn dequeue(&self, queue: &Arc<Queue>, no_ack: bool, done: GetDone) {
        let key = self.fresh_key();
        let consumer = self.consumer_id(key);
        let member = self.this.clone();
        let name = queue.name().to_string();
        let vhost = self.vhost.clone();
        self.push(
            QueueOp::Dequeue {
                consumer,
                settled: no_ack,
            },
            Some(Box::new(move |reply| {
                let (result, handle) = match reply {
                    None => (Err(QuorumOpError::NotCommitted), None),
                    // rabbit_channel `unsupported_single_active_consumer_error`.
                    Some(Reply::DequeueUnsupported) => (
                        Err(BrokerError::ResourceLocked(format!(
                            "cannot obtain access to locked queue '{name}' in vhost '{vhost}'. \
                             basic.get operations are not supported by quorum queues with \
                             single active consumer"
                        ))
                        .into()),
                        None,
                    ),
                    Some(Reply::Dequeued {
                        delivery: Some(d),
                        ready,
                    }) => {
                        let handle = match (&member.upgrade(), no_ack) {
                            (Some(m), false) => Some(m.track(key, d.id)),
                            _ => None,
                        };
                        match message::decode(&name, d.message.clone()) {
                            Some(message) => (
                                Ok(Some((
                                    QueuedMessage {
                                        message,
                                        seq: handle.unwrap_or(0),
                                        redelivered: d.redelivered,
                                        expires_at: None,
                                        delivery_count: d.delivery_count,
                                        persisted: false,
                                    },
                                    u32::try_from(*ready).unwrap_or(u32::MAX),
                                ))),
                                handle,
                            ),
                            None => {
                                tracing::warn!(queue = %name, "quorum queue: undecodable message returned by basic.get");
                                (Ok(None), handle)
                            }
                        }
                    }
                    Some(Reply::Dequeued { delivery: None, .. }) => (Ok(None), None),
                    Some(other) => {
                        tracing::warn!(queue = %name, reply = ?other, "quorum queue: unexpected answer to basic.get");
                        (Err(QuorumOpError::NotCommitted), None)
                    }
                };
                let delivered = matches!(result, Ok(Some(_)));
                let taken = done(result);
                if let (Some(handle), Some(m)) = (handle, member.upgrade()) {
                    if !taken || !delivered {
                        // Nobody has it (the channel is gone, or it could not be decoded):
                        // back to the queue.
                        QuorumBackend::requeue(&*m, &[handle]);
                    }
                }
            })),
        );
    }

    /// `queue.purge` through the group; `done` gets the number purged once committed.
    pub(super) fn purge_then(&self, done: PurgeDone) {
        self.push(
            QueueOp::Purge,
            Some(Box::new(move |reply| {
                done(match reply {
                    Some(Reply::Purged(n)) => Ok(u32::try_from(*n).unwrap_or(u32::MAX)),
                    Some(_) => Ok(0),
                    None => Err(QuorumOpError::NotCommitted),
                });
            })),
        );
    }

    /// The queue's settings changed (a policy): proposes them to the group if this node's
    /// replica has others. Every member node applies the same policy change, so the group
    /// may get the same configuration from each: the later ones change nothing.
    pub(super) fn update_config(&self, queue: &Queue) {
        let config = config_of(queue);
        let Some(replica) = self.local() else {
            return;
        };
        let current = replica.machine().read(|m| m.config().clone());
        // The dead-letter strategy travels in a command of its own (helper dlxalo,
        // `member/dlx.rs`): `UpdateConfig` does not carry it.
        let wanted = config.dead_letter_strategy;
        let mut others = config.clone();
        others.dead_letter_strategy = current.dead_letter_strategy;
        if others != current {
            tracing::info!(queue = %queue.name(), vhost = %self.vhost, "quorum queue: a policy changed its settings");
            self.push(QueueOp::UpdateConfig(config), None);
        }
        self.dlx_strategy_changed(wanted);
    }
}
