//! Quorum queue replicas (issue 13, items 4 and 6): RabbitMQ 3.13/4's management endpoints
//! for rabbitmq-queues' commands (`rabbit_mgmt_wm_quorum_queue_replicas_add_member`,
//! `..._delete_member`, `..._grow`, `..._shrink`, `rabbit_mgmt_wm_rebalance_queues`), and
//! Pigeon's variants that answer with what was done, for `pigeon ctl`. Administrators only.
//!
//! - `POST /api/queues/quorum/{vhost}/{name}/replicas/add` `{"node"}` -> 204
//! - `DELETE /api/queues/quorum/{vhost}/{name}/replicas/delete` `{"node"}` -> 202
//! - `POST /api/queues/quorum/replicas/on/{node}/grow` `{"strategy": "all"|"even",
//!   "vhost_pattern", "queue_pattern"}` -> 204
//! - `DELETE /api/queues/quorum/replicas/on/{node}/shrink` -> 202
//! - `POST /api/rebalance/queues` -> 204 (the moves go on in the background, as RabbitMQ's)
//! - `POST /api/pigeon/quorum/{vhost}/{name}/delete_member` `{"node"}` -> 202: `replicas/delete`
//!   for clients that send no body with a DELETE (`pigeon ctl`'s).
//! - `POST /api/pigeon/quorum/grow/{node}`, `POST /api/pigeon/quorum/shrink/{node}` -> 200
//!   `[{"vhost", "name", "size", "result"}]`, rabbitmq-queues' table; `POST
//!   /api/pigeon/quorum/rebalance` `{"vhost_pattern", "queue_pattern"}` -> 200
//!   `[{"node", "quorum_leaders"}]`.
//!
//! The work is `cluster/quorum/membership.rs`'s.

use super::json::{body, opt_str, req_str};
use super::{ApiError, ApiResult, Caller, Http, Shared};
use crate::cluster::quorum::membership::{self, MembersError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use pigeon_cluster::Cluster;
use serde_json::{json, Map, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/queues/quorum/{vhost}/{name}/replicas/add",
            post(add_member),
        )
        .route(
            "/api/queues/quorum/{vhost}/{name}/replicas/delete",
            delete(delete_member),
        )
        .route("/api/queues/quorum/replicas/on/{node}/grow", post(grow_204))
        .route(
            "/api/queues/quorum/replicas/on/{node}/shrink",
            delete(shrink_202),
        )
        .route("/api/rebalance/queues", post(rebalance_204))
        // The same as `replicas/delete`, for clients that send no body with a DELETE.
        .route(
            "/api/pigeon/quorum/{vhost}/{name}/delete_member",
            post(delete_member),
        )
        .route("/api/pigeon/quorum/grow/{node}", post(grow_report))
        .route("/api/pigeon/quorum/shrink/{node}", post(shrink_report))
        .route("/api/pigeon/quorum/rebalance", post(rebalance_report))
}

fn clustered(http: &Http) -> ApiResult<&Cluster> {
    http.state.cluster.as_ref().ok_or_else(|| {
        ApiError::bad_request("this node is not clustered: quorum queue members need a cluster")
    })
}

fn api_error(e: MembersError) -> ApiError {
    match e {
        MembersError::NotFound(reason) => ApiError {
            status: StatusCode::NOT_FOUND,
            error: "Object Not Found",
            reason,
        },
        MembersError::Refused(reason) => ApiError::bad_request(reason),
        other => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "service_unavailable",
            reason: other.to_string(),
        },
    }
}

fn map_of(bytes: &Bytes) -> ApiResult<Map<String, Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(Map::new())
    } else {
        body(bytes)
    }
}

async fn add_member(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let node = req_str(&body(&bytes)?, "node")?.to_string();
    let cluster = clustered(&http)?;
    let added = membership::add_member(cluster, &vhost, &name, &node)
        .await
        .map_err(api_error)?;
    tracing::info!(queue = %name, %vhost, %node, added, by = %caller.name, "quorum queue add_member through the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_member(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let node = req_str(&body(&bytes)?, "node")?.to_string();
    let cluster = clustered(&http)?;
    let removed = membership::delete_member(cluster, &vhost, &name, &node)
        .await
        .map_err(api_error)?;
    tracing::info!(queue = %name, %vhost, %node, removed, by = %caller.name, "quorum queue delete_member through the management API");
    Ok(StatusCode::ACCEPTED.into_response())
}

/// A pattern of the body (`.*` by default), as a regex.
fn pattern(map: &Map<String, Value>, key: &str) -> ApiResult<regex::Regex> {
    let p = opt_str(map, key)?.unwrap_or(".*");
    regex::Regex::new(p).map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))
}

/// `grow`: adds a member on `node` to every matching quorum queue that has none there
/// (`strategy` `all`), or only to those with an even number of members (`even`), as
/// `rabbit_quorum_queue:grow/5`. One row per queue tried.
async fn grow(http: &Http, node: &str, bytes: &Bytes) -> ApiResult<Vec<Value>> {
    let map = map_of(bytes)?;
    let strategy = opt_str(&map, "strategy")?.unwrap_or("all");
    if strategy != "all" && strategy != "even" {
        return Err(ApiError::bad_request(format!(
            "strategy must be 'all' or 'even', not '{strategy}'"
        )));
    }
    let (vhosts, queues) = (
        pattern(&map, "vhost_pattern")?,
        pattern(&map, "queue_pattern")?,
    );
    let cluster = clustered(http)?;
    let Some(registry) = membership::registry(cluster) else {
        return Ok(Vec::new());
    };
    if !membership::running(cluster, node) {
        return Err(ApiError::bad_request(format!(
            "node {node} is not a running member of the cluster (node_not_running)"
        )));
    }
    let mut rows = Vec::new();
    let mut all = registry.list();
    all.sort_by(|a, b| a.id().cmp(&b.id()));
    for m in all {
        let (vhost, name) = m.id();
        if !vhosts.is_match(vhost) || !queues.is_match(name) {
            continue;
        }
        let members = m.listed();
        if members.iter().any(|n| n == node) {
            continue;
        }
        if strategy == "even" && members.len() % 2 != 0 {
            continue;
        }
        let (vhost, name) = (vhost.to_string(), name.to_string());
        let result = membership::add_member(cluster, &vhost, &name, node).await;
        rows.push(row(&vhost, &name, m.listed().len(), result));
    }
    Ok(rows)
}

/// `shrink`: removes the member on `node` from every quorum queue that has one there, but the
/// queues whose only member it is (`rabbit_quorum_queue:shrink_all/1`).
async fn shrink(http: &Http, node: &str) -> ApiResult<Vec<Value>> {
    let cluster = clustered(http)?;
    let Some(registry) = membership::registry(cluster) else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    let mut all = registry.list();
    all.sort_by(|a, b| a.id().cmp(&b.id()));
    for m in all {
        let members = m.listed();
        if !members.iter().any(|n| n == node) {
            continue;
        }
        let (vhost, name) = (m.id().0.to_string(), m.id().1.to_string());
        let result = membership::delete_member(cluster, &vhost, &name, node).await;
        rows.push(row(&vhost, &name, m.listed().len(), result));
    }
    Ok(rows)
}

/// rabbitmq-queues' row: `vhost`, `name`, `size` (the members now), `result`.
fn row(vhost: &str, name: &str, size: usize, result: Result<bool, MembersError>) -> Value {
    let result = match result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    json!({"vhost": vhost, "name": name, "size": size, "result": result})
}

async fn grow_204(
    State(http): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    grow(&http, &node, &bytes).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn grow_report(
    State(http): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(Value::Array(grow(&http, &node, &bytes).await?)))
}

async fn shrink_202(
    State(http): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    shrink(&http, &node).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn shrink_report(
    State(http): State<Shared>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(Value::Array(shrink(&http, &node).await?)))
}

async fn rebalance(http: &Http, bytes: &Bytes) -> ApiResult<Value> {
    let map = map_of(bytes)?;
    let (vhosts, queues) = (
        pattern(&map, "vhost_pattern")?,
        pattern(&map, "queue_pattern")?,
    );
    let cluster = clustered(http)?;
    let load = membership::rebalance(cluster, &vhosts, &queues)
        .await
        .map_err(api_error)?;
    let mut rows: Vec<(String, usize)> = load.into_iter().collect();
    rows.sort();
    Ok(Value::Array(
        rows.into_iter()
            .map(|(node, n)| json!({"node": node, "quorum_leaders": n}))
            .collect(),
    ))
}

async fn rebalance_204(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    clustered(&http)?;
    // Asynchronous, as RabbitMQ's: the answer does not wait for the moves.
    tokio::spawn(async move {
        if let Err(e) = rebalance(&http, &bytes).await {
            tracing::warn!(error = %e.reason, "rebalance of quorum queue leaders failed");
        }
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rebalance_report(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(rebalance(&http, &bytes).await?))
}
