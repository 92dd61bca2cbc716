//! Policies and operator policies (`rabbit_mgmt_wm_policies`, `rabbit_mgmt_wm_policy`,
//! `rabbit_mgmt_wm_operator_policies`, `rabbit_mgmt_wm_operator_policy`):
//! `/api/policies[/{vhost}[/{name}]]` and `/api/operator-policies[/{vhost}[/{name}]]`.
//!
//! Who may: listing policies is open to every management user, for the vhosts it can see
//! (`is_authorized_vhost` + `filter_vhost`); reading, setting and clearing one takes
//! `administrator`, or `policymaker` with access to the vhost (`is_authorized_policies`).
//! Operator policies are for administrators only (`is_authorized_admin`).
//!
//! A PUT takes RabbitMQ's body, `{"pattern", "definition", "priority", "apply-to"}`
//! (`priority` 0 and `apply-to` "all" when absent), checks it as `rabbit_policy` does (see
//! `pigeon_broker::policy`) and answers 201 (new) or 204 (replaced); a refused one is a 400
//! whose reason starts "Validation failed", as RabbitMQ's.

use super::json::{body, req_str, table, table_json};
use super::{blocking, created_or_updated, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::{ApplyTo, Policy, PolicyKind};
use serde_json::{json, Map, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/policies", get(list_all))
        .route("/api/policies/{vhost}", get(list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/operator-policies", get(op_list_all))
        .route("/api/operator-policies/{vhost}", get(op_list_vhost))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(op_show).put(op_put).delete(op_delete),
        )
}

/// `policymaker` or `administrator` (RabbitMQ's `is_policymaker` counts both).
pub(super) fn is_policymaker(caller: &Caller) -> bool {
    caller.is_admin() || caller.tags.iter().any(|t| t == "policymaker")
}

/// `rabbit_mgmt_util:is_authorized_policies`: an administrator, or a policymaker with access
/// to `vhost` (a vhost that does not exist passes: the handler answers 404).
pub(super) fn require_policies(
    http: &Shared,
    caller: &Caller,
    vhost: Option<&str>,
) -> ApiResult<()> {
    let in_vhost = |v: &str| {
        http.state.broker.vhost(v).is_none()
            || http
                .state
                .broker
                .access()
                .permission(&caller.name, v)
                .is_some()
    };
    if caller.is_admin() || (is_policymaker(caller) && vhost.is_none_or(in_vhost)) {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access object",
        ))
    }
}

/// The live vhost `name`, or 404.
pub(super) fn live_vhost(
    http: &Shared,
    name: &str,
) -> ApiResult<std::sync::Arc<pigeon_broker::VHost>> {
    http.state
        .broker
        .vhost(name)
        .filter(|v| !v.is_deleted())
        .ok_or_else(ApiError::not_found)
}

/// A policy as RabbitMQ shows it (`rabbit_policy:p/2`).
pub(super) fn policy_json(vhost: &str, p: &Policy) -> Value {
    json!({
        "vhost": vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": table_json(&p.definition),
        "priority": p.priority,
    })
}

fn validation(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Validation failed\n\n{why}\n"))
}

/// A value as Erlang prints it in RabbitMQ's validation messages.
fn erlang(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

/// A policy from a PUT body or a definitions entry (`name` from the path or the entry).
pub(super) fn parse_policy(name: &str, map: &Map<String, Value>) -> ApiResult<Policy> {
    let pattern = req_str(map, "pattern")?;
    let definition = match map.get("definition") {
        Some(Value::Object(d)) => table(d),
        // Old clients send the definition as a JSON document in a string.
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(d)) => table(&d),
            _ => {
                return Err(validation(format!(
                    "definition must be a dictionary: {}",
                    erlang(&Value::String(s.clone()))
                )))
            }
        },
        None | Some(Value::Null) => return Err(ApiError::bad_request("definition is required")),
        Some(other) => {
            return Err(validation(format!(
                "definition must be a dictionary: {}",
                erlang(other)
            )))
        }
    };
    let priority = match map.get("priority") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| {
                validation(format!(
                    "<<\"priority\">> should be an integer, actually was {n}"
                ))
            })?,
        Some(other) => {
            return Err(validation(format!(
                "<<\"priority\">> should be a number, actually was {}",
                erlang(other)
            )))
        }
    };
    let apply_to = match map.get("apply-to") {
        None | Some(Value::Null) => ApplyTo::All,
        Some(Value::String(s)) => ApplyTo::parse(s).ok_or_else(|| {
            validation(format!(
                "apply-to '{s}' unrecognised; should be one of: 'queues', 'classic_queues', \
                 'quorum_queues', 'streams', 'exchanges', or 'all'"
            ))
        })?,
        Some(other) => {
            return Err(validation(format!(
                "apply-to '{}' unrecognised; should be one of: 'queues', 'classic_queues', \
                 'quorum_queues', 'streams', 'exchanges', or 'all'",
                erlang(other)
            )))
        }
    };
    Ok(Policy {
        name: name.to_string(),
        pattern: pattern.to_string(),
        apply_to,
        priority,
        definition,
    })
}

/// Every policy of `kind` in the vhosts the caller sees (or in `only`), by priority as
/// RabbitMQ sorts the list, then vhost and name.
fn listing(http: &Shared, caller: &Caller, kind: PolicyKind, only: Option<&str>) -> Value {
    let mut rows: Vec<(i32, String, String, Value)> = Vec::new();
    for v in caller.vhosts(http) {
        if only.is_some_and(|o| o != v.name()) {
            continue;
        }
        for p in v.policies_of(kind) {
            rows.push((
                p.priority,
                v.name().to_string(),
                p.name.clone(),
                policy_json(v.name(), &p),
            ));
        }
    }
    rows.sort_by(|a, b| (a.0, &a.1, &a.2).cmp(&(b.0, &b.1, &b.2)));
    Value::Array(rows.into_iter().map(|r| r.3).collect())
}

async fn list_all(State(http): State<Shared>, caller: Caller) -> Json<Value> {
    Json(listing(&http, &caller, PolicyKind::Policy, None))
}

async fn list_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&http, &vhost)?;
    Ok(Json(listing(
        &http,
        &caller,
        PolicyKind::Policy,
        Some(&vhost),
    )))
}

async fn op_list_all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(listing(&http, &caller, PolicyKind::Operator, None)))
}

async fn op_list_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    Ok(Json(listing(
        &http,
        &caller,
        PolicyKind::Operator,
        Some(&vhost),
    )))
}

fn authorise(http: &Shared, caller: &Caller, kind: PolicyKind, vhost: &str) -> ApiResult<()> {
    match kind {
        PolicyKind::Policy => require_policies(http, caller, Some(vhost)),
        PolicyKind::Operator => caller.require_admin(),
    }
}

fn show_one(
    http: &Shared,
    caller: &Caller,
    kind: PolicyKind,
    vhost: &str,
    name: &str,
) -> ApiResult<Json<Value>> {
    authorise(http, caller, kind, vhost)?;
    let v = live_vhost(http, vhost)?;
    let p = v.policy(kind, name).ok_or_else(ApiError::not_found)?;
    Ok(Json(policy_json(vhost, &p)))
}

async fn put_one(
    http: Shared,
    caller: Caller,
    kind: PolicyKind,
    vhost: String,
    name: String,
    bytes: Bytes,
) -> ApiResult<Response> {
    authorise(&http, &caller, kind, &vhost)?;
    let v = live_vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let policy = parse_policy(&name, &map)?;
    let created = if http.state.cluster.is_some() {
        let created = v.policy(kind, &name).is_none();
        let command = pigeon_cluster::MetaCommand::SetPolicy {
            vhost: vhost.clone(),
            name: name.clone(),
            policy: crate::cluster::commands::policy_json(&policy),
            operator: kind == pigeon_broker::policy::PolicyKind::Operator,
        };
        super::replicate(&http, command).await?;
        created
    } else {
        blocking(move || v.put_policy(kind, policy)).await??
    };
    tracing::info!(user = %caller.name, %vhost, policy = %name, ?kind, "policy set through the management API");
    Ok(created_or_updated(created))
}

async fn delete_one(
    http: Shared,
    caller: Caller,
    kind: PolicyKind,
    vhost: String,
    name: String,
) -> ApiResult<Response> {
    authorise(&http, &caller, kind, &vhost)?;
    let v = live_vhost(&http, &vhost)?;
    let removed = if http.state.cluster.is_some() {
        let command = pigeon_cluster::MetaCommand::ClearPolicy {
            vhost: vhost.clone(),
            name: name.clone(),
            operator: kind == pigeon_broker::policy::PolicyKind::Operator,
        };
        v.policy(kind, &name).is_some() && super::replicate(&http, command).await?
    } else {
        blocking(move || v.remove_policy(kind, &name)).await??
    };
    if !removed {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    show_one(&http, &caller, PolicyKind::Policy, &vhost, &name)
}

async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    put_one(http, caller, PolicyKind::Policy, vhost, name, bytes).await
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    delete_one(http, caller, PolicyKind::Policy, vhost, name).await
}

async fn op_show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    show_one(&http, &caller, PolicyKind::Operator, &vhost, &name)
}

async fn op_put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    put_one(http, caller, PolicyKind::Operator, vhost, name, bytes).await
}

async fn op_delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    delete_one(http, caller, PolicyKind::Operator, vhost, name).await
}
