//! Applying a definitions document (see `definitions.rs` for the order and the rules). Runs
//! on a blocking thread: every user, vhost and permission is written to the store.

use super::{describe, policy, queue_options};
use crate::http::json::{arguments, opt_str, tags};
use crate::http::queues::API_CONNECTION;
use crate::http::{ApiError, ApiResult, Shared};
use pigeon_broker::access::{PasswordHash, User, UserLimits, VHostInfo, VHostLimits};
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_broker::{Destination, ExchangeDeclare};
use serde_json::{Map, Value};

type Object = Map<String, Value>;

/// The objects of a section (`users`, `queues`...); a section that is not a list of objects
/// is a 400.
fn section<'a>(defs: &'a Object, key: &str) -> ApiResult<Vec<&'a Object>> {
    match defs.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| ApiError::bad_request(format!("{key} must hold objects")))
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a list"))),
    }
}

fn required<'a>(o: &'a Object, key: &str, what: &str) -> ApiResult<&'a str> {
    opt_str(o, key)?.ok_or_else(|| ApiError::bad_request(format!("{what} without {key}")))
}

fn limit(v: &Value) -> Option<u64> {
    v.as_i64().and_then(|n| u64::try_from(n).ok())
}

/// Imports `defs`; with `only` every object goes to that vhost (a vhost's import). Returns
/// what was skipped.
pub(super) fn import(http: &Shared, defs: &Object, only: Option<&str>) -> ApiResult<Vec<String>> {
    let broker = &http.state.broker;
    let access = broker.access();
    let mut warnings = Vec::new();
    let vhost_of = |o: &Object| -> ApiResult<String> {
        match only {
            Some(v) => Ok(v.to_string()),
            None => Ok(opt_str(o, "vhost")?.unwrap_or("/").to_string()),
        }
    };
    if only.is_none() {
        for u in section(defs, "users")? {
            let name = required(u, "name", "user")?;
            let hash = opt_str(u, "password_hash")?.unwrap_or("");
            let algorithm =
                opt_str(u, "hashing_algorithm")?.unwrap_or("rabbit_password_hashing_sha256");
            let password = if hash.is_empty() {
                None
            } else {
                Some(
                    PasswordHash::from_definition(hash, algorithm)
                        .map_err(|e| ApiError::bad_request(format!("user {name}: {e}")))?,
                )
            };
            access.put_user(User {
                name: name.to_string(),
                password,
                tags: tags(u, "tags")?.unwrap_or_default(),
            })?;
            if let Some(Value::Object(l)) = u.get("limits") {
                let limits = UserLimits {
                    max_connections: l.get("max-connections").and_then(limit),
                    max_channels: l.get("max-channels").and_then(limit),
                };
                access.try_set_user_limits(name, limits)?;
            }
        }
        for v in section(defs, "vhosts")? {
            let name = required(v, "name", "vhost")?;
            let meta = v.get("metadata").and_then(Value::as_object);
            let description = opt_str(v, "description")?
                .or(meta
                    .and_then(|m| m.get("description"))
                    .and_then(Value::as_str))
                .unwrap_or("");
            let vtags = match tags(v, "tags")? {
                Some(t) => t,
                None => meta
                    .map(|m| tags(m, "tags"))
                    .transpose()?
                    .flatten()
                    .unwrap_or_default(),
            };
            broker.add_vhost(
                name,
                VHostInfo {
                    description: description.to_string(),
                    tags: vtags,
                },
            )?;
        }
        for p in section(defs, "permissions")? {
            let (user, vhost) = (
                required(p, "user", "permission")?,
                required(p, "vhost", "permission")?,
            );
            let permission = Permission {
                configure: required(p, "configure", "permission")?.into(),
                write: required(p, "write", "permission")?.into(),
                read: required(p, "read", "permission")?.into(),
            };
            broker.set_permissions(user, vhost, permission)?;
        }
        for p in section(defs, "topic_permissions")? {
            let (user, vhost) = (
                required(p, "user", "topic permission")?,
                required(p, "vhost", "topic permission")?,
            );
            broker.check_user_and_vhost(user, vhost)?;
            let permission = TopicPermission {
                exchange: required(p, "exchange", "topic permission")?.into(),
                write: required(p, "write", "topic permission")?.into(),
                read: required(p, "read", "topic permission")?.into(),
            };
            access.try_set_topic_permission(user, vhost, permission)?;
        }
        for g in section(defs, "global_parameters")? {
            match (opt_str(g, "name")?, g.get("value")) {
                (Some("cluster_name"), Some(Value::String(n))) => {
                    *http.cluster_name.write() = n.clone()
                }
                // RabbitMQ exports an internal cluster id; it means nothing here.
                (Some("internal_cluster_id"), _) => {}
                _ => warnings.push(describe("global parameter", g)),
            }
        }
    }
    for p in section(defs, "parameters")? {
        let vhost = vhost_of(p)?;
        match (opt_str(p, "component")?, p.get("value")) {
            (Some("vhost-limits"), Some(Value::Object(l))) => {
                if broker.vhost(&vhost).is_none() {
                    return Err(ApiError::bad_request(format!("no such vhost '{vhost}'")));
                }
                let limits = VHostLimits {
                    max_connections: l.get("max-connections").and_then(limit),
                    max_queues: l.get("max-queues").and_then(limit),
                };
                access.try_set_vhost_limits(&vhost, limits)?;
            }
            (component, _) => warnings.push(format!(
                "parameter {} of component {} in vhost {vhost} (not supported)",
                p.get("name").and_then(Value::as_str).unwrap_or("?"),
                component.unwrap_or("?")
            )),
        }
    }
    let vhost = |name: &str| {
        broker
            .vhost(name)
            .filter(|v| !v.is_deleted())
            .ok_or_else(|| ApiError::bad_request(format!("no such vhost '{name}'")))
    };
    let policies = section(defs, "policies")?;
    for p in &policies {
        let v = vhost(&vhost_of(p)?)?;
        v.set_policy(policy(p)?)?;
    }
    if !policies.is_empty() {
        warnings.push(
            "policies are kept in memory only: add them to the configuration file to keep them across restarts"
                .into(),
        );
    }
    for x in section(defs, "exchanges")? {
        let v = vhost(&vhost_of(x)?)?;
        let name = required(x, "name", "exchange")?;
        if name.is_empty() || name.starts_with("amq.") {
            continue;
        }
        let kind = required(x, "type", "exchange")?;
        v.declare_exchange(&ExchangeDeclare {
            name,
            kind,
            passive: false,
            durable: crate::http::json::opt_bool(x, "durable")?.unwrap_or(true),
            auto_delete: crate::http::json::opt_bool(x, "auto_delete")?.unwrap_or(false),
            internal: crate::http::json::opt_bool(x, "internal")?.unwrap_or(false),
            arguments: arguments(x)?,
        })?;
    }
    for q in section(defs, "queues")? {
        let v = vhost(&vhost_of(q)?)?;
        let name = required(q, "name", "queue")?;
        let mut options = queue_options(q)?;
        // Quorum and stream queues are not there yet: import them as classic queues (their
        // messages and bindings work the same) and say so.
        let kind = options
            .arguments
            .get_str("x-queue-type")
            .map(str::to_string);
        if let Some(kind) = kind.filter(|k| k != "classic") {
            warnings.push(format!("queue {name} in vhost {} imported as a classic queue (type {kind} is not supported)", v.name()));
            options.arguments.0.retain(|(k, _)| k != "x-queue-type");
        }
        v.declare_queue(name, false, options, API_CONNECTION)?;
    }
    for b in section(defs, "bindings")? {
        let v = vhost(&vhost_of(b)?)?;
        let source = required(b, "source", "binding")?;
        if source.is_empty() {
            continue;
        }
        let dest = required(b, "destination", "binding")?;
        let destination = match opt_str(b, "destination_type")?.unwrap_or("queue") {
            "queue" => Destination::Queue(v.queue(dest)?),
            "exchange" => Destination::Exchange(v.exchange(dest)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid destination_type {other:?}"
                )))
            }
        };
        let key = opt_str(b, "routing_key")?.unwrap_or("");
        v.bind(source, destination, key, arguments(b)?)?;
    }
    Ok(warnings)
}
