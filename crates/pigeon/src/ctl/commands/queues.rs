//! rabbitmq-queues' member commands for quorum queues: `add_member`, `delete_member`, `grow`,
//! `shrink` and `rebalance`. Through RabbitMQ 3.13/4's management endpoints
//! (`/api/queues/quorum/{vhost}/{name}/replicas/add` and `/delete`) where they answer what is
//! needed, and Pigeon's `/api/pigeon/quorum/...` where rabbitmq-queues prints a table of what
//! was done (`grow`, `shrink`, `rebalance`: RabbitMQ's endpoints answer 204 with no body).

use super::Ctx;
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use crate::ctl::output::Render;
use serde_json::{json, Value};

/// `add_member [--vhost <vhost>] <queue> <node>`: adds a member on `node` to the quorum queue
/// (a learner until it caught up, then a voter).
pub fn add_member(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (vhost, queue, node) = (ctx.vhost(), ctx.arg(0), ctx.arg(1));
    if let Some(m) = ctx.inv.opts.flag("membership") {
        // rabbitmq-queues' `--membership`: Pigeon's members are always promotable.
        if m != "promotable" && m != "voter" {
            return Err(CtlError::Usage(format!(
                "--membership {m}: only promotable (the default) and voter are supported"
            )));
        }
    }
    ctx.out.banner(&format!(
        "Adding a replica for queue {queue} on node {node}..."
    ));
    let path = format!(
        "/api/queues/quorum/{}/{}/replicas/add",
        seg(vhost),
        seg(queue)
    );
    ctx.node
        .send("POST", &path, Some(&json!({ "node": node })))?;
    Ok(())
}

/// `delete_member [--vhost <vhost>] <queue> <node>`: removes the member on `node`.
pub fn delete_member(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (vhost, queue, node) = (ctx.vhost(), ctx.arg(0), ctx.arg(1));
    ctx.out.banner(&format!(
        "Removing a replica of queue {queue} in vhost {vhost} on node {node}..."
    ));
    // RabbitMQ's `DELETE .../replicas/delete` takes a body, which this client does not send
    // with a DELETE: Pigeon's POST twin.
    let path = format!(
        "/api/pigeon/quorum/{}/{}/delete_member",
        seg(vhost),
        seg(queue)
    );
    ctx.node
        .send("POST", &path, Some(&json!({ "node": node })))?;
    Ok(())
}

/// `grow <node> <all|even> [--vhost-pattern <re>] [--queue-pattern <re>]`: adds a member on
/// `node` to every matching quorum queue (`even`: only those with an even number of members).
pub fn grow(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (node, strategy) = (ctx.arg(0), ctx.arg(1));
    if strategy != "all" && strategy != "even" {
        return Err(CtlError::Usage(format!(
            "strategy must be 'all' or 'even', not '{strategy}'"
        )));
    }
    let opts = &ctx.inv.opts;
    let body = json!({
        "strategy": strategy,
        "vhost_pattern": opts.flag("vhost-pattern").unwrap_or(".*"),
        "queue_pattern": opts.flag("queue-pattern").unwrap_or(".*"),
    });
    ctx.out.banner(&format!(
        "Growing {strategy} quorum queues matching vhost pattern {} and queue pattern {} to node {node} ...",
        opts.flag("vhost-pattern").unwrap_or(".*"),
        opts.flag("queue-pattern").unwrap_or(".*"),
    ));
    let reply = ctx.node.send(
        "POST",
        &format!("/api/pigeon/quorum/grow/{}", seg(node)),
        Some(&body),
    )?;
    table(ctx, &reply.body)
}

/// `shrink <node> [--errors-only]`: removes the member on `node` from every quorum queue
/// (but those whose only member it is).
pub fn shrink(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let node = ctx.arg(0);
    ctx.out
        .banner(&format!("Shrinking quorum queues on {node}..."));
    let reply = ctx.node.send(
        "POST",
        &format!("/api/pigeon/quorum/shrink/{}", seg(node)),
        None,
    )?;
    table(ctx, &reply.body)
}

/// `rebalance <all|quorum> [--vhost-pattern <re>] [--queue-pattern <re>]`: spreads the quorum
/// queues' leaders over the running nodes. Classic queues do not move (their home is fixed) and
/// streams are single-node, so `all` and `quorum` do the same.
pub fn rebalance(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let kind = ctx.arg(0);
    if kind != "all" && kind != "quorum" && kind != "classic" && kind != "stream" {
        return Err(CtlError::Usage(format!(
            "queue type must be one of all, classic, quorum, stream; not '{kind}'"
        )));
    }
    let opts = &ctx.inv.opts;
    ctx.out
        .banner(&format!("Re-balancing leaders of {kind} queues..."));
    let body = json!({
        "vhost_pattern": opts.flag("vhost-pattern").unwrap_or(".*"),
        "queue_pattern": opts.flag("queue-pattern").unwrap_or(".*"),
    });
    if kind == "classic" || kind == "stream" {
        return Ok(());
    }
    let reply = ctx
        .node
        .send("POST", "/api/pigeon/quorum/rebalance", Some(&body))?;
    let rows: Vec<Vec<Value>> = reply
        .body
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                r.get("node").cloned().unwrap_or(Value::Null),
                r.get("quorum_leaders").cloned().unwrap_or(Value::Null),
            ]
        })
        .collect();
    ctx.out.rows(
        &["node_name".to_string(), "quorum_queue_leaders".to_string()],
        &rows,
        |_| Render::Plain,
    );
    Ok(())
}

/// rabbitmq-queues' `vhost name size result` table (`--errors-only`: the failures only).
fn table(ctx: &Ctx, body: &Value) -> CtlResult {
    let errors_only = ctx.inv.opts.switch("errors-only");
    let columns: Vec<String> = ["vhost", "name", "size", "result"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    let rows: Vec<Vec<Value>> = body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !errors_only || r.get("result").and_then(Value::as_str) != Some("ok"))
        .map(|r| {
            columns
                .iter()
                .map(|c| r.get(c).cloned().unwrap_or(Value::Null))
                .collect()
        })
        .collect();
    ctx.out.rows(&columns, &rows, |_| Render::Plain);
    Ok(())
}
