//! The exchange and queue classes: declaring, binding, purging and deleting.

use super::channel::{Channel, ConnCtx};
use super::convert;
use super::error::{AmqpError, AmqpResult};
use amqp_wire::{
    ExchangeBindOk, ExchangeDeclareOk, ExchangeDeleteOk, ExchangeUnbindOk, Method, QueueBindOk,
    QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, QueueUnbindOk, ReplyCode, ShortString,
};
use pigeon_broker::{Destination, ExchangeDeclare, QueueOptions};

impl Channel {
    /// The queue a method names; the empty name means the last queue declared on the channel
    /// (AMQP 0-9-1, queue class: "the server uses the last queue declared on the channel").
    /// Without one it is a channel error, 404, as RabbitMQ's (rabbit_channel
    /// `expand_queue_name_shortcut`) for basic.get, basic.consume, queue.bind, queue.unbind,
    /// queue.purge and queue.delete.
    pub(super) fn queue_name<'a>(&'a self, name: &'a ShortString) -> AmqpResult<&'a str> {
        if !name.is_empty() {
            return Ok(name.as_str());
        }
        self.last_queue
            .as_deref()
            .ok_or_else(|| AmqpError::new(ReplyCode::NotFound, "no previously declared queue"))
    }

    pub(super) fn handle_topology(&mut self, ctx: &ConnCtx, method: &Method) -> AmqpResult {
        let vhost = &ctx.vhost;
        let reply = match method {
            Method::ExchangeDeclare(m) => {
                vhost.declare_exchange(&ExchangeDeclare {
                    name: m.exchange.as_str(),
                    kind: m.kind.as_str(),
                    passive: m.passive,
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    arguments: convert::table(&m.arguments),
                })?;
                (!m.no_wait).then_some(Method::ExchangeDeclareOk(ExchangeDeclareOk {}))
            }
            Method::ExchangeDelete(m) => {
                vhost.delete_exchange(m.exchange.as_str(), m.if_unused)?;
                (!m.no_wait).then_some(Method::ExchangeDeleteOk(ExchangeDeleteOk {}))
            }
            Method::ExchangeBind(m) => {
                let dest = Destination::Exchange(vhost.exchange(m.destination.as_str())?);
                let args = convert::table(&m.arguments);
                vhost.bind(m.source.as_str(), dest, m.routing_key.as_str(), args)?;
                (!m.no_wait).then_some(Method::ExchangeBindOk(ExchangeBindOk {}))
            }
            Method::ExchangeUnbind(m) => {
                let dest = Destination::Exchange(vhost.exchange(m.destination.as_str())?);
                let args = convert::table(&m.arguments);
                vhost.unbind(m.source.as_str(), dest, m.routing_key.as_str(), args)?;
                (!m.no_wait).then_some(Method::ExchangeUnbindOk(ExchangeUnbindOk {}))
            }
            Method::QueueDeclare(m) => {
                let options = QueueOptions {
                    durable: m.durable,
                    exclusive_owner: m.exclusive.then_some(ctx.conn_id),
                    auto_delete: m.auto_delete,
                    arguments: convert::table(&m.arguments),
                };
                // No last-queue shortcut here, passive or not: RabbitMQ expands it for the other
                // queue methods only (rabbit_channel `expand_shortcuts`), so a passive declare
                // of '' is "no queue ''".
                let d = vhost.declare_queue(m.queue.as_str(), m.passive, options, ctx.conn_id)?;
                let name = d.queue.name().to_string();
                self.last_queue = Some(name.clone());
                (!m.no_wait).then(|| {
                    Method::QueueDeclareOk(QueueDeclareOk {
                        queue: ShortString::from(name),
                        message_count: d.message_count,
                        consumer_count: d.consumer_count,
                    })
                })
            }
            Method::QueueBind(m) => {
                let name = self.queue_name(&m.queue)?;
                let q = vhost.queue_for(name, ctx.conn_id)?;
                // An empty routing key with the default queue binds with the queue's name.
                let key = if m.queue.is_empty() && m.routing_key.is_empty() {
                    name
                } else {
                    m.routing_key.as_str()
                };
                let args = convert::table(&m.arguments);
                vhost.bind(m.exchange.as_str(), Destination::Queue(q), key, args)?;
                (!m.no_wait).then_some(Method::QueueBindOk(QueueBindOk {}))
            }
            Method::QueueUnbind(m) => {
                let name = self.queue_name(&m.queue)?;
                let q = vhost.queue_for(name, ctx.conn_id)?;
                // As for queue.bind (rabbit_channel `expand_routing_key_shortcut`).
                let key = if m.queue.is_empty() && m.routing_key.is_empty() {
                    name
                } else {
                    m.routing_key.as_str()
                };
                let args = convert::table(&m.arguments);
                vhost.unbind(m.exchange.as_str(), Destination::Queue(q), key, args)?;
                Some(Method::QueueUnbindOk(QueueUnbindOk {}))
            }
            Method::QueuePurge(m) => {
                let q = vhost.queue_for(self.queue_name(&m.queue)?, ctx.conn_id)?;
                let message_count = q.purge();
                (!m.no_wait).then_some(Method::QueuePurgeOk(QueuePurgeOk { message_count }))
            }
            Method::QueueDelete(m) => {
                let name = self.queue_name(&m.queue)?.to_string();
                let message_count =
                    vhost.delete_queue(&name, m.if_unused, m.if_empty, ctx.conn_id)?;
                self.consumers
                    .retain(|_, c| c.queue.name() != name || !c.queue.is_deleted());
                (!m.no_wait).then_some(Method::QueueDeleteOk(QueueDeleteOk { message_count }))
            }
            _ => None,
        };
        if let Some(reply) = reply {
            self.shared.send(&reply);
        }
        Ok(())
    }
}
