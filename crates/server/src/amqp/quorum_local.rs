//! `queue.declare` of a new quorum queue on a node without `[cluster]` (helper quorumone):
//! the queue's group of one runs on the node's local quorum node (`cluster/quorum/single.rs`),
//! which starts with the first such declare. Until it runs, the connection waits (reading none
//! of the client's next frames, as for a change proposed to a cluster: `replicated.rs`), so
//! that the declare-ok comes once a publish to the queue can be taken.

use super::channel::{Channel, ConnCtx};
use super::error::AmqpError;
use super::replicated::MetaDone;
use crate::cluster::WriteError;
use amqp_wire::{Method, QueueDeclareOk, ShortString};
use pigeon_broker::{QueueDeclared, QueueOptions};
use std::sync::Arc;

impl Channel {
    /// Declares the new quorum queue `name` on a node of one: `Some` once declared here, or
    /// `None` when the reply comes later (the local node is starting).
    pub(super) fn declare_local_quorum(
        &mut self,
        ctx: &ConnCtx,
        method: &Method,
        name: &str,
        options: QueueOptions,
    ) -> Result<Option<QueueDeclared>, AmqpError> {
        let (Method::QueueDeclare(m), Some(local)) = (method, ctx.declares.local.as_ref()) else {
            return Ok(Some(ctx.vhost.declare_queue(
                name,
                false,
                options,
                ctx.conn_id,
            )?));
        };
        if local.is_started() {
            let d = ctx.vhost.declare_queue(name, false, options, ctx.conn_id)?;
            local.declared(ctx.vhost.name(), name);
            return Ok(Some(d));
        }
        let (local, vhost, conn) = (Arc::clone(local), Arc::clone(&ctx.vhost), ctx.conn_id);
        let (channel, class_id, method_id) =
            (self.shared.number, method.class_id(), method.method_id());
        let (name, no_wait) = (name.to_string(), m.no_wait);
        self.last_queue = Some(name.clone());
        self.meta_wait = Some(Box::pin(async move {
            let what = format!("declare queue '{name}' in vhost '{}'", vhost.name());
            let mut reply = None;
            let result = match local.start().await {
                Err(e) => Err(WriteError::Refused {
                    code: amqp_wire::ReplyCode::InternalError.code(),
                    text: format!("cannot run quorum queues on this node: {e}"),
                }),
                Ok(()) => match vhost.declare_queue(&name, false, options, conn) {
                    Ok(d) => {
                        local.declared(vhost.name(), &name);
                        reply = (!no_wait).then(|| {
                            Method::QueueDeclareOk(QueueDeclareOk {
                                queue: ShortString::from(name.clone()),
                                message_count: d.message_count,
                                consumer_count: d.consumer_count,
                            })
                        });
                        Ok(())
                    }
                    Err(e) => {
                        let e = AmqpError::from(e);
                        Err(WriteError::Refused {
                            code: e.code.code(),
                            text: e.text,
                        })
                    }
                },
            };
            MetaDone {
                channel,
                reply,
                result,
                class_id,
                method_id,
                what,
            }
        }));
        Ok(None)
    }
}
