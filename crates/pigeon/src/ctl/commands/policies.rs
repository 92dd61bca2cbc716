//! Policies and limits, through RabbitMQ's endpoints: `/api/policies/{vhost}/{name}`
//! (`{"pattern", "definition", "priority", "apply-to"}`), `/api/vhost-limits/{vhost}/{name}` and
//! `/api/user-limits/{user}/{name}` (`{"value": n}`).
//!
//! `set_vhost_limits` replaces a vhost's limits with the definition given (RabbitMQ stores them
//! as one runtime parameter), so limits it leaves out are cleared; `set_user_limits` adds to a
//! user's limits, as `rabbit_auth_backend_internal:set_user_limits` does.

use super::lists::require_user;
use super::{items, quoted, render, Ctx};
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::{json, Map, Value};

/// `set_policy [-p vhost] [--priority n] [--apply-to t] <name> <pattern> <definition>`.
pub fn set_policy(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 3, 3)?;
    let (name, pattern, definition) = (ctx.arg(0), ctx.arg(1), ctx.arg(2));
    let vhost = ctx.vhost();
    let priority = match ctx.inv.opts.flag("priority") {
        None => 0,
        Some(p) => p
            .parse::<i64>()
            .map_err(|_| CtlError::Data(format!("priority must be an integer, not {p:?}")))?,
    };
    let apply_to = ctx.inv.opts.flag("apply-to").unwrap_or("all");
    ctx.out.banner(&format!(
        "Setting policy {} for pattern {} to {} with priority \"{priority}\" for vhost {} ...",
        quoted(name),
        quoted(pattern),
        quoted(definition),
        quoted(vhost)
    ));
    let definition: Value = serde_json::from_str(definition)
        .map_err(|e| CtlError::Data(format!("the definition is not valid JSON: {e}")))?;
    let body = json!({
        "pattern": pattern,
        "definition": definition,
        "priority": priority,
        "apply-to": apply_to,
    });
    let path = format!("/api/policies/{}/{}", seg(vhost), seg(name));
    let reply = ctx.node.call("PUT", &path, Some(&body), &[])?;
    if reply.ok() {
        return Ok(());
    }
    if reply.status == 404 {
        super::lists::require_vhost(ctx, vhost)?;
    }
    Err(ctx.node.refused(&reply))
}

/// `clear_policy [-p vhost] <name>`: a policy that does not exist is an error (69, as
/// rabbitmqctl's "Parameter does not exist").
pub fn clear_policy(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let (name, vhost) = (ctx.arg(0), ctx.vhost());
    ctx.out.banner(&format!(
        "Clearing policy {} on vhost {} ...",
        quoted(name),
        quoted(vhost)
    ));
    let path = format!("/api/policies/{}/{}", seg(vhost), seg(name));
    let reply = ctx.node.call("DELETE", &path, None, &[])?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        404 => Err(CtlError::Unavailable(format!(
            "policy {} does not exist in vhost {}",
            quoted(name),
            quoted(vhost)
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// A limits definition: a JSON object of integers.
fn limits_arg(text: &str) -> CtlResult<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) if map.values().all(|v| v.is_i64()) => Ok(map),
        _ => Err(CtlError::Data(format!(
            "limits must be a JSON object of integers, such as '{{\"max-connections\": 100}}', not {text:?}"
        ))),
    }
}

/// The limits currently set at `path` (`[{"value": {...}}]`), as a map.
fn current_limits(ctx: &Ctx, path: &str) -> CtlResult<Map<String, Value>> {
    let body = ctx.node.get_opt(path)?.unwrap_or(Value::Null);
    Ok(items(body)
        .into_iter()
        .find_map(|item| match item.get("value") {
            Some(Value::Object(map)) => Some(map.clone()),
            _ => None,
        })
        .unwrap_or_default())
}

/// `set_vhost_limits [-p vhost] <definition>`.
pub fn set_vhost_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let vhost = ctx.vhost();
    ctx.out.banner(&format!(
        "Setting vhost limits to {} for vhost {} ...",
        quoted(ctx.arg(0)),
        quoted(vhost)
    ));
    let limits = limits_arg(ctx.arg(0))?;
    super::lists::require_vhost(ctx, vhost)?;
    let base = format!("/api/vhost-limits/{}", seg(vhost));
    for name in current_limits(ctx, &base)?.keys() {
        if !limits.contains_key(name) {
            ctx.node
                .send("DELETE", &format!("{base}/{}", seg(name)), None)?;
        }
    }
    for (name, value) in &limits {
        let body = json!({ "value": value });
        ctx.node
            .send("PUT", &format!("{base}/{}", seg(name)), Some(&body))?;
    }
    Ok(())
}

/// `clear_vhost_limits [-p vhost]`.
pub fn clear_vhost_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let vhost = ctx.vhost();
    ctx.out
        .banner(&format!("Clearing vhost {} limits ...", quoted(vhost)));
    super::lists::require_vhost(ctx, vhost)?;
    let base = format!("/api/vhost-limits/{}", seg(vhost));
    for name in current_limits(ctx, &base)?.keys() {
        ctx.node
            .send("DELETE", &format!("{base}/{}", seg(name)), None)?;
    }
    Ok(())
}

/// `list_vhost_limits [-p vhost] [--global]`: the vhost's limits as JSON, or (`--global`) a
/// table of every vhost's.
pub fn list_vhost_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    if ctx.inv.opts.switch("global") {
        ctx.out.banner("Listing limits for all vhosts ...");
        return limits_table(ctx, "/api/vhost-limits", "vhost");
    }
    let vhost = ctx.vhost();
    ctx.out
        .banner(&format!("Listing limits for vhost {} ...", quoted(vhost)));
    super::lists::require_vhost(ctx, vhost)?;
    let limits = current_limits(ctx, &format!("/api/vhost-limits/{}", seg(vhost)))?;
    print_limits(ctx, limits);
    Ok(())
}

/// `set_user_limits <user> <definition>`.
pub fn set_user_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let user = ctx.arg(0);
    ctx.out.banner(&format!(
        "Setting user limits to {} for user {} ...",
        quoted(ctx.arg(1)),
        quoted(user)
    ));
    let limits = limits_arg(ctx.arg(1))?;
    require_user(ctx, user)?;
    for (name, value) in &limits {
        let path = format!("/api/user-limits/{}/{}", seg(user), seg(name));
        ctx.node
            .send("PUT", &path, Some(&json!({ "value": value })))?;
    }
    Ok(())
}

/// `clear_user_limits <user> <limit | all>`.
pub fn clear_user_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (user, which) = (ctx.arg(0), ctx.arg(1));
    ctx.out.banner(&format!(
        "Clearing \"{which}\" limit for user {} ...",
        quoted(user)
    ));
    require_user(ctx, user)?;
    let base = format!("/api/user-limits/{}", seg(user));
    let names: Vec<String> = if which == "all" {
        current_limits(ctx, &base)?.keys().cloned().collect()
    } else {
        vec![which.to_string()]
    };
    for name in names {
        let reply = ctx
            .node
            .call("DELETE", &format!("{base}/{}", seg(&name)), None, &[])?;
        if !reply.ok() && reply.status != 404 {
            return Err(ctx.node.refused(&reply));
        }
    }
    Ok(())
}

/// `list_user_limits [--user u] [--global]`.
pub fn list_user_limits(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    match ctx.inv.opts.flag("user") {
        Some(user) if !ctx.inv.opts.switch("global") => {
            ctx.out
                .banner(&format!("Listing limits for user {} ...", quoted(user)));
            require_user(ctx, user)?;
            let limits = current_limits(ctx, &format!("/api/user-limits/{}", seg(user)))?;
            print_limits(ctx, limits);
            Ok(())
        }
        _ => {
            ctx.out.banner("Listing limits for all users ...");
            limits_table(ctx, "/api/user-limits", "user")
        }
    }
}

fn print_limits(ctx: &Ctx, limits: Map<String, Value>) {
    ctx.out.json_value(&Value::Object(limits));
}

/// A table of every vhost's or user's limits: `<owner> limits`.
fn limits_table(ctx: &Ctx, path: &str, owner: &str) -> CtlResult {
    let body = ctx.node.get(path)?;
    let columns = vec![owner.to_string(), "limits".to_string()];
    let rows: Vec<Vec<Value>> = items(body)
        .into_iter()
        .map(|item| {
            vec![
                item.get(owner).cloned().unwrap_or(Value::Null),
                item.get("value").cloned().unwrap_or(Value::Null),
            ]
        })
        .collect();
    ctx.out.rows(&columns, &rows, render);
    Ok(())
}
