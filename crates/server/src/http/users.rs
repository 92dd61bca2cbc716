//! `/api/users`, `/api/users/{user}`, `/api/users/bulk-delete`,
//! `/api/users/without-permissions` (`rabbit_mgmt_wm_users`, `rabbit_mgmt_wm_user`).
//! Administrators only, as in RabbitMQ.

use super::json::{body, opt_str, tags};
use super::{
    blocking, created_or_updated, replicate, user_or_404, ApiError, ApiResult, Caller, Shared,
};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pigeon_broker::access::{PasswordHash, User};
use pigeon_cluster::MetaCommand;
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/without-permissions", get(without_permissions))
        .route("/api/users/bulk-delete", post(bulk_delete))
        .route("/api/users/{user}", get(show).put(put).delete(delete))
}

/// A user as RabbitMQ shows it: the hash in its definitions format, tags as a list (3.13).
pub(super) fn user_json(http: &Shared, u: &User) -> Value {
    let limits = http.state.broker.access().user_limits(&u.name);
    let mut l = serde_json::Map::new();
    if let Some(n) = limits.max_connections {
        l.insert("max-connections".into(), json!(n));
    }
    if let Some(n) = limits.max_channels {
        l.insert("max-channels".into(), json!(n));
    }
    let (hash, algorithm) = match &u.password {
        Some(h) => (h.to_base64(), h.algorithm().name()),
        None => (String::new(), "rabbit_password_hashing_sha256"),
    };
    json!({
        "name": u.name,
        "password_hash": hash,
        "hashing_algorithm": algorithm,
        "tags": u.tags,
        "limits": l,
    })
}

async fn list(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let mut users = http.state.broker.access().users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(
        users.iter().map(|u| user_json(&http, u)).collect(),
    )))
}

async fn without_permissions(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let access = http.state.broker.access();
    let granted: std::collections::HashSet<String> = access
        .all_permissions()
        .into_iter()
        .map(|(user, _, _)| user)
        .collect();
    let mut users = access.users();
    users.retain(|u| !granted.contains(&u.name));
    users.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(
        users.iter().map(|u| user_json(&http, u)).collect(),
    )))
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let u = user_or_404(&http, &user)?;
    Ok(Json(user_json(&http, &u)))
}

/// Creates or replaces a user: `{"password": "..."}` or `{"password_hash": "...",
/// "hashing_algorithm": "rabbit_password_hashing_sha256"}`, and `tags` (a comma-separated
/// string or a list). Neither password nor hash: a new user gets no password (it can only
/// log in by certificate), an existing one keeps its own. An empty `password_hash` clears
/// the password, as in RabbitMQ.
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let password = opt_str(&map, "password")?;
    let hash = opt_str(&map, "password_hash")?;
    let algorithm = opt_str(&map, "hashing_algorithm")?.unwrap_or("rabbit_password_hashing_sha256");
    let existing = http.state.broker.access().user(&user);
    let new_tags = tags(&map, "tags")?
        .or_else(|| existing.as_ref().map(|u| u.tags.clone()))
        .unwrap_or_default();
    let password = match (password, hash) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either password or password_hash, not both",
            ))
        }
        (Some(p), None) => Some(pigeon_broker::access::hash_password(p)),
        (None, Some("")) => None,
        (None, Some(h)) => Some(
            PasswordHash::from_definition(h, algorithm)
                .map_err(|e| ApiError::bad_request(e.to_string()))?,
        ),
        (None, None) => existing.as_ref().and_then(|u| u.password.clone()),
    };
    if user.is_empty() {
        return Err(ApiError::bad_request("user name must not be empty"));
    }
    let record = User {
        name: user.clone(),
        password,
        tags: new_tags,
    };
    let command = MetaCommand::PutUser {
        name: record.name.clone(),
        password_hash: crate::cluster::commands::password_text(record.password.as_ref()),
        tags: record.tags.clone(),
    };
    if !replicate(&http, command).await? {
        let state = Arc::clone(&http.state);
        blocking(move || state.broker.access().put_user(record)).await??;
    }
    tracing::info!(user = %user, by = %caller.name, "user created or updated through the management API");
    Ok(created_or_updated(existing.is_none()))
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let deleted = if http.state.cluster.is_some() {
        http.state.broker.access().user(&user).is_some()
            && replicate(&http, MetaCommand::DeleteUser { name: user.clone() }).await?
    } else {
        let state = Arc::clone(&http.state);
        let name = user.clone();
        blocking(move || state.broker.delete_user(&name)).await??
    };
    if !deleted {
        return Err(ApiError::not_found());
    }
    tracing::info!(user = %user, by = %caller.name, "user deleted through the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `{"users": ["a", "b"]}`: deletes each (missing ones are skipped, as in RabbitMQ).
async fn bulk_delete(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let names: Vec<String> = match map.get("users") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("users must be strings"))
            })
            .collect::<ApiResult<_>>()?,
        _ => return Err(ApiError::bad_request("users must be a list")),
    };
    if http.state.cluster.is_some() {
        // One replicated deletion per user that exists, in order; a minority stops at the first.
        for name in names {
            if http.state.broker.access().user(&name).is_some() {
                replicate(&http, MetaCommand::DeleteUser { name }).await?;
            }
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let state = Arc::clone(&http.state);
    blocking(move || {
        for name in &names {
            state.broker.delete_user(name)?;
        }
        Ok::<(), pigeon_broker::access::AccessError>(())
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}
