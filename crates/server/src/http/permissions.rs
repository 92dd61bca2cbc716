//! Permissions and topic permissions (`rabbit_mgmt_wm_permission*`,
//! `rabbit_mgmt_wm_topic_permission*`): administrators only, as in RabbitMQ.
//!
//! `/api/permissions`, `/api/permissions/{vhost}/{user}`, `/api/vhosts/{vhost}/permissions`,
//! `/api/users/{user}/permissions`, and the same four under `topic-permissions`.

use super::json::{body, req_str};
use super::{blocking, created_or_updated, user_or_404, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_cluster::MetaCommand;
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::sync::Arc;

/// The listing handlers serve both tables: `TOPIC` picks the topic-permission one.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/permissions", get(all::<false>))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show).put(put).delete(delete),
        )
        .route("/api/vhosts/{vhost}/permissions", get(of_vhost::<false>))
        .route("/api/users/{user}/permissions", get(of_user::<false>))
        .route("/api/topic-permissions", get(all::<true>))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_show).put(topic_put).delete(topic_delete),
        )
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(of_vhost::<true>),
        )
        .route("/api/users/{user}/topic-permissions", get(of_user::<true>))
}

fn permission_json(user: &str, vhost: &str, p: &Permission) -> Value {
    json!({"user": user, "vhost": vhost, "configure": p.configure, "write": p.write, "read": p.read})
}

fn topic_json(user: &str, vhost: &str, p: &TopicPermission) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

/// Every row of the permission table (or, with `TOPIC`, the topic-permission table) for which
/// `keep(user, vhost)` holds, sorted by vhost then user (then exchange for topic permissions).
fn list<const TOPIC: bool>(http: &Shared, keep: impl Fn(&str, &str) -> bool) -> Value {
    let access = http.state.broker.access();
    if TOPIC {
        let by_exchange = |a: &TopicPermission, b: &TopicPermission| a.exchange.cmp(&b.exchange);
        rows(
            access.all_topic_permissions(),
            keep,
            by_exchange,
            topic_json,
        )
    } else {
        // One permission per (user, vhost): nothing left to order by.
        let none = |_: &Permission, _: &Permission| Ordering::Equal;
        rows(access.all_permissions(), keep, none, permission_json)
    }
}

fn rows<T>(
    mut all: Vec<(String, String, T)>,
    keep: impl Fn(&str, &str) -> bool,
    then: impl Fn(&T, &T) -> Ordering,
    to_json: fn(&str, &str, &T) -> Value,
) -> Value {
    all.retain(|(u, v, _)| keep(u, v));
    all.sort_by(|a, b| {
        (&a.1, &a.0)
            .cmp(&(&b.1, &b.0))
            .then_with(|| then(&a.2, &b.2))
    });
    Value::Array(all.iter().map(|(u, v, p)| to_json(u, v, p)).collect())
}

/// A PUT's three string fields, named by `keys`, once the vhost and user are known to exist
/// (404 otherwise). All three are required, as in RabbitMQ (an empty string grants nothing).
fn put_fields(
    http: &Shared,
    vhost: &str,
    user: &str,
    bytes: &Bytes,
    keys: [&str; 3],
) -> ApiResult<[String; 3]> {
    let map = body(bytes)?;
    let broker = &http.state.broker;
    if broker.vhost(vhost).is_none_or(|v| v.is_deleted()) || broker.access().user(user).is_none() {
        return Err(ApiError::not_found());
    }
    let field = |key: &str| req_str(&map, key).map(str::to_string);
    Ok([field(keys[0])?, field(keys[1])?, field(keys[2])?])
}

async fn all<const TOPIC: bool>(
    State(http): State<Shared>,
    caller: Caller,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(list::<TOPIC>(&http, |_, _| true)))
}

async fn of_vhost<const TOPIC: bool>(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    Ok(Json(list::<TOPIC>(&http, |_, v| v == vhost)))
}

async fn of_user<const TOPIC: bool>(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    user_or_404(&http, &user)?;
    Ok(Json(list::<TOPIC>(&http, |u, _| u == user)))
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

/// `{"configure": "...", "write": "...", "read": "..."}`.
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let [configure, write, read] =
        put_fields(&http, &vhost, &user, &bytes, ["configure", "write", "read"])?;
    let p = Permission {
        configure,
        write,
        read,
    };
    let created = http
        .state
        .broker
        .access()
        .permission(&user, &vhost)
        .is_none();
    let command = MetaCommand::SetPermissions {
        user: user.clone(),
        vhost: vhost.clone(),
        configure: p.configure.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    };
    if !super::replicate(&http, command).await? {
        let state = Arc::clone(&http.state);
        let (u, v) = (user.clone(), vhost.clone());
        blocking(move || state.broker.set_permissions(&u, &v, p)).await??;
    }
    tracing::info!(user = %user, vhost = %vhost, by = %caller.name, "permissions set through the management API");
    Ok(created_or_updated(created))
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let cleared = if http.state.cluster.is_some() {
        http.state
            .broker
            .access()
            .permission(&user, &vhost)
            .is_some()
            && super::replicate(&http, MetaCommand::ClearPermissions { user, vhost }).await?
    } else {
        let state = Arc::clone(&http.state);
        blocking(move || state.broker.access().try_clear_permission(&user, &vhost)).await??
    };
    if !cleared {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
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
    let [exchange, write, read] =
        put_fields(&http, &vhost, &user, &bytes, ["exchange", "write", "read"])?;
    let p = TopicPermission {
        exchange,
        write,
        read,
    };
    let created = !http
        .state
        .broker
        .access()
        .topic_permissions(&user, &vhost)
        .iter()
        .any(|t| t.exchange == p.exchange);
    let command = MetaCommand::SetTopicPermissions {
        user: user.clone(),
        vhost: vhost.clone(),
        exchange: p.exchange.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    };
    if !super::replicate(&http, command).await? {
        let state = Arc::clone(&http.state);
        blocking(move || {
            state
                .broker
                .access()
                .try_set_topic_permission(&user, &vhost, p)
        })
        .await??;
    }
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
    let command = MetaCommand::ClearTopicPermissions {
        user: user.clone(),
        vhost: vhost.clone(),
        exchange: None,
    };
    if !super::replicate(&http, command).await? {
        let state = Arc::clone(&http.state);
        blocking(move || {
            state
                .broker
                .access()
                .try_clear_topic_permissions(&user, &vhost, None)
        })
        .await??;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
