//! Topology changes through the cluster (`crate::cluster`): when the node is clustered, a
//! change to a durable exchange, a durable non-exclusive queue or a binding between durable
//! ends is proposed to the metadata group instead of being made here. Every node, this one
//! included, makes it when the log commits it; the connection waits for that (reading none of
//! the client's next frames meanwhile, so methods keep their order) and then sends the reply.
//!
//! Passive declares, redeclares of what exists (the equivalence checks answer them here),
//! exclusive, non-durable and server-named queues, and changes that would be refused here
//! anyway (the local path answers with its error) never enter the log.
//!
//! A node that cannot reach a majority cannot commit: after the cluster's write timeout the
//! connection is closed with 541 INTERNAL_ERROR, as RabbitMQ does when its Khepri metadata
//! store times out in a minority ("operation exchange.declare caused a connection exception
//! internal_error: failed to declare exchange 'direct' in vhost '/' because the operation timed
//! out", rabbitmq-website docs/metadata-store/daily-use.md).

use super::channel::{Channel, ConnCtx};
use super::convert;
use super::error::AmqpError;
use crate::cluster::{self, commands, WriteError};
use amqp_wire::{Method, ReplyCode};
use pigeon_broker::exchange::ExchangeKind;
use pigeon_broker::Destination;
use pigeon_cluster::meta::{Binding, Json};
use pigeon_cluster::MetaCommand;
use std::future::Future;
use std::pin::Pin;

/// A change proposed to the cluster and what to do once it is decided.
pub(crate) struct MetaDone {
    /// The channel that asked.
    pub channel: u16,
    /// The reply to send on it if the change is made (none with no-wait).
    pub reply: Option<Method>,
    /// What the cluster decided.
    pub result: Result<(), WriteError>,
    /// The method, for the error's class and method ids.
    pub class_id: u16,
    pub method_id: u16,
    /// "declare exchange 'x' in vhost '/'", for the minority error.
    pub what: String,
}

/// What the connection waits for.
pub(crate) type MetaWait = Pin<Box<dyn Future<Output = MetaDone> + Send>>;

impl MetaDone {
    /// The error to close the channel or connection with, if the change was not made.
    pub(crate) fn error(&self) -> Option<AmqpError> {
        let e = match &self.result {
            Ok(()) => return None,
            Err(WriteError::Refused { code, text }) => AmqpError {
                code: ReplyCode::from_code(*code).unwrap_or(ReplyCode::InternalError),
                text: text.clone(),
                class_id: 0,
                method_id: 0,
                force_connection: false,
                logged: false,
            },
            Err(WriteError::Unavailable(e)) => AmqpError {
                force_connection: true,
                ..AmqpError::new(
                    ReplyCode::InternalError,
                    format!(
                        "failed to {} because the operation timed out ({e})",
                        self.what
                    ),
                )
            },
        };
        Some(AmqpError {
            class_id: self.class_id,
            method_id: self.method_id,
            ..e
        })
    }
}

impl Channel {
    /// Proposes `command` (when clustered): the reply is sent once it is committed and applied
    /// here. False when not clustered (the caller makes the change locally).
    fn propose(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        command: MetaCommand,
        reply: Option<Method>,
        what: String,
    ) -> bool {
        let Some(cluster) = ctx.cluster.clone() else {
            return false;
        };
        let (channel, class_id, method_id) =
            (self.shared.number, method.class_id(), method.method_id());
        self.meta_wait = Some(Box::pin(async move {
            let result = cluster::write(&cluster, command).await;
            MetaDone {
                channel,
                reply,
                result,
                class_id,
                method_id,
                what,
            }
        }));
        true
    }

    /// `exchange.declare` of a new durable exchange, through the cluster. True if proposed.
    pub(super) fn replicate_exchange_declare(&mut self, ctx: &ConnCtx, method: &Method) -> bool {
        let Method::ExchangeDeclare(m) = method else {
            return false;
        };
        let name = m.exchange.as_str();
        if ctx.cluster.is_none()
            || m.passive
            || !m.durable
            || name.is_empty()
            || name.starts_with("amq.")
            || ExchangeKind::parse(m.kind.as_str()).is_none()
            || ctx.vhost.exchange(name).is_ok()
        {
            return false;
        }
        let command = MetaCommand::DeclareExchange {
            vhost: ctx.vhost.name().to_string(),
            name: name.to_string(),
            kind: m.kind.as_str().to_string(),
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: commands::to_json(&convert::table(&m.arguments)),
        };
        let reply =
            (!m.no_wait).then_some(Method::ExchangeDeclareOk(amqp_wire::ExchangeDeclareOk {}));
        let what = format!("declare exchange '{name}' in vhost '{}'", ctx.vhost.name());
        self.propose(ctx, method, command, reply, what)
    }

    /// `exchange.delete` of a durable exchange, through the cluster. True if proposed.
    pub(super) fn replicate_exchange_delete(&mut self, ctx: &ConnCtx, method: &Method) -> bool {
        let Method::ExchangeDelete(m) = method else {
            return false;
        };
        let name = m.exchange.as_str();
        let Ok(x) = ctx.vhost.exchange(name) else {
            return false;
        };
        if ctx.cluster.is_none()
            || !x.durable
            || name.starts_with("amq.")
            || (m.if_unused && x.binding_count() > 0)
        {
            return false;
        }
        let command = MetaCommand::DeleteExchange {
            vhost: ctx.vhost.name().to_string(),
            name: name.to_string(),
        };
        let reply =
            (!m.no_wait).then_some(Method::ExchangeDeleteOk(amqp_wire::ExchangeDeleteOk {}));
        let what = format!("delete exchange '{name}' in vhost '{}'", ctx.vhost.name());
        self.propose(ctx, method, command, reply, what)
    }

    /// `queue.declare` of a new durable, non-exclusive, client-named queue, through the
    /// cluster. True if proposed. The queue's messages live on its home node; the other nodes
    /// forward to it (docs/clustering.md, "Classic queues in a cluster").
    /// `arguments`: the declare's, with the vhost's default queue type applied.
    pub(super) fn replicate_queue_declare(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        arguments: &pigeon_broker::Table,
    ) -> bool {
        let Method::QueueDeclare(m) = method else {
            return false;
        };
        let name = m.queue.as_str();
        let Some(cluster) = &ctx.cluster else {
            return false;
        };
        if m.passive
            || !m.durable
            || m.exclusive
            || name.is_empty()
            || name.starts_with("amq.")
            || ctx.vhost.queue(name).is_ok()
        {
            return false;
        }
        let kind = arguments
            .get_str("x-queue-type")
            .unwrap_or("classic")
            .to_string();
        let node = if kind == "quorum" {
            // The group's members, chosen here, the first forms it (`cluster/quorum`).
            let size = arguments
                .get("x-quorum-initial-group-size")
                .and_then(|v| v.as_i64())
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(cluster::quorum::DEFAULT_GROUP_SIZE);
            cluster::quorum::place(cluster, ctx.vhost.name(), name, size).join(",")
        } else {
            // A classic queue's home: this node, or where `x-queue-leader-locator` places it
            // (cluster/homes.rs).
            match crate::cluster::forward::Forwarder::of(cluster) {
                Some(f) if kind == "classic" => f.place(&ctx.vhost, name, arguments),
                _ => cluster.name().to_string(),
            }
        };
        let command = MetaCommand::DeclareQueue {
            vhost: ctx.vhost.name().to_string(),
            name: name.to_string(),
            kind,
            auto_delete: m.auto_delete,
            arguments: commands::to_json(arguments),
            node,
        };
        let reply = (!m.no_wait).then(|| {
            Method::QueueDeclareOk(amqp_wire::QueueDeclareOk {
                queue: m.queue.clone(),
                message_count: 0,
                consumer_count: 0,
            })
        });
        self.last_queue = Some(name.to_string());
        let what = format!("declare queue '{name}' in vhost '{}'", ctx.vhost.name());
        self.propose(ctx, method, command, reply, what)
    }

    /// `queue.delete` of a durable queue, through the cluster. True if proposed.
    pub(super) fn replicate_queue_delete(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        name: &str,
    ) -> bool {
        let Method::QueueDelete(m) = method else {
            return false;
        };
        let Ok(q) = ctx.vhost.queue(name) else {
            return false;
        };
        let o = q.options();
        // Homed on another node: `if-unused` / `if-empty` are the home's to check
        // (amqp/remote_queue.rs).
        if ctx.cluster.is_some()
            && o.durable
            && o.exclusive_owner.is_none()
            && self.remote_delete(ctx, method, &q, m.if_unused, m.if_empty, m.no_wait)
        {
            return true;
        }
        if ctx.cluster.is_none()
            || !o.durable
            || o.exclusive_owner.is_some()
            || (m.if_unused && q.consumer_count() > 0)
            || (m.if_empty && q.message_count() > 0)
        {
            return false;
        }
        let command = MetaCommand::DeleteQueue {
            vhost: ctx.vhost.name().to_string(),
            name: name.to_string(),
        };
        let reply = (!m.no_wait).then(|| {
            Method::QueueDeleteOk(amqp_wire::QueueDeleteOk {
                message_count: q.message_count(),
            })
        });
        let what = format!("delete queue '{name}' in vhost '{}'", ctx.vhost.name());
        self.propose(ctx, method, command, reply, what)
    }

    /// A binding between durable ends (queue.bind / unbind, exchange.bind / unbind), through
    /// the cluster. True if proposed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replicate_binding(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        source: &str,
        destination: &Destination,
        key: &str,
        arguments: &pigeon_broker::Table,
        reply: Option<Method>,
    ) -> bool {
        if ctx.cluster.is_none() || source.is_empty() {
            return false;
        }
        let Ok(x) = ctx.vhost.exchange(source) else {
            return false;
        };
        if !pigeon_broker::durable::binding_is_durable(&x, destination) {
            return false;
        }
        let (to_exchange, dest) = match destination {
            Destination::Queue(q) => (false, q.name().to_string()),
            Destination::Exchange(d) => (true, d.name.to_string()),
        };
        let binding = Binding {
            vhost: ctx.vhost.name().to_string(),
            source: source.to_string(),
            destination: dest,
            to_exchange,
            routing_key: key.to_string(),
            arguments: Json(commands::to_json(arguments).0),
        };
        let bind = matches!(method, Method::QueueBind(_) | Method::ExchangeBind(_));
        let what = format!(
            "{} '{source}' to '{}' in vhost '{}'",
            if bind { "bind" } else { "unbind" },
            binding.destination,
            ctx.vhost.name()
        );
        let command = if bind {
            MetaCommand::Bind { binding }
        } else {
            MetaCommand::Unbind { binding }
        };
        self.propose(ctx, method, command, reply, what)
    }
}
