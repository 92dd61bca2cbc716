//! Maintenance mode: `drain` and `revive`, rabbitmq-upgrade's commands of those names
//! (`rabbitmq-upgrade drain` puts the node in maintenance mode before an upgrade: no new client
//! connections, the existing ones closed so that clients reconnect to other nodes, the Raft
//! leaderships moved away; `revive` undoes it). Through Pigeon's
//! `/api/pigeon/maintenance/{drain,revive}` (RabbitMQ's CLI uses Erlang distribution).

use super::Ctx;
use crate::ctl::args::arity;
use crate::ctl::error::CtlResult;
use serde_json::{json, Value};

/// `drain [<node name>]`: puts the node (the one addressed, or the member named) in
/// maintenance mode.
pub fn drain(ctx: &Ctx) -> CtlResult {
    run(ctx, "drain")
}

/// `revive [<node name>]`: takes the node out of maintenance mode.
pub fn revive(ctx: &Ctx) -> CtlResult {
    run(ctx, "revive")
}

fn run(ctx: &Ctx, what: &str) -> CtlResult {
    arity(&ctx.inv, 0, 1)?;
    let body = match ctx.inv.args.first() {
        Some(node) => json!({ "node": node }),
        None => json!({}),
    };
    let target = ctx
        .inv
        .args
        .first()
        .map_or_else(|| ctx.node.url().to_string(), Clone::clone);
    if what == "drain" {
        ctx.out.banner(&format!(
            "Will put node {target} into maintenance mode. The node will no longer serve any client traffic!"
        ));
    } else {
        ctx.out.banner(&format!(
            "Will unmark node {target} as under maintenance (revive it)"
        ));
    }
    let reply = ctx.node.send(
        "POST",
        &format!("/api/pigeon/maintenance/{what}"),
        Some(&body),
    )?;
    if ctx.out.json() {
        ctx.out.json_value(&reply.body);
        return Ok(());
    }
    let report = &reply.body;
    if what == "drain" {
        if let Some(n) = report.get("connections_closed").and_then(Value::as_u64) {
            ctx.out.line(&format!("Closed {n} client connections"));
        }
        if let Some(leader) = report.get("metadata_leader").and_then(Value::as_str) {
            ctx.out
                .line(&format!("Metadata store leadership moved to {leader}"));
        }
    }
    for warning in report
        .get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        ctx.out.line(&format!("Warning: {warning}"));
    }
    Ok(())
}
