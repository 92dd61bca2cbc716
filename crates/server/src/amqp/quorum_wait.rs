//! Methods answered once quorum queues' groups decided (issue 13 item 4, docs/clustering.md
//! "Quorum queues in the broker"): `basic.get` and `queue.purge` on a quorum queue, and
//! `tx.commit` of a transaction that published to quorum queues (or to queues homed on other
//! nodes). The channel's answer waits in the connection's `meta_wait`, as a topology change
//! through the cluster does (`replicated.rs`): no frame of the client is read meanwhile, so the
//! methods after it keep their order.

use super::channel::Channel;
use super::delivery::ChannelShared;
use super::error::AmqpError;
use super::replicated::MetaDone;
use crate::cluster::WriteError;
use amqp_wire::{BasicGetEmpty, Method, QueuePurgeOk, ReplyCode, TxCommitOk};
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_broker::queue::quorum_ops::{GetResult, QuorumOpError};
use pigeon_broker::queue::remote::RemoteConfirm;
use pigeon_broker::{Published, Queue};
use std::sync::Arc;

/// A `basic.get`'s answer on its way to the channel: if the connection is gone before it is
/// delivered, an unsettled message goes back to the queue.
struct GetAnswer {
    queue: Arc<Queue>,
    no_ack: bool,
    result: Option<GetResult>,
}

impl Drop for GetAnswer {
    fn drop(&mut self) {
        if let (false, Some(Ok(Some((m, _))))) = (self.no_ack, self.result.take()) {
            self.queue.requeue([m]);
        }
    }
}

/// The error a method waiting for a group is closed with.
fn refused(e: AmqpError) -> WriteError {
    WriteError::Refused {
        code: e.code.code(),
        text: e.text,
    }
}

fn op_error(e: QuorumOpError, what: impl FnOnce() -> String) -> WriteError {
    match e {
        QuorumOpError::Refused(e) => refused(AmqpError::from(e)),
        // RabbitMQ's channel ends with an internal error when the queue's Ra command times
        // out (rabbit_channel `handle_method(#'basic.get'{})`'s `{error, Reason}` clause).
        _ => refused(AmqpError::new(
            ReplyCode::InternalError,
            format!("{}: timeout", what()),
        )),
    }
}

fn done(
    shared: &ChannelShared,
    method: &Method,
    reply: Option<Method>,
    result: Result<(), WriteError>,
) -> MetaDone {
    MetaDone {
        channel: shared.number,
        reply,
        result,
        class_id: method.class_id(),
        method_id: method.method_id(),
        what: String::new(),
    }
}

/// What a `tx.commit` waits for before `tx.commit-ok`.
#[derive(Default)]
pub(super) struct TxWaits {
    replicated: Vec<Arc<ReplicaConfirm>>,
    remote: Vec<Arc<RemoteConfirm>>,
    rejected: bool,
}

impl TxWaits {
    /// A publish of the transaction was routed.
    pub(super) fn add(&mut self, published: &Published) {
        self.rejected |= published.rejected;
        if let Some(r) = &published.replicated {
            self.replicated.push(Arc::clone(r));
        }
        if let Some(r) = &published.remote {
            self.remote.push(Arc::clone(r));
        }
    }
}

impl Channel {
    /// `basic.get` on a quorum queue: get-ok or get-empty once the group answered.
    pub(super) fn quorum_get(&mut self, method: &Method, queue: Arc<Queue>, no_ack: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel::<GetAnswer>();
        let answer_queue = Arc::clone(&queue);
        queue.get_replicated(
            no_ack,
            Box::new(move |result| {
                // Not taken: the answer is dropped, which gives the message back.
                let _ = tx.send(GetAnswer {
                    queue: answer_queue,
                    no_ack,
                    result: Some(result),
                });
                true
            }),
        );
        let shared = Arc::clone(&self.shared);
        let method = method.clone();
        self.meta_wait = Some(Box::pin(async move {
            let what = || {
                format!(
                    "Cannot get a message from queue '{}' in vhost '{}'",
                    queue.name(),
                    queue.vhost_name()
                )
            };
            let Ok(mut answer) = rx.await else {
                return done(
                    &shared,
                    &method,
                    None,
                    Err(op_error(QuorumOpError::NotCommitted, what)),
                );
            };
            match answer.result.take() {
                Some(Ok(Some((message, left)))) => {
                    shared.deliver_get(&queue, message, left, no_ack);
                    done(&shared, &method, None, Ok(()))
                }
                Some(Ok(None)) | None => {
                    shared.stats.count_get_empty();
                    done(
                        &shared,
                        &method,
                        Some(Method::BasicGetEmpty(BasicGetEmpty {})),
                        Ok(()),
                    )
                }
                Some(Err(e)) => done(&shared, &method, None, Err(op_error(e, what))),
            }
        }));
    }

    /// `queue.purge` on a quorum queue: purge-ok with the number the group purged.
    pub(super) fn quorum_purge(&mut self, method: &Method, queue: &Arc<Queue>, no_wait: bool) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        queue.purge_replicated(Box::new(move |r| {
            let _ = tx.send(r);
        }));
        let shared = Arc::clone(&self.shared);
        let method = method.clone();
        let name = format!("queue '{}' in vhost '{}'", queue.name(), queue.vhost_name());
        self.meta_wait = Some(Box::pin(async move {
            let what = || format!("Cannot purge {name}");
            match rx.await {
                Ok(Ok(message_count)) => {
                    let reply =
                        (!no_wait).then_some(Method::QueuePurgeOk(QueuePurgeOk { message_count }));
                    done(&shared, &method, reply, Ok(()))
                }
                Ok(Err(e)) => done(&shared, &method, None, Err(op_error(e, what))),
                Err(_) => done(
                    &shared,
                    &method,
                    None,
                    Err(op_error(QuorumOpError::NotCommitted, what)),
                ),
            }
        }));
    }

    /// `tx.commit`: commit-ok once the quorum queues committed the transaction's publishes and
    /// the home nodes of classic queues elsewhere have them. As RabbitMQ's channel
    /// (`maybe_complete_tx`/`complete_tx`), a publish refused by a queue fails the commit with
    /// 406 PRECONDITION_FAILED "partial tx completion", closing the channel. False when there
    /// is nothing to wait for (the caller sends commit-ok).
    pub(super) fn tx_commit_wait(&mut self, method: &Method, waits: TxWaits) -> bool {
        if waits.replicated.is_empty() && waits.remote.is_empty() && !waits.rejected {
            return false;
        }
        let shared = Arc::clone(&self.shared);
        let method = method.clone();
        self.meta_wait = Some(Box::pin(async move {
            let mut ok = !waits.rejected;
            for r in waits.replicated {
                let (tx, rx) = tokio::sync::oneshot::channel();
                r.on_done(Box::new(move || {
                    let _ = tx.send(());
                }));
                let _ = rx.await;
                ok &= r.outcome().unwrap_or(false);
            }
            for r in waits.remote {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let tx = parking_lot::Mutex::new(Some(tx));
                r.on_done(Arc::new(move || {
                    if let Some(tx) = tx.lock().take() {
                        let _ = tx.send(());
                    }
                }));
                let _ = rx.await;
                ok &= r.ok();
            }
            if ok {
                done(
                    &shared,
                    &method,
                    Some(Method::TxCommitOk(TxCommitOk {})),
                    Ok(()),
                )
            } else {
                let e = AmqpError::new(ReplyCode::PreconditionFailed, "partial tx completion");
                done(&shared, &method, None, Err(refused(e)))
            }
        }));
        true
    }
}
