//! Runtime and global parameters (`rabbit_mgmt_wm_parameters`, `rabbit_mgmt_wm_parameter`,
//! `rabbit_mgmt_wm_global_parameters`, `rabbit_mgmt_wm_global_parameter`):
//! `/api/parameters[/{component}[/{vhost}[/{name}]]]` and `/api/global-parameters[/{name}]`.
//!
//! Values are any JSON, kept as they came (`pigeon_broker::parameters`) so that definitions
//! round-trip; no component acts yet (federation, shovels...), except `vhost-limits`, which
//! RabbitMQ keeps as a runtime parameter and Pigeon as the vhost's limits: it reads and writes
//! those, and `operator_policy`, under which RabbitMQ lists (and exports) operator policies:
//! they are the vhost's operator policies. The global parameter `cluster_name` is
//! `/api/cluster-name`'s.
//!
//! Who may: `policymaker` or `administrator`, runtime parameters only in the vhosts the
//! caller has access to (administrators: all) (`is_authorized_policies`,
//! `is_authorized_global_parameters`).

use super::json::body;
use super::policies::{is_policymaker, live_vhost, require_policies};
use super::{blocking, created_or_updated, ApiError, ApiResult, Caller, Shared, CLUSTER_NAME};
use crate::cluster::commands;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::access::VHostLimits;
use pigeon_broker::{Parameter, PolicyKind};
use pigeon_cluster::meta::{Json as JsonText, LimitScope};
use pigeon_cluster::MetaCommand;
use serde_json::{json, Map, Value};

/// RabbitMQ's component for vhost limits.
const VHOST_LIMITS: &str = "vhost-limits";
/// RabbitMQ's component for operator policies (`rabbit_runtime_parameters:list/0` leaves out
/// only `policy`).
pub(super) const OPERATOR_POLICY: &str = "operator_policy";

/// An operator policy as the runtime parameter RabbitMQ keeps it as.
pub(super) fn operator_parameter(vhost: &str, p: &pigeon_broker::Policy) -> Value {
    json!({"vhost": vhost, "component": OPERATOR_POLICY, "name": p.name, "value": {
        "pattern": p.pattern, "definition": super::json::table_json(&p.definition),
        "priority": p.priority, "apply-to": p.apply_to.as_str()}})
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/parameters", get(list_all))
        .route("/api/parameters/{component}", get(list_component))
        .route("/api/parameters/{component}/{vhost}", get(list_vhost))
        .route(
            "/api/parameters/{component}/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/global-parameters", get(globals))
        .route(
            "/api/global-parameters/{name}",
            get(global_show).put(global_put).delete(global_delete),
        )
}

/// A parameter as RabbitMQ shows it (`rabbit_mgmt_format:parameter/1`); a stored value that
/// is no longer JSON (it always is) shows as a string.
pub(super) fn parameter_json(p: &Parameter) -> Value {
    let value = serde_json::from_str::<Value>(&p.value).unwrap_or(Value::String(p.value.clone()));
    json!({"vhost": p.vhost, "component": p.component, "name": p.name, "value": value})
}

/// The `vhost-limits` parameter of `vhost`, if it has limits.
pub(super) fn limits_parameter(http: &Shared, vhost: &str) -> Option<Value> {
    let l = http.state.broker.access().vhost_limits(vhost);
    let mut value = Map::new();
    if let Some(n) = l.max_connections {
        value.insert("max-connections".into(), json!(n));
    }
    if let Some(n) = l.max_queues {
        value.insert("max-queues".into(), json!(n));
    }
    (!value.is_empty()).then(
        || json!({"vhost": vhost, "component": VHOST_LIMITS, "name": "limits", "value": value}),
    )
}

/// The parameters of the vhosts the caller sees, of `component` and `vhost` when given,
/// sorted by vhost, component and name.
fn listing(http: &Shared, caller: &Caller, component: Option<&str>, vhost: Option<&str>) -> Value {
    let visible: Vec<String> = caller
        .vhosts(http)
        .iter()
        .map(|v| v.name().to_string())
        .filter(|v| vhost.is_none_or(|o| o == v))
        .collect();
    let mut rows: Vec<Value> = http
        .state
        .broker
        .parameters()
        .list()
        .iter()
        .filter(|p| visible.contains(&p.vhost) && component.is_none_or(|c| c == p.component))
        .map(parameter_json)
        .collect();
    if component.is_none_or(|c| c == VHOST_LIMITS) {
        rows.extend(visible.iter().filter_map(|v| limits_parameter(http, v)));
    }
    if component.is_none_or(|c| c == OPERATOR_POLICY) {
        for v in caller.vhosts(http) {
            if visible.iter().any(|n| n == v.name()) {
                rows.extend(
                    v.policies_of(PolicyKind::Operator)
                        .iter()
                        .map(|p| operator_parameter(v.name(), p)),
                );
            }
        }
    }
    let key = |p: &Value| {
        ["vhost", "component", "name"].map(|k| p[k].as_str().unwrap_or_default().to_string())
    };
    rows.sort_by_key(key);
    Value::Array(rows)
}

async fn list_all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    require_policies(&http, &caller, None)?;
    Ok(Json(listing(&http, &caller, None, None)))
}

async fn list_component(
    State(http): State<Shared>,
    caller: Caller,
    Path(component): Path<String>,
) -> ApiResult<Json<Value>> {
    require_policies(&http, &caller, None)?;
    Ok(Json(listing(&http, &caller, Some(&component), None)))
}

async fn list_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path((component, vhost)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_policies(&http, &caller, Some(&vhost))?;
    live_vhost(&http, &vhost)?;
    Ok(Json(listing(
        &http,
        &caller,
        Some(&component),
        Some(&vhost),
    )))
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    require_policies(&http, &caller, Some(&vhost))?;
    live_vhost(&http, &vhost)?;
    if component == OPERATOR_POLICY {
        caller.require_admin()?;
        let v = live_vhost(&http, &vhost)?;
        return v
            .policy(PolicyKind::Operator, &name)
            .map(|p| Json(operator_parameter(&vhost, &p)))
            .ok_or_else(ApiError::not_found);
    }
    if component == VHOST_LIMITS {
        return limits_parameter(&http, &vhost)
            .filter(|_| name == "limits")
            .map(Json)
            .ok_or_else(ApiError::not_found);
    }
    http.state
        .broker
        .parameters()
        .get(&vhost, &component, &name)
        .map(|p| Json(parameter_json(&p)))
        .ok_or_else(ApiError::not_found)
}

/// The `value` of a PUT body (any JSON but null).
fn value_of(bytes: &Bytes) -> ApiResult<Value> {
    match body(bytes)?.remove("value") {
        None | Some(Value::Null) => Err(ApiError::bad_request("value is required")),
        Some(v) => Ok(v),
    }
}

fn limit(v: Option<&Value>) -> ApiResult<Option<u64>> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => Ok(None),
            Some(n) => Ok(Some(n as u64)),
            None => Err(ApiError::bad_request(format!(
                "Validation failed\n\n{v} is not a valid limit value\n"
            ))),
        },
    }
}

async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    require_policies(&http, &caller, Some(&vhost))?;
    live_vhost(&http, &vhost)?;
    let value = value_of(&bytes)?;
    if component == "policy" {
        // rabbit_runtime_parameters:set/5 refuses this component.
        return Err(ApiError::bad_request(
            "policies may not be set using this method",
        ));
    }
    if component == OPERATOR_POLICY {
        caller.require_admin()?;
        let v = live_vhost(&http, &vhost)?;
        let Value::Object(map) = &value else {
            return Err(ApiError::bad_request(
                "Validation failed\n\nan operator policy must be an object\n",
            ));
        };
        let policy = super::policies::parse_policy(&name, map)?;
        let created = v.policy(PolicyKind::Operator, &name).is_none();
        let command = MetaCommand::SetPolicy {
            vhost: vhost.clone(),
            name: name.clone(),
            policy: commands::policy_json(&policy),
            operator: true,
        };
        if super::replicate(&http, command).await? {
            return Ok(created_or_updated(created));
        }
        let created = blocking(move || v.put_policy(PolicyKind::Operator, policy)).await??;
        return Ok(created_or_updated(created));
    }
    if component == VHOST_LIMITS {
        let Value::Object(l) = &value else {
            return Err(ApiError::bad_request(
                "Validation failed\n\nvhost limits must be an object\n",
            ));
        };
        let limits = VHostLimits {
            max_connections: limit(l.get("max-connections"))?,
            max_queues: limit(l.get("max-queues"))?,
        };
        let created = limits_parameter(&http, &vhost).is_none();
        let command = MetaCommand::SetLimits {
            scope: LimitScope::Vhost(vhost.clone()),
            limits: commands::vhost_limits_json(&limits),
        };
        if !super::replicate(&http, command).await? {
            let h = http.clone();
            blocking(move || h.state.broker.access().try_set_vhost_limits(&vhost, limits))
                .await??;
        }
        return Ok(created_or_updated(created));
    }
    let created = http
        .state
        .broker
        .parameters()
        .get(&vhost, &component, &name)
        .is_none();
    let command = MetaCommand::SetParameter {
        vhost: Some(vhost.clone()),
        component: component.clone(),
        name: name.clone(),
        value: JsonText(value.to_string()),
    };
    if super::replicate(&http, command).await? {
        return Ok(created_or_updated(created));
    }
    let parameter = Parameter {
        vhost,
        component,
        name,
        value: value.to_string(),
    };
    let h = http.clone();
    let created = blocking(move || h.state.broker.parameters().set(parameter))
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(created_or_updated(created))
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    require_policies(&http, &caller, Some(&vhost))?;
    live_vhost(&http, &vhost)?;
    if component == OPERATOR_POLICY {
        caller.require_admin()?;
        let v = live_vhost(&http, &vhost)?;
        let removed = if http.state.cluster.is_some() {
            let command = MetaCommand::ClearPolicy {
                vhost: vhost.clone(),
                name: name.clone(),
                operator: true,
            };
            v.policy(PolicyKind::Operator, &name).is_some()
                && super::replicate(&http, command).await?
        } else {
            blocking(move || v.remove_policy(PolicyKind::Operator, &name)).await??
        };
        if !removed {
            return Err(ApiError::not_found());
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if component == VHOST_LIMITS {
        if limits_parameter(&http, &vhost).is_none() || name != "limits" {
            return Err(ApiError::not_found());
        }
        let command = MetaCommand::SetLimits {
            scope: LimitScope::Vhost(vhost.clone()),
            limits: commands::vhost_limits_json(&VHostLimits::default()),
        };
        if !super::replicate(&http, command).await? {
            let h = http.clone();
            blocking(move || {
                h.state
                    .broker
                    .access()
                    .try_set_vhost_limits(&vhost, VHostLimits::default())
            })
            .await??;
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let removed = if http.state.cluster.is_some() {
        let command = MetaCommand::ClearParameter {
            vhost: Some(vhost.clone()),
            component: component.clone(),
            name: name.clone(),
        };
        http.state
            .broker
            .parameters()
            .get(&vhost, &component, &name)
            .is_some()
            && super::replicate(&http, command).await?
    } else {
        let h = http.clone();
        blocking(move || h.state.broker.parameters().clear(&vhost, &component, &name))
            .await?
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    if !removed {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `is_authorized_global_parameters`: policymakers and administrators.
fn require_global(caller: &Caller) -> ApiResult<()> {
    if is_policymaker(caller) {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access object",
        ))
    }
}

/// Every global parameter; `cluster_name` always (RabbitMQ sets it at first start).
pub(super) fn global_list(http: &Shared) -> Vec<Value> {
    let mut rows: Vec<Value> = http
        .state
        .broker
        .parameters()
        .globals()
        .into_iter()
        .filter(|(name, _)| name != CLUSTER_NAME)
        .map(|(name, value)| {
            let value = serde_json::from_str::<Value>(&value).unwrap_or(Value::String(value));
            json!({"name": name, "value": value})
        })
        .collect();
    rows.push(json!({"name": CLUSTER_NAME, "value": http.cluster_name()}));
    rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    rows
}

async fn globals(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    require_global(&caller)?;
    Ok(Json(Value::Array(global_list(&http))))
}

async fn global_show(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    require_global(&caller)?;
    global_list(&http)
        .into_iter()
        .find(|p| p["name"] == name.as_str())
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// Sets a global parameter: through the cluster when clustered (`cluster_name` included, so
/// that every node shows the same name), else here. True if it was new. `cluster_name` must
/// be a string.
pub(super) async fn put_global(http: &Shared, name: String, value: Value) -> ApiResult<bool> {
    if name == CLUSTER_NAME && !value.is_string() {
        return Err(ApiError::bad_request(
            "Validation failed\n\ncluster_name must be a string\n",
        ));
    }
    let created = http.state.broker.parameters().global(&name).is_none();
    let command = MetaCommand::SetParameter {
        vhost: None,
        component: String::new(),
        name: name.clone(),
        value: JsonText(value.to_string()),
    };
    if super::replicate(http, command).await? {
        return Ok(created);
    }
    let h = http.clone();
    blocking(move || set_global(&h, &name, &value)).await?
}

/// Sets a global parameter on this node only (blocking: the store fsyncs). `cluster_name`
/// must be a string.
pub(super) fn set_global(http: &Shared, name: &str, value: &Value) -> ApiResult<bool> {
    if name == CLUSTER_NAME {
        let Value::String(n) = value else {
            return Err(ApiError::bad_request(
                "Validation failed\n\ncluster_name must be a string\n",
            ));
        };
        let created = http
            .state
            .broker
            .parameters()
            .global(CLUSTER_NAME)
            .is_none();
        http.set_cluster_name(n)?;
        return Ok(created);
    }
    http.state
        .broker
        .parameters()
        .set_global(name, &value.to_string())
        .map_err(|e| ApiError::internal(e.to_string()))
}

async fn global_put(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    require_global(&caller)?;
    let value = value_of(&bytes)?;
    let created = put_global(&http, name, value).await?;
    Ok(created_or_updated(created))
}

async fn global_delete(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require_global(&caller)?;
    let removed = if http.state.cluster.is_some() {
        let command = MetaCommand::ClearParameter {
            vhost: None,
            component: String::new(),
            name: name.clone(),
        };
        http.state.broker.parameters().global(&name).is_some()
            && super::replicate(&http, command).await?
    } else {
        let h = http.clone();
        blocking(move || h.state.broker.parameters().clear_global(&name))
            .await?
            .map_err(|e| ApiError::internal(e.to_string()))?
    };
    if !removed {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
