//! `basic.get`, `queue.purge` and `queue.declare-ok`'s counts for a classic queue homed on
//! another node (cluster/remote_queue.rs): asked of the home, the reply sent once it answered.
//! Like a change through the cluster (`replicated.rs`), the connection reads none of the
//! client's next frames meanwhile, so the channel's methods keep their order. A home that does
//! not answer is RabbitMQ's 404 "home node ... is down or inaccessible" (`remote.rs`).

use super::channel::{Channel, ConnCtx};
use super::replicated::MetaDone;
use crate::cluster::remote_queue::{self, Answer, AskError, Query};
use crate::cluster::WriteError;
use amqp_wire::{BasicGetEmpty, Method, QueueDeclareOk, QueuePurgeOk, ShortString};
use pigeon_broker::Queue;
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
                Err(e) => {
                    // As `AmqpError::new` words a channel error (RabbitMQ's "NOT_FOUND - ...").
                    let text = match e {
                        AskError::Down(_) => format!(
                            "NOT_FOUND - home node '{home}' of durable queue '{name}' in vhost '{vhost}' is down or inaccessible"
                        ),
                        AskError::NotHere(_) => {
                            format!("NOT_FOUND - no queue '{name}' in vhost '{vhost}'")
                        }
                    };
                    (None, Err(WriteError::Refused { code: 404, text }))
                }
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
