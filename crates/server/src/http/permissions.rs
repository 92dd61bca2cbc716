//! Permissions and topic permissions (`rabbit_mgmt_wm_permission*`,
//! `rabbit_mgmt_wm_topic_permission*`): administrators only, as in RabbitMQ.
//!
//! `/api/permissions`, `/api/permissions/{vhost}/{user}`, `/api/vhosts/{vhost}/permissions`,
//! `/api/users/{user}/permissions`, and the same four under `topic-permissions`.

use super::json::{body, opt_str};
use super::{blocking, created_or_updated, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::permission::{Permission, TopicPermission};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/permissions", get(all))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show).put(put).delete(delete),
        )
        .route("/api/vhosts/{vhost}/permissions", get(of_vhost))
        .route("/api/users/{user}/permissions", get(of_user))
        .route("/api/topic-permissions", get(topic_all))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_show).put(topic_put).delete(topic_delete),
        )
        .route("/api/vhosts/{vhost}/topic-permissions", get(topic_of_vhost))
        .route("/api/users/{user}/topic-permissions", get(topic_of_user))
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

fn topic_json(user: &str, vhost: &str, p: &TopicPermission) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

/// Every permission for which `keep(user, vhost)` holds, sorted by vhost then user.
fn permissions(http: &Shared, keep: impl Fn(&str, &str) -> bool) -> Value {
    let mut all = http.state.broker.access().all_permissions();
    all.retain(|(u, v, _)| keep(u, v));
    all.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    Value::Array(
        all.iter()
            .map(|(u, v, p)| permission_json(u, v, p))
            .collect(),
    )
}

fn topic_permissions(http: &Shared, keep: impl Fn(&str, &str) -> bool) -> Value {
    let mut all = http.state.broker.access().all_topic_permissions();
    all.retain(|(u, v, _)| keep(u, v));
    all.sort_by(|a, b| (&a.1, &a.0, &a.2.exchange).cmp(&(&b.1, &b.0, &b.2.exchange)));
    Value::Array(all.iter().map(|(u, v, p)| topic_json(u, v, p)).collect())
}

/// 404 unless both exist.
fn check_exists(http: &Shared, vhost: &str, user: &str) -> ApiResult<()> {
    let broker = &http.state.broker;
    if broker.vhost(vhost).is_none_or(|v| v.is_deleted()) || broker.access().user(user).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(())
}

async fn all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(permissions(&http, |_, _| true)))
}

async fn of_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    Ok(Json(permissions(&http, |_, v| v == vhost)))
}

async fn of_user(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    http.state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permissions(&http, |u, _| u == user)))
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let p = http
        .state
        .broker
        .access()
        .permission(&user, &vhost)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(permission_json(&user, &vhost, &p)))
}

/// `{"configure": "...", "write": "...", "read": "..."}`: all three are required, as in
/// RabbitMQ (an empty string grants nothing).
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    check_exists(&http, &vhost, &user)?;
    let field = |key: &str| -> ApiResult<String> {
        opt_str(&map, key)?
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
    };
    let p = Permission {
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    };
    let created = http
        .state
        .broker
        .access()
        .permission(&user, &vhost)
        .is_none();
    let state = Arc::clone(&http.state);
    let (u, v) = (user.clone(), vhost.clone());
    blocking(move || state.broker.set_permissions(&u, &v, p)).await??;
    tracing::info!(user = %user, vhost = %vhost, by = %caller.name, "permissions set through the management API");
    Ok(created_or_updated(created))
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let state = Arc::clone(&http.state);
    let cleared =
        blocking(move || state.broker.access().try_clear_permission(&user, &vhost)).await??;
    if !cleared {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn topic_all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(topic_permissions(&http, |_, _| true)))
}

async fn topic_of_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    Ok(Json(topic_permissions(&http, |_, v| v == vhost)))
}

async fn topic_of_user(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    http.state
        .broker
        .access()
        .user(&user)
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(topic_permissions(&http, |u, _| u == user)))
}

async fn topic_show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let all = http.state.broker.access().topic_permissions(&user, &vhost);
    if all.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(
        all.iter().map(|p| topic_json(&user, &vhost, p)).collect(),
    )))
}

/// `{"exchange": "amq.topic", "write": "...", "read": "..."}` (all required).
async fn topic_put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    check_exists(&http, &vhost, &user)?;
    let field = |key: &str| -> ApiResult<String> {
        opt_str(&map, key)?
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required")))
    };
    let p = TopicPermission {
        exchange: field("exchange")?,
        write: field("write")?,
        read: field("read")?,
    };
    let created = !http
        .state
        .broker
        .access()
        .topic_permissions(&user, &vhost)
        .iter()
        .any(|t| t.exchange == p.exchange);
    let state = Arc::clone(&http.state);
    blocking(move || {
        state
            .broker
            .access()
            .try_set_topic_permission(&user, &vhost, p)
    })
    .await??;
    Ok(created_or_updated(created))
}

/// Clears every topic permission of the user in the vhost.
async fn topic_delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    if http
        .state
        .broker
        .access()
        .topic_permissions(&user, &vhost)
        .is_empty()
    {
        return Err(ApiError::not_found());
    }
    let state = Arc::clone(&http.state);
    blocking(move || {
        state
            .broker
            .access()
            .try_clear_topic_permissions(&user, &vhost, None)
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}
