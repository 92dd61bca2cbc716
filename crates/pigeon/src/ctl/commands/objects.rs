//! Commands on connections and queues: `close_connection`, `purge_queue`, `delete_queue`.

use super::lists::connection_pid;
use super::{items, Ctx};
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::Value;

/// `close_connection <name or pid> <explanation>`: the client sees the explanation in its
/// `connection.close` (AMQP 320) or in the broker's log (MQTT).
pub fn close_connection(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (id, reason) = (ctx.arg(0), ctx.arg(1));
    ctx.out
        .banner(&format!("Closing connection {id}, reason: {reason}..."));
    // A pid token from `list_connections pid` stands for the connection that has it.
    let name = if id.starts_with('<') && id.ends_with('>') {
        let all = items(ctx.node.get("/api/connections")?);
        all.iter()
            .find(|c| connection_pid(c) == id)
            .and_then(|c| c.get("name").and_then(Value::as_str).map(String::from))
            .ok_or_else(|| CtlError::Unavailable(format!("no connection has the pid {id}")))?
    } else {
        id.to_string()
    };
    let path = format!("/api/connections/{}", seg(&name));
    let reply = ctx
        .node
        .call("DELETE", &path, None, &[("x-reason", reason)])?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        404 => Err(CtlError::Unavailable(format!(
            "connection {name:?} not found"
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// `purge_queue [-p vhost] <queue>`.
pub fn purge_queue(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let (vhost, queue) = (ctx.vhost(), ctx.arg(0));
    ctx.out
        .banner(&format!("Purging queue '{queue}' in vhost '{vhost}' ..."));
    let path = format!("/api/queues/{}/{}/contents", seg(vhost), seg(queue));
    let reply = ctx.node.call("DELETE", &path, None, &[])?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        // rabbitmqctl: "Queue not found", exit 69.
        404 => Err(CtlError::Unavailable(format!(
            "queue '{queue}' not found in vhost '{vhost}'"
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// `delete_queue [-p vhost] <queue> [--if-empty] [--if-unused]`.
pub fn delete_queue(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let (vhost, queue) = (ctx.vhost(), ctx.arg(0));
    let (if_empty, if_unused) = (
        ctx.inv.opts.switch("if-empty"),
        ctx.inv.opts.switch("if-unused"),
    );
    let condition = match (if_empty, if_unused) {
        (true, true) => " if queue is empty and has no consumers",
        (true, false) => " if queue is empty",
        (false, true) => " if queue has no consumers",
        (false, false) => "",
    };
    ctx.out.banner(&format!(
        "Deleting queue '{queue}' on vhost '{vhost}'{condition} ..."
    ));
    let path = format!("/api/queues/{}/{}", seg(vhost), seg(queue));
    let not_found = || CtlError::Usage(format!("queue '{queue}' not found in vhost '{vhost}'"));
    // The ready count before deletion, for rabbitmqctl's closing line.
    let ready = ctx
        .node
        .get_opt(&path)?
        .ok_or_else(not_found)?
        .get("messages_ready")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut query = Vec::new();
    if if_empty {
        query.push("if-empty=true");
    }
    if if_unused {
        query.push("if-unused=true");
    }
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    let reply = ctx.node.call("DELETE", &path, None, &[])?;
    match reply.status {
        _ if reply.ok() => {
            ctx.out.line(&format!(
                "Queue was successfully deleted with {ready} ready messages"
            ));
            Ok(())
        }
        // RabbitMQ answers a failed condition with 400 ("precondition_failed").
        400 => Err(CtlError::Unavailable(format!(
            "queue '{queue}' in vhost '{vhost}' was not deleted: {}",
            reply.reason()
        ))),
        404 => Err(not_found()),
        _ => Err(ctx.node.refused(&reply)),
    }
}
