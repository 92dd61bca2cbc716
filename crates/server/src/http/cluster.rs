//! Pigeon's own cluster endpoints, for `pigeon ctl cluster_status`, `join_cluster` and
//! `forget_cluster_node` (which rabbitmqctl runs over Erlang distribution, not HTTP), and the
//! members listed by `/api/nodes` (`overview.rs`). Administrators only, status to monitors.
//!
//! - `GET /api/pigeon/cluster` -> this node's view: `{"clustered": true, "node", "role",
//!   "leader", "term", "last_log_index", "last_applied", "members": [{"name", "address",
//!   "voter", "running"}]}`; `{"clustered": false, "node"}` on a single node.
//! - `POST /api/pigeon/cluster/join` with `{"seed": "host:port", "force": false}`: this node,
//!   a cluster of one, resets itself (deletes its data) and joins the cluster of the member at
//!   that cluster address (`cluster/join.rs`): 202 `{"node", "seed", "restarting": true}`,
//!   then the process restarts; 200 `{"already_member": true}`; 400 with the refusal.
//! - `DELETE /api/pigeon/cluster/nodes/{name}`: removes a member.
//! - `POST /api/pigeon/maintenance/drain` and `.../revive`, optional body `{"node": name}`
//!   (default: this node; another node is asked over the cluster link): maintenance mode, as
//!   `rabbitmq-upgrade drain` / `revive` (which RabbitMQ's HTTP API does not offer; its CLI
//!   calls `rabbit_maintenance` over Erlang distribution). Answers
//!   `{"node", "being_drained", "connections_closed", "metadata_leader", "warnings"}`.

use super::json::{body, req_str};
use super::{ApiError, ApiResult, Caller, Http, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use pigeon_cluster::{Cluster, ClusterError, Role};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/pigeon/cluster", get(status))
        .route("/api/pigeon/cluster/join", post(join))
        .route("/api/pigeon/cluster/nodes/{name}", delete(forget))
        .route("/api/pigeon/maintenance/drain", post(drain))
        .route("/api/pigeon/maintenance/revive", post(revive))
}

async fn drain(State(http): State<Shared>, caller: Caller, bytes: Bytes) -> ApiResult<Json<Value>> {
    maintenance(http, caller, bytes, true).await
}

async fn revive(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    maintenance(http, caller, bytes, false).await
}

/// Drains or revives the node the body names (this one by default).
async fn maintenance(
    http: Shared,
    caller: Caller,
    bytes: Bytes,
    drain: bool,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let node = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::json::opt_str(&body(&bytes)?, "node")?.map(str::to_string)
    };
    let what = if drain { "drain" } else { "revive" };
    let mut report = match node.filter(|n| *n != http.node()) {
        None => {
            let state = std::sync::Arc::clone(&http.state);
            tracing::info!(by = %caller.name, "{what} requested through the management API");
            if drain {
                crate::cluster::maintenance::drain(&state).await.json()
            } else {
                crate::cluster::maintenance::revive(&state).await.json()
            }
        }
        Some(name) => {
            let ask = super::peers::Ask::Maintenance { drain };
            match super::peers::ask_node(&http, &name, &ask).await {
                None => return Err(ApiError::not_found()),
                Some((_, Some(reply))) => reply?,
                Some((m, None)) => {
                    return Err(cluster_error(ClusterError::Unreachable {
                        addr: m.addr,
                        reason: format!("node {name} did not answer"),
                    }))
                }
            }
        }
    };
    if report.get("node").is_none() {
        let name = node_name_of(&http, &bytes);
        report["node"] = name.into();
    }
    Ok(Json(report))
}

/// The node a maintenance request names (this one by default).
fn node_name_of(http: &Shared, bytes: &Bytes) -> String {
    body(bytes)
        .ok()
        .and_then(|m| m.get("node").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| http.node())
}

fn role(r: Role) -> &'static str {
    match r {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Learner => "learner",
        Role::Shutdown => "shutdown",
    }
}

/// The members as this node knows them, each with whether it is running: node liveness's
/// view (`Cluster::node_states`, one ping per pair of nodes every `node_heartbeat`), not a probe
/// of its own. A member liveness does not know yet (it just joined) counts as running.
pub(super) async fn members(cluster: &Cluster) -> Vec<(pigeon_cluster::MemberStatus, bool)> {
    let status = cluster.status();
    let states = cluster.node_states();
    status
        .members
        .into_iter()
        .map(|m| {
            let running = states.get(&m.name) != Some(&pigeon_cluster::NodeState::Down);
            (m, running)
        })
        .collect()
}

/// A cluster error as the API answers it: 503 when a majority or the leader cannot be reached.
fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::Membership(reason) => ApiError::bad_request(reason),
        other => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "service_unavailable",
            reason: other.to_string(),
        },
    }
}

fn clustered(http: &Http) -> ApiResult<&Cluster> {
    http.state
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("this node is not clustered (no [cluster] table)"))
}

async fn status(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let Some(cluster) = &http.state.cluster else {
        return Ok(Json(json!({"clustered": false, "node": http.node()})));
    };
    let s = cluster.status();
    let members: Vec<Value> = members(cluster)
        .await
        .into_iter()
        .map(|(m, running)| {
            json!({"name": m.name, "address": m.addr, "voter": m.voter, "running": running})
        })
        .collect();
    Ok(Json(json!({
        "clustered": true,
        "node": s.node,
        "role": role(s.role),
        "leader": s.leader,
        "term": s.term,
        "last_log_index": s.last_log_index,
        "last_applied": s.last_applied,
        "members": members,
    })))
}

async fn join(State(http): State<Shared>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let seed = req_str(&map, "seed")?.to_string();
    let force = super::json::opt_bool(&map, "force")?.unwrap_or(false);
    clustered(&http)?;
    use crate::cluster::join::{request, Accepted, JoinRefused};
    match request(&http.state, &seed, force).await {
        Ok(Accepted::AlreadyMember) => Ok((
            StatusCode::OK,
            Json(json!({"node": http.node(), "seed": seed, "already_member": true})),
        )
            .into_response()),
        Ok(Accepted::Restarting) => {
            tracing::warn!(seed = %seed, by = %caller.name, "join_cluster requested through the management API: the node resets and restarts");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"node": http.node(), "seed": seed, "restarting": true})),
            )
                .into_response())
        }
        Err(e @ JoinRefused::Io { .. }) => Err(ApiError::internal(e.to_string())),
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

async fn forget(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    clustered(&http)?
        .forget(&name)
        .await
        .map_err(cluster_error)?;
    tracing::info!(node = %name, by = %caller.name, "cluster member forgotten through the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
