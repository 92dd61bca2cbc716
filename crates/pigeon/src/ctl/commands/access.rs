//! Users, vhosts, permissions and topic permissions, with rabbitmqctl's banners and exit codes
//! (an existing user: 70; no such user: 67; no such vhost: 65; failed authentication: 65).

use super::lists::{require_user, require_vhost};
use super::{items, quoted, Ctx};
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::{json, Value};

fn user_path(user: &str) -> String {
    format!("/api/users/{}", seg(user))
}

/// `add_user <user> <password>`: fails if the user exists, as rabbitmqctl does.
pub fn add_user(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (user, password) = (ctx.arg(0), ctx.arg(1));
    ctx.out.banner(&format!("Adding user {} ...", quoted(user)));
    if ctx.node.get_opt(&user_path(user))?.is_some() {
        return Err(CtlError::Software(format!(
            "User {} already exists",
            quoted(user)
        )));
    }
    let body = json!({"password": password, "tags": ""});
    ctx.node.send("PUT", &user_path(user), Some(&body))?;
    ctx.out.banner(
        "Done. Don't forget to grant the user permissions to some virtual hosts! \
         See 'pigeon ctl help set_permissions' to learn more.",
    );
    Ok(())
}

/// `delete_user <user>`.
pub fn delete_user(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let user = ctx.arg(0);
    ctx.out
        .banner(&format!("Deleting user {} ...", quoted(user)));
    let reply = ctx.node.call("DELETE", &user_path(user), None, &[])?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        404 => Err(CtlError::NoUser(format!(
            "User {} does not exist",
            quoted(user)
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// `change_password <user> <password>` (the user's tags stay).
pub fn change_password(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (user, password) = (ctx.arg(0), ctx.arg(1));
    ctx.out
        .banner(&format!("Changing password for user {} ...", quoted(user)));
    require_user(ctx, user)?;
    ctx.node.send(
        "PUT",
        &user_path(user),
        Some(&json!({"password": password})),
    )?;
    Ok(())
}

/// `set_user_tags <user> [tag ...]` (the password stays).
pub fn set_user_tags(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, usize::MAX)?;
    let user = ctx.arg(0);
    let tags: Vec<&str> = ctx.inv.args[1..].iter().map(String::as_str).collect();
    ctx.out.banner(&format!(
        "Setting tags for user {} to [{}] ...",
        quoted(user),
        tags.join(", ")
    ));
    require_user(ctx, user)?;
    ctx.node.send(
        "PUT",
        &user_path(user),
        Some(&json!({"tags": tags.join(",")})),
    )?;
    Ok(())
}

/// `authenticate_user <user> <password>`: logs in to the API as that user. A user without a
/// management tag is refused the API after its password was checked ("Not management user"),
/// so that answer is a success too.
pub fn authenticate_user(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 2, 2)?;
    let (user, password) = (ctx.arg(0), ctx.arg(1));
    ctx.out
        .banner(&format!("Authenticating user {} ...", quoted(user)));
    let reply = ctx
        .node
        .as_user(user, password)
        .call("GET", "/api/whoami", None, &[])?;
    let reason = reply.reason();
    if reply.ok() || (reply.status == 401 && reason == "Not management user") {
        ctx.out.line("Success");
        return Ok(());
    }
    if reply.status == 401 {
        return Err(CtlError::Data(format!(
            "failed to authenticate user {}: invalid credentials",
            quoted(user)
        )));
    }
    Err(ctx.node.refused(&reply))
}

/// `add_vhost <vhost> [--description d] [--tags a,b] [--default-queue-type t]`.
pub fn add_vhost(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let vhost = ctx.arg(0);
    ctx.out
        .banner(&format!("Adding vhost {} ...", quoted(vhost)));
    let mut body = serde_json::Map::new();
    for key in ["description", "tags", "default-queue-type"] {
        if let Some(v) = ctx.inv.opts.flag(key) {
            body.insert(key.replace('-', "_"), Value::String(v.to_string()));
        }
    }
    let path = format!("/api/vhosts/{}", seg(vhost));
    ctx.node.send("PUT", &path, Some(&Value::Object(body)))?;
    Ok(())
}

/// `update_vhost_metadata <vhost> [--description d] [--tags a,b] [--default-queue-type t]`
/// (rabbitmqctl 3.11+): changes what is given, keeps the rest; the vhost must exist.
pub fn update_vhost_metadata(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let vhost = ctx.arg(0);
    ctx.out
        .banner(&format!("Updating metadata of vhost {} ...", quoted(vhost)));
    require_vhost(ctx, vhost)?;
    let mut body = serde_json::Map::new();
    for key in ["description", "tags", "default-queue-type"] {
        if let Some(v) = ctx.inv.opts.flag(key) {
            body.insert(key.replace('-', "_"), Value::String(v.to_string()));
        }
    }
    let path = format!("/api/vhosts/{}", seg(vhost));
    ctx.node.send("PUT", &path, Some(&Value::Object(body)))?;
    Ok(())
}

/// `delete_vhost <vhost>`.
pub fn delete_vhost(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let vhost = ctx.arg(0);
    ctx.out
        .banner(&format!("Deleting vhost {} ...", quoted(vhost)));
    let reply = ctx
        .node
        .call("DELETE", &format!("/api/vhosts/{}", seg(vhost)), None, &[])?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        404 => Err(CtlError::Data(format!(
            "Virtual host '{vhost}' does not exist"
        ))),
        _ => Err(ctx.node.refused(&reply)),
    }
}

/// Sends a permission change; a 404 or 400 is explained by whichever of the user and the vhost
/// is missing (67 or 65), else reported as it is.
fn permission_change(ctx: &Ctx, method: &str, path: &str, body: Option<&Value>) -> CtlResult {
    let (user, vhost) = (ctx.arg(0), ctx.vhost());
    let reply = ctx.node.call(method, path, body, &[])?;
    if reply.ok() {
        return Ok(());
    }
    if matches!(reply.status, 400 | 404) {
        require_user(ctx, user)?;
        require_vhost(ctx, vhost)?;
        if reply.status == 404 && method == "DELETE" {
            // Nothing to clear: rabbitmqctl succeeds too.
            return Ok(());
        }
    }
    Err(ctx.node.refused(&reply))
}

/// `set_permissions [-p vhost] <user> <conf> <write> <read>`.
pub fn set_permissions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 4, 4)?;
    let (user, vhost) = (ctx.arg(0), ctx.vhost());
    ctx.out.banner(&format!(
        "Setting permissions for user {} in vhost {} ...",
        quoted(user),
        quoted(vhost)
    ));
    let body = json!({"configure": ctx.arg(1), "write": ctx.arg(2), "read": ctx.arg(3)});
    let path = format!("/api/permissions/{}/{}", seg(vhost), seg(user));
    permission_change(ctx, "PUT", &path, Some(&body))
}

/// `clear_permissions [-p vhost] <user>`.
pub fn clear_permissions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let (user, vhost) = (ctx.arg(0), ctx.vhost());
    ctx.out.banner(&format!(
        "Clearing permissions for user {} in vhost {} ...",
        quoted(user),
        quoted(vhost)
    ));
    let path = format!("/api/permissions/{}/{}", seg(vhost), seg(user));
    permission_change(ctx, "DELETE", &path, None)
}

/// `set_topic_permissions [-p vhost] <user> <exchange> <write> <read>`.
pub fn set_topic_permissions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 4, 4)?;
    let (user, vhost, exchange) = (ctx.arg(0), ctx.vhost(), ctx.arg(1));
    ctx.out.banner(&format!(
        "Setting topic permissions on {} for user {} in vhost {} ...",
        quoted(exchange),
        quoted(user),
        quoted(vhost)
    ));
    let body = json!({"exchange": exchange, "write": ctx.arg(2), "read": ctx.arg(3)});
    let path = format!("/api/topic-permissions/{}/{}", seg(vhost), seg(user));
    permission_change(ctx, "PUT", &path, Some(&body))
}

/// `clear_topic_permissions [-p vhost] <user> [<exchange>]`. The API clears a user's topic
/// permissions in a vhost all at once; for one exchange the others are put back.
pub fn clear_topic_permissions(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 2)?;
    let (user, vhost) = (ctx.arg(0), ctx.vhost());
    let exchange = ctx.inv.args.get(1).map(String::as_str);
    match exchange {
        Some(x) => ctx.out.banner(&format!(
            "Clearing topic permissions on {} for user {} in vhost {} ...",
            quoted(x),
            quoted(user),
            quoted(vhost)
        )),
        None => ctx.out.banner(&format!(
            "Clearing topic permissions for user {} in vhost {} ...",
            quoted(user),
            quoted(vhost)
        )),
    }
    let path = format!("/api/topic-permissions/{}/{}", seg(vhost), seg(user));
    let kept: Vec<Value> = match exchange {
        Some(x) => items(ctx.node.get_opt(&path)?.unwrap_or(Value::Null))
            .into_iter()
            .filter(|p| p.get("exchange").and_then(Value::as_str) != Some(x))
            .collect(),
        None => Vec::new(),
    };
    permission_change(ctx, "DELETE", &path, None)?;
    for p in kept {
        let body = json!({"exchange": p["exchange"], "write": p["write"], "read": p["read"]});
        permission_change(ctx, "PUT", &path, Some(&body))?;
    }
    Ok(())
}
