//! `basic.get`, `queue.purge` and `queue.declare-ok`'s counts for a classic queue homed on
//! another node (cluster/remote_queue.rs): asked of the home, the reply sent once it answered.
//! Like a change through the cluster (`replicated.rs`), the connection reads none of the
//! client's next frames meanwhile, so the channel's methods keep their order. A home that does
//! not answer is RabbitMQ's 404 "home node ... is down or inaccessible" (`remote.rs`).

use super::channel::{Channel, ConnCtx};
use super::replicated::MetaDone;
use crate::cluster::remote_queue::{self, Answer, AskError, Query};
use crate::cluster::WriteError;
use amqp_wire::{BasicGetEmpty, Method, QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, ShortString};
use pigeon_broker::Queue;
use pigeon_cluster::MetaCommand;
use std::sync::Arc;

impl Channel {
    /// Asks `queue`'s home `query` (when `queue` is homed elsewhere: false otherwise) and
    /// answers the client with `reply(answer)` once it came; sends nothing when it gives
    /// `None` (no-wait, or the reply was sent already).
    fn ask_home(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        queue: &Arc<Queue>,
        query: Query,
        reply: impl FnOnce(Answer) -> Option<Method> + Send + 'static,
    ) -> bool {
        let Some((forwarder, home)) = remote_queue::remote(ctx.cluster.as_ref(), queue) else {
            return false;
        };
        let (channel, class_id, method_id) =
            (self.shared.number, method.class_id(), method.method_id());
        let (vhost, name) = (queue.vhost_name().to_string(), queue.name().to_string());
        self.meta_wait = Some(Box::pin(async move {
            let (reply, result) = match forwarder.ask(&home, query).await {
                Ok(answer) => (reply(answer), Ok(())),
                Err(e) => (None, Err(not_found(&e, &home, &vhost, &name))),
            };
            MetaDone {
                channel,
                reply,
                result,
                class_id,
                method_id,
                what: String::new(),
            }
        }));
        true
    }

    /// `basic.get` of a queue homed elsewhere. True if asked.
    pub(super) fn remote_get(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        queue: &Arc<Queue>,
        no_ack: bool,
    ) -> bool {
        let query = Query::Get {
            vhost: queue.vhost_name().to_string(),
            queue: queue.name().to_string(),
            no_ack,
        };
        let (shared, proxy) = (Arc::clone(&self.shared), Arc::clone(queue));
        self.ask_home(ctx, method, queue, query, move |answer| {
            match answer {
                Answer::Got(Some(got)) => match remote_queue::got_message(got) {
                    // Delivered with this channel's tag; its ack goes back to the home
                    // through the proxy (`Queue::settle`).
                    Some((message, left)) => {
                        shared.deliver_get(&proxy, message, left, no_ack);
                        return None;
                    }
                    None => shared.stats.count_get_empty(),
                },
                _ => shared.stats.count_get_empty(),
            }
            Some(Method::BasicGetEmpty(BasicGetEmpty {}))
        })
    }

    /// `queue.purge` of a queue homed elsewhere. True if asked.
    pub(super) fn remote_purge(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        queue: &Arc<Queue>,
        no_wait: bool,
    ) -> bool {
        let query = Query::Purge {
            vhost: queue.vhost_name().to_string(),
            queue: queue.name().to_string(),
        };
        self.ask_home(ctx, method, queue, query, move |answer| {
            let message_count = match answer {
                Answer::Purged(n) => n,
                _ => 0,
            };
            (!no_wait).then_some(Method::QueuePurgeOk(QueuePurgeOk { message_count }))
        })
    }

    /// `queue.delete` with `if-unused` / `if-empty` of a queue homed elsewhere: the home's
    /// counts decide (its consumers, other nodes' included; its ready messages), as RabbitMQ's
    /// `queue.delete` is checked by the queue's process on its node (rabbit_amqqueue_process
    /// `handle_call({delete, IfUnused, IfEmpty, _})`: `{error, in_use}` / `{error, not_empty}`,
    /// 406 PRECONDITION_FAILED at the channel), then the deletion goes through the cluster.
    /// Unlike there, a message or consumer reaching the home between its answer and the
    /// deletion's commit (one round trip) does not stop it. Without conditions the home is
    /// asked too, for delete-ok's message count, and a home that does not answer does not stop
    /// the deletion (count 0). True if asked.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn remote_delete(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        queue: &Arc<Queue>,
        if_unused: bool,
        if_empty: bool,
        no_wait: bool,
    ) -> bool {
        let (Some((forwarder, home)), Some(cluster)) = (
            remote_queue::remote(ctx.cluster.as_ref(), queue),
            ctx.cluster.clone(),
        ) else {
            return false;
        };
        let (channel, class_id, method_id) =
            (self.shared.number, method.class_id(), method.method_id());
        let (vhost, name) = (queue.vhost_name().to_string(), queue.name().to_string());
        self.meta_wait = Some(Box::pin(async move {
            let query = Query::Counts {
                vhost: vhost.clone(),
                queue: name.clone(),
            };
            let refuse = |why: &str| WriteError::Refused {
                code: 406,
                text: format!("PRECONDITION_FAILED - queue '{name}' in vhost '{vhost}' {why}"),
            };
            let conditional = if_unused || if_empty;
            let command = MetaCommand::DeleteQueue {
                vhost: vhost.clone(),
                name: name.clone(),
            };
            let deleted = match forwarder.ask(&home, query).await {
                Ok(Answer::Counts(c)) if if_unused && c.consumers > 0 => Err(refuse("in use")),
                Ok(Answer::Counts(c)) if if_empty && c.ready > 0 => Err(refuse("is not empty")),
                // delete-ok's count is the messages the home drops.
                Ok(Answer::Counts(c)) => Ok(c.ready),
                // Without conditions the deletion needs no answer (as before).
                _ if !conditional => Ok(0),
                Ok(_) => Err(not_found(
                    &AskError::NotHere(home.clone()),
                    &home,
                    &vhost,
                    &name,
                )),
                Err(e) => Err(not_found(&e, &home, &vhost, &name)),
            };
            let (reply, result) = match deleted {
                Ok(message_count) => (
                    (!no_wait).then_some(Method::QueueDeleteOk(QueueDeleteOk { message_count })),
                    crate::cluster::write(&cluster, command).await,
                ),
                Err(e) => (None, Err(e)),
            };
            MetaDone {
                channel,
                reply,
                result,
                class_id,
                method_id,
                what: format!("delete queue '{name}' in vhost '{vhost}'"),
            }
        }));
        true
    }

    /// `queue.declare-ok` of a queue homed elsewhere, with the home's counts. True if asked.
    pub(super) fn remote_declare_ok(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        queue: &Arc<Queue>,
        no_wait: bool,
    ) -> bool {
        if no_wait {
            return false;
        }
        let query = Query::Counts {
            vhost: queue.vhost_name().to_string(),
            queue: queue.name().to_string(),
        };
        let name = queue.name().to_string();
        self.ask_home(ctx, method, queue, query, move |answer| {
            let c = match answer {
                Answer::Counts(c) => c,
                _ => Default::default(),
            };
            Some(Method::QueueDeclareOk(QueueDeclareOk {
                queue: ShortString::from(name),
                message_count: c.ready,
                consumer_count: c.consumers,
            }))
        })
    }
}

/// A question the home did not answer, as `AmqpError::new` words a channel error (RabbitMQ's
/// "NOT_FOUND - ...").
fn not_found(e: &AskError, home: &str, vhost: &str, name: &str) -> WriteError {
    let text = match e {
        AskError::Down(_) => format!(
            "NOT_FOUND - home node '{home}' of durable queue '{name}' in vhost '{vhost}' is down or inaccessible"
        ),
        AskError::NotHere(_) => format!("NOT_FOUND - no queue '{name}' in vhost '{vhost}'"),
    };
    WriteError::Refused { code: 404, text }
}
