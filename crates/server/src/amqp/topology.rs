//! The exchange and queue classes: declaring, binding, purging and deleting.
//!
//! Each method first checks the user's permissions as `rabbit_channel.erl` does (see
//! docs/security.md for the table): configure to declare or delete, write on a binding's
//! destination and read on its source (plus the topic read permission on the binding key of a
//! topic exchange), read to purge, any permission for a passive declare; a new queue with a
//! dead-letter exchange also needs read on the queue and write on the DLX, a new exchange with
//! an alternate exchange read on itself and write on the AE.

use super::channel::{Channel, ConnCtx};
use super::convert;
use super::error::{AmqpError, AmqpResult};
use crate::authz::Kind;
use amqp_wire::{
    ExchangeBindOk, ExchangeDeclareOk, ExchangeDeleteOk, ExchangeUnbindOk, Method, QueueBindOk,
    QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, QueueUnbindOk, ReplyCode, ShortString,
};
use pigeon_broker::permission::Access;
use pigeon_broker::queue::quorum;
use pigeon_broker::{Destination, ExchangeDeclare, QueueOptions, VHost};

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
        let authz = &ctx.authz;
        let reply = match method {
            Method::ExchangeDeclare(m) => {
                let name = m.exchange.as_str();
                // The default exchange is refused by the broker (403) before any check.
                if !name.is_empty() {
                    if m.passive {
                        authz.check_any(Kind::Exchange, name)?;
                    } else {
                        authz.check(Access::Configure, Kind::Exchange, name)?;
                        let ae = m
                            .arguments
                            .get("alternate-exchange")
                            .and_then(|v| v.as_str());
                        if let (Some(ae), true) = (ae, vhost.exchange(name).is_err()) {
                            authz.check(Access::Read, Kind::Exchange, name)?;
                            authz.check(Access::Write, Kind::Exchange, ae)?;
                        }
                    }
                }
                if self.replicate_exchange_declare(ctx, method) {
                    return Ok(());
                }
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
                if !m.exchange.is_empty() {
                    authz.check(Access::Configure, Kind::Exchange, m.exchange.as_str())?;
                }
                if self.replicate_exchange_delete(ctx, method) {
                    return Ok(());
                }
                vhost.delete_exchange(m.exchange.as_str(), m.if_unused)?;
                (!m.no_wait).then_some(Method::ExchangeDeleteOk(ExchangeDeleteOk {}))
            }
            Method::ExchangeBind(m) => {
                check_binding(
                    ctx,
                    Kind::Exchange,
                    &m.destination,
                    &m.source,
                    &m.routing_key,
                )?;
                let dest = Destination::Exchange(vhost.exchange(m.destination.as_str())?);
                let args = convert::table(&m.arguments);
                let reply = (!m.no_wait).then_some(Method::ExchangeBindOk(ExchangeBindOk {}));
                let (source, key) = (m.source.as_str(), m.routing_key.as_str());
                if self.replicate_binding(ctx, method, source, &dest, key, &args, reply) {
                    return Ok(());
                }
                vhost.bind(m.source.as_str(), dest, m.routing_key.as_str(), args)?;
                (!m.no_wait).then_some(Method::ExchangeBindOk(ExchangeBindOk {}))
            }
            Method::ExchangeUnbind(m) => {
                check_binding(
                    ctx,
                    Kind::Exchange,
                    &m.destination,
                    &m.source,
                    &m.routing_key,
                )?;
                let dest = Destination::Exchange(vhost.exchange(m.destination.as_str())?);
                let args = convert::table(&m.arguments);
                let reply = (!m.no_wait).then_some(Method::ExchangeUnbindOk(ExchangeUnbindOk {}));
                let (source, key) = (m.source.as_str(), m.routing_key.as_str());
                if self.replicate_binding(ctx, method, source, &dest, key, &args, reply) {
                    return Ok(());
                }
                vhost.unbind(m.source.as_str(), dest, m.routing_key.as_str(), args)?;
                (!m.no_wait).then_some(Method::ExchangeUnbindOk(ExchangeUnbindOk {}))
            }
            Method::QueueDeclare(m) => {
                let mut options = QueueOptions {
                    durable: m.durable,
                    exclusive_owner: m.exclusive.then_some(ctx.conn_id),
                    auto_delete: m.auto_delete,
                    arguments: convert::table(&m.arguments),
                };
                let d = if m.passive {
                    // No last-queue shortcut here: RabbitMQ expands it for the other queue
                    // methods only (rabbit_channel `expand_shortcuts`), so a passive declare
                    // of '' is "no queue ''".
                    let name = m.queue.as_str();
                    authz.check_any(Kind::Queue, name)?;
                    vhost.declare_queue(name, true, options, ctx.conn_id)?
                } else {
                    // A server-named queue is checked under the name it gets (amq.gen-...).
                    let generated = m.queue.is_empty();
                    let name = if generated {
                        vhost.unique_name("amq.gen-")
                    } else {
                        m.queue.as_str().to_string()
                    };
                    authz.check(Access::Configure, Kind::Queue, &name)?;
                    let existing = vhost.queue(&name).ok();
                    let new_queue = existing.is_none();
                    // The vhost's (or node's) `default_queue_type` for a declare that names
                    // none, for a new queue or one declared with a type (`vhost/default_type.rs`).
                    if existing.is_none_or(|q| q.options().arguments.get("x-queue-type").is_some())
                    {
                        vhost.apply_default_queue_type(
                            ctx.declares.node_default.as_deref(),
                            m.durable,
                            m.exclusive,
                            m.auto_delete,
                            &mut options.arguments,
                        );
                    }
                    if new_queue {
                        check_new_queue(ctx, vhost, &name, &m.arguments)?;
                        if quorum::is_quorum_declaration(&options.arguments) {
                            if ctx.store.is_none() {
                                // Nowhere for its Raft log: said before the other refusals.
                                let e = quorum::needs_a_data_directory(&name, vhost.name());
                                return Err(e.into());
                            }
                            // Refused before anything is proposed to the cluster.
                            pigeon_broker::queue::settings::check_queue_type(
                                &options.arguments,
                                &name,
                                vhost.name(),
                            )?;
                            quorum::check_declaration(
                                &name,
                                vhost.name(),
                                m.durable,
                                m.exclusive,
                                m.auto_delete,
                                &options.arguments,
                            )?;
                        }
                    }
                    if !generated && self.replicate_queue_declare(ctx, method, &options.arguments) {
                        return Ok(());
                    }
                    if generated {
                        vhost.declare_generated_queue(&name, options, ctx.conn_id)?
                    } else if new_queue && ctx.declares.is_local_quorum(&options.arguments) {
                        // A quorum queue on a node without [cluster] (`quorum_local.rs`).
                        match self.declare_local_quorum(ctx, method, &name, options)? {
                            Some(d) => d,
                            None => return Ok(()),
                        }
                    } else {
                        vhost.declare_queue(&name, false, options, ctx.conn_id)?
                    }
                };
                super::remote::check_home(&d.queue)?;
                // Homed on another node: the counts are the home's (metafinish).
                if self.remote_declare_ok(ctx, method, &d.queue, m.no_wait) {
                    self.last_queue = Some(d.queue.name().to_string());
                    return Ok(());
                }
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
                let key = binding_key(&m.queue, &m.routing_key, name);
                // Topic permissions are checked against the key actually bound.
                let (queue, checked) = (ShortString::from(name), ShortString::from(key));
                check_binding(ctx, Kind::Queue, &queue, &m.exchange, &checked)?;
                let q = vhost.queue_for(name, ctx.conn_id)?;
                let args = convert::table(&m.arguments);
                let (key, dest) = (key.to_string(), Destination::Queue(q));
                let reply = (!m.no_wait).then_some(Method::QueueBindOk(QueueBindOk {}));
                let source = m.exchange.as_str();
                if self.replicate_binding(ctx, method, source, &dest, &key, &args, reply) {
                    return Ok(());
                }
                vhost.bind(m.exchange.as_str(), dest, &key, args)?;
                (!m.no_wait).then_some(Method::QueueBindOk(QueueBindOk {}))
            }
            Method::QueueUnbind(m) => {
                let name = self.queue_name(&m.queue)?;
                let key = binding_key(&m.queue, &m.routing_key, name);
                // Topic permissions are checked against the key actually bound.
                let (queue, checked) = (ShortString::from(name), ShortString::from(key));
                check_binding(ctx, Kind::Queue, &queue, &m.exchange, &checked)?;
                let q = vhost.queue_for(name, ctx.conn_id)?;
                let args = convert::table(&m.arguments);
                let (key, dest) = (key.to_string(), Destination::Queue(q));
                let reply = Some(Method::QueueUnbindOk(QueueUnbindOk {}));
                let source = m.exchange.as_str();
                if self.replicate_binding(ctx, method, source, &dest, &key, &args, reply) {
                    return Ok(());
                }
                vhost.unbind(m.exchange.as_str(), dest, &key, args)?;
                Some(Method::QueueUnbindOk(QueueUnbindOk {}))
            }
            Method::QueuePurge(m) => {
                let name = self.queue_name(&m.queue)?;
                authz.check(Access::Read, Kind::Queue, name)?;
                let q = vhost.queue_for(name, ctx.conn_id)?;
                if q.is_stream() {
                    // rabbit_stream_queue `purge` answers `{error, not_supported}`.
                    return Err(AmqpError::new(
                        ReplyCode::NotImplemented,
                        format!(
                            "queue.purge not supported by queue '{name}' in vhost '{}'",
                            vhost.name()
                        ),
                    ));
                }
                if q.is_quorum() {
                    // Answered with the group's count once committed (`quorum_wait.rs`).
                    self.quorum_purge(method, &q, m.no_wait);
                    return Ok(());
                }
                // Homed on another node: purged there (metafinish).
                super::remote::check_home(&q)?;
                if self.remote_purge(ctx, method, &q, m.no_wait) {
                    return Ok(());
                }
                let message_count = q.purge();
                (!m.no_wait).then_some(Method::QueuePurgeOk(QueuePurgeOk { message_count }))
            }
            Method::QueueDelete(m) => {
                let name = self.queue_name(&m.queue)?.to_string();
                authz.check(Access::Configure, Kind::Queue, &name)?;
                if self.replicate_queue_delete(ctx, method, &name) {
                    return Ok(());
                }
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

/// A binding (queue.bind / unbind, exchange.bind / unbind) needs write on the destination,
/// read on the source exchange and, when the source is a topic exchange, the topic read
/// permission on the binding key (rabbit_channel `binding_action_with_checks`).
/// The routing key a queue.bind / queue.unbind binds with: with the last-queue shortcut (an
/// empty queue name) an empty key means the queue's name (rabbit_channel
/// `expand_routing_key_shortcut`).
fn binding_key<'a>(queue_arg: &str, key: &'a str, queue: &'a str) -> &'a str {
    if queue_arg.is_empty() && key.is_empty() {
        queue
    } else {
        key
    }
}

fn check_binding(
    ctx: &ConnCtx,
    dest_kind: Kind,
    destination: &ShortString,
    source: &ShortString,
    key: &ShortString,
) -> AmqpResult {
    let authz = &ctx.authz;
    // Binding to or from the default exchange is refused by the broker (403) on its own.
    if destination.is_empty() || source.is_empty() {
        return Ok(());
    }
    authz.check(Access::Write, dest_kind, destination.as_str())?;
    authz.check(Access::Read, Kind::Exchange, source.as_str())?;
    if let Ok(x) = ctx.vhost.exchange(source.as_str()) {
        authz.check_topic(Access::Read, &x, key.as_str())?;
    }
    Ok(())
}

/// What a queue that does not exist yet also needs: room under the vhost's `max-queues`
/// (406 PRECONDITION_FAILED) and, with a dead-letter exchange, read on the queue and write on
/// the DLX (rabbit_channel queue.declare).
fn check_new_queue(
    ctx: &ConnCtx,
    vhost: &VHost,
    name: &str,
    arguments: &amqp_wire::FieldTable,
) -> AmqpResult {
    if let Some(dlx) = arguments
        .get("x-dead-letter-exchange")
        .and_then(|v| v.as_str())
    {
        ctx.authz.check(Access::Read, Kind::Queue, name)?;
        ctx.authz.check(Access::Write, Kind::Exchange, dlx)?;
    }
    crate::limits::check_queue_limit(ctx.broker.access(), vhost, name)
        .map_err(|e| AmqpError::limit(ReplyCode::PreconditionFailed, e))
}
