//! Vhost and user limits (`rabbit_mgmt_wm_limits`, `rabbit_mgmt_wm_limit`,
//! `rabbit_mgmt_wm_user_limits`): `/api/vhost-limits[/{vhost}[/{name}]]` and
//! `/api/user-limits[/{user}[/{name}]]`. PUT `{"value": N}`; a negative value is "no limit",
//! as in RabbitMQ.

use super::json::body;
use super::{blocking, user_or_404, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use pigeon_broker::access::{UserLimits, VHostLimits};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/vhost-limits", get(vhost_all))
        .route("/api/vhost-limits/{vhost}", get(vhost_one))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            put(vhost_put).delete(vhost_delete),
        )
        .route("/api/user-limits", get(user_all))
        .route("/api/user-limits/{user}", get(user_one))
        .route(
            "/api/user-limits/{user}/{name}",
            put(user_put).delete(user_delete),
        )
}

fn vhost_value(l: &VHostLimits) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(n) = l.max_connections {
        m.insert("max-connections".into(), json!(n));
    }
    if let Some(n) = l.max_queues {
        m.insert("max-queues".into(), json!(n));
    }
    m
}

fn user_value(l: &UserLimits) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(n) = l.max_connections {
        m.insert("max-connections".into(), json!(n));
    }
    if let Some(n) = l.max_channels {
        m.insert("max-channels".into(), json!(n));
    }
    m
}

/// `{"value": N}`: `Some(N)`, or `None` for a negative N (no limit).
fn limit_value(bytes: &Bytes) -> ApiResult<Option<u64>> {
    let map = body(bytes)?;
    match map.get("value").and_then(Value::as_i64) {
        Some(n) if n < 0 => Ok(None),
        Some(n) => Ok(Some(n as u64)),
        None => Err(ApiError::bad_request("value must be an integer")),
    }
}

fn vhost_limits_json(http: &Shared, caller: &Caller, only: Option<&str>) -> Value {
    let access = http.state.broker.access();
    let rows: Vec<Value> = http
        .state
        .broker
        .vhosts()
        .iter()
        .filter(|v| !v.is_deleted() && only.is_none_or(|o| o == v.name()))
        .filter(|v| caller.sees_vhost(http, v.name()))
        .filter_map(|v| {
            let value = vhost_value(&access.vhost_limits(v.name()));
            (!value.is_empty()).then(|| json!({"vhost": v.name(), "value": value}))
        })
        .collect();
    Value::Array(rows)
}

async fn vhost_all(State(http): State<Shared>, caller: Caller) -> Json<Value> {
    Json(vhost_limits_json(&http, &caller, None))
}

async fn vhost_one(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&http, &vhost)?;
    Ok(Json(vhost_limits_json(&http, &caller, Some(&vhost))))
}

async fn vhost_put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    let value = limit_value(&bytes)?;
    set_vhost_limit(&http, vhost, &name, value).await
}

async fn vhost_delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    set_vhost_limit(&http, vhost, &name, None).await
}

async fn set_vhost_limit(
    http: &Shared,
    vhost: String,
    name: &str,
    value: Option<u64>,
) -> ApiResult<Response> {
    let mut limits = http.state.broker.access().vhost_limits(&vhost);
    match name {
        "max-connections" => limits.max_connections = value,
        "max-queues" => limits.max_queues = value,
        other => return Err(ApiError::bad_request(format!("unknown limit {other:?}"))),
    }
    let command = pigeon_cluster::MetaCommand::SetLimits {
        scope: pigeon_cluster::meta::LimitScope::Vhost(vhost.clone()),
        limits: crate::cluster::commands::vhost_limits_json(&limits),
    };
    if !super::replicate(http, command).await? {
        let state = Arc::clone(&http.state);
        blocking(move || state.broker.access().try_set_vhost_limits(&vhost, limits)).await??;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn user_limits_json(http: &Shared, only: Option<&str>) -> Value {
    let access = http.state.broker.access();
    let mut users = access.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Value> = users
        .iter()
        .filter(|u| only.is_none_or(|o| o == u.name))
        .filter_map(|u| {
            let value = user_value(&access.user_limits(&u.name));
            (!value.is_empty()).then(|| json!({"user": u.name, "value": value}))
        })
        .collect();
    Value::Array(rows)
}

async fn user_all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(user_limits_json(&http, None)))
}

async fn user_one(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    user_or_404(&http, &user)?;
    Ok(Json(user_limits_json(&http, Some(&user))))
}

async fn user_put(
    State(http): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let value = limit_value(&bytes)?;
    set_user_limit(&http, user, &name, value).await
}

async fn user_delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    set_user_limit(&http, user, &name, None).await
}

async fn set_user_limit(
    http: &Shared,
    user: String,
    name: &str,
    value: Option<u64>,
) -> ApiResult<Response> {
    user_or_404(http, &user)?;
    let mut limits = http.state.broker.access().user_limits(&user);
    match name {
        "max-connections" => limits.max_connections = value,
        "max-channels" => limits.max_channels = value,
        other => return Err(ApiError::bad_request(format!("unknown limit {other:?}"))),
    }
    let command = pigeon_cluster::MetaCommand::SetLimits {
        scope: pigeon_cluster::meta::LimitScope::User(user.clone()),
        limits: crate::cluster::commands::user_limits_json(&limits),
    };
    if !super::replicate(http, command).await? {
        let state = Arc::clone(&http.state);
        blocking(move || state.broker.access().try_set_user_limits(&user, limits)).await??;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
