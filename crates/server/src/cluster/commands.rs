//! The broker's values as the metadata group's command payloads, and back.
//!
//! Arguments tables, policies, limits and vhost metadata travel as JSON text (the cluster
//! crate's `Json`, opaque to it), in the shapes of RabbitMQ's definitions files; a password
//! travels as its stored hash, `<algorithm>:<base64>` (never in clear).

use crate::http::json::{table as table_from_json, table_json as table_to_json};
use pigeon_broker::access::{PasswordHash, UserLimits, VHostInfo, VHostLimits};
use pigeon_broker::policy::{ApplyTo, Policy};
use pigeon_broker::Table;
use pigeon_cluster::meta::Json;
use serde_json::{json, Map, Value};

/// A payload that does not decode (written by a node of another version, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("undecodable metadata command: {0}")]
pub(crate) struct BadCommand(String);

fn object(j: &Json) -> Result<Map<String, Value>, BadCommand> {
    if j.0.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(&j.0) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(BadCommand("not a JSON object".into())),
        Err(e) => Err(BadCommand(e.to_string())),
    }
}

/// An arguments table as JSON.
pub(crate) fn to_json(t: &Table) -> Json {
    Json(table_to_json(t).to_string())
}

/// An arguments table from JSON (an undecodable one is empty: the command is refused or
/// applied the same way on every node).
pub(crate) fn from_json(j: &Json) -> Table {
    object(j).map(|m| table_from_json(&m)).unwrap_or_default()
}

/// A vhost's description and tags.
pub(crate) fn vhost_json(info: &VHostInfo) -> Json {
    // `default_queue_type` travels with the vhost's other metadata, so that every node of a
    // cluster applies the same default (helper quorumone).
    Json(
        json!({"description": info.description, "tags": info.tags,
                "default_queue_type": info.default_queue_type})
        .to_string(),
    )
}

pub(crate) fn vhost_info(j: &Json) -> Result<VHostInfo, BadCommand> {
    let m = object(j)?;
    Ok(VHostInfo {
        description: m
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tags: m
            .get("tags")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        default_queue_type: m
            .get("default_queue_type")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// A stored password hash as `<algorithm>:<base64>`; empty for no password.
pub(crate) fn password_text(p: Option<&PasswordHash>) -> String {
    p.map(|h| format!("{}:{}", h.algorithm().name(), h.to_base64()))
        .unwrap_or_default()
}

pub(crate) fn password(text: &str) -> Result<Option<PasswordHash>, BadCommand> {
    if text.is_empty() {
        return Ok(None);
    }
    let (algorithm, hash) = text
        .split_once(':')
        .ok_or_else(|| BadCommand("a password hash without its algorithm".into()))?;
    PasswordHash::from_definition(hash, algorithm)
        .map(Some)
        .map_err(|e| BadCommand(e.to_string()))
}

fn limit(m: &Map<String, Value>, key: &str) -> Result<Option<u64>, BadCommand> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| BadCommand(format!("{key} is not a count"))),
    }
}

pub(crate) fn vhost_limits_json(l: &VHostLimits) -> Json {
    Json(json!({"max-connections": l.max_connections, "max-queues": l.max_queues}).to_string())
}

pub(crate) fn vhost_limits(j: &Json) -> Result<VHostLimits, BadCommand> {
    let m = object(j)?;
    Ok(VHostLimits {
        max_connections: limit(&m, "max-connections")?,
        max_queues: limit(&m, "max-queues")?,
    })
}

pub(crate) fn user_limits_json(l: &UserLimits) -> Json {
    Json(json!({"max-connections": l.max_connections, "max-channels": l.max_channels}).to_string())
}

pub(crate) fn user_limits(j: &Json) -> Result<UserLimits, BadCommand> {
    let m = object(j)?;
    Ok(UserLimits {
        max_connections: limit(&m, "max-connections")?,
        max_channels: limit(&m, "max-channels")?,
    })
}

/// A policy as in a definitions file (without its name and vhost, which the command carries).
pub(crate) fn policy_json(p: &Policy) -> Json {
    Json(
        json!({
            "pattern": p.pattern,
            "apply-to": p.apply_to.as_str(),
            "priority": p.priority,
            "definition": table_to_json(&p.definition),
        })
        .to_string(),
    )
}

pub(crate) fn policy(name: &str, j: &Json) -> Result<Policy, BadCommand> {
    let m = object(j)?;
    let apply_to = m
        .get("apply-to")
        .and_then(Value::as_str)
        .and_then(ApplyTo::parse)
        .ok_or_else(|| BadCommand("a policy without a valid apply-to".into()))?;
    let definition = match m.get("definition") {
        Some(Value::Object(d)) => table_from_json(d),
        _ => return Err(BadCommand("a policy without a definition".into())),
    };
    Ok(Policy {
        name: name.to_string(),
        pattern: m
            .get("pattern")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        apply_to,
        priority: m
            .get("priority")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or(0),
        definition,
    })
}
