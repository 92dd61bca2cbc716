//! `/api/vhosts`, `/api/vhosts/{vhost}` (`rabbit_mgmt_wm_vhosts`, `rabbit_mgmt_wm_vhost`).

use super::json::{body, opt_str, tags};
use super::stats::{self, Ctx, StatsQuery, Tables};
use super::{blocking, created_or_updated, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::access::VHostInfo;
use pigeon_broker::VHost;
use pigeon_cluster::MetaCommand;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}

/// A vhost with its statistics: `message_stats`, the lengths' and its connections' bytes'
/// `_details`.
fn with_stats(
    http: &Shared,
    t: &Tables,
    ctx: &Ctx,
    connections: &[crate::registry::ConnectionInfo],
    v: &std::sync::Arc<VHost>,
) -> Value {
    let mut out = vhost_json(http, v);
    stats::api::vhost(t, v, connections, ctx, &mut out);
    out
}

/// A vhost as RabbitMQ lists it (3.13: description and tags also under `metadata`).
fn vhost_json(http: &Shared, v: &VHost) -> Value {
    let info = v.info();
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in v.queues() {
        ready += u64::from(q.message_count());
        unacked += u64::from(q.unacked_count());
    }
    // RabbitMQ 3.13 shows the default queue type at the top level and in `metadata`
    // (rabbit_queue_type `inject_dqt`), `classic` when the vhost sets none.
    let dqt = info.default_queue_type.as_deref().unwrap_or("classic");
    json!({
        "name": v.name(),
        "description": info.description,
        "tags": info.tags,
        "metadata": {"description": info.description, "tags": info.tags, "default_queue_type": dqt},
        "default_queue_type": dqt,
        "tracing": false,
        "cluster_state": {http.node(): "running"},
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    })
}

async fn list(
    State(http): State<Shared>,
    caller: Caller,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let ctx = sq.ctx(&http.stats)?;
    let connections = http.state.registry.connections();
    let t = http.stats.read();
    let all: Vec<Value> = caller
        .vhosts(&http)
        .iter()
        .map(|v| with_stats(&http, &t, &ctx, &connections, v))
        .collect();
    Ok(Json(Value::Array(all)))
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let ctx = sq.ctx(&http.stats)?;
    let connections = http.state.registry.connections();
    let t = http.stats.read();
    Ok(Json(with_stats(&http, &t, &ctx, &connections, &v)))
}

/// Creates a vhost, or updates its description and tags. Body (optional):
/// `{"description": "...", "tags": "a,b" | ["a","b"], "default_queue_type": "quorum",
/// "tracing": false}`.
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    // Message tracing is not offered, but a value that is not a boolean is refused as
    // RabbitMQ refuses it (`rabbit_mgmt_util:parse_bool`).
    super::json::opt_bool(&map, "tracing")?;
    let existing = http.state.broker.vhost(&vhost).filter(|v| !v.is_deleted());
    let current = existing.as_ref().map(|v| v.info()).unwrap_or_default();
    let info = VHostInfo {
        description: opt_str(&map, "description")?
            .map(str::to_string)
            .unwrap_or(current.description),
        tags: tags(&map, "tags")?.unwrap_or(current.tags),
        default_queue_type: queue_type_field(&map)?.or(current.default_queue_type),
    };
    let command = MetaCommand::AddVhost {
        name: vhost.clone(),
        metadata: crate::cluster::commands::vhost_json(&info),
    };
    if !super::replicate(&http, command).await? {
        let state = std::sync::Arc::clone(&http.state);
        let name = vhost.clone();
        blocking(move || state.broker.add_vhost(&name, info)).await??;
    }
    tracing::info!(vhost = %vhost, user = %caller.name, "vhost created or updated through the management API");
    Ok(created_or_updated(existing.is_none()))
}

/// A vhost's `default_queue_type` from a request body (also under `metadata`, as RabbitMQ's
/// definitions write it): `classic`, `quorum` or `stream`; anything else is 400, as
/// rabbit_vhost `do_add` refuses an unknown type (`invalid_queue_type`). `"undefined"` (what
/// older RabbitMQ exports hold) is no default.
pub(crate) fn queue_type_field(map: &serde_json::Map<String, Value>) -> ApiResult<Option<String>> {
    let value = opt_str(map, "default_queue_type")?.or_else(|| {
        map.get("metadata")
            .and_then(|m| m.get("default_queue_type"))
            .and_then(Value::as_str)
    });
    match value {
        None | Some("undefined") => Ok(None),
        Some(t) if pigeon_broker::vhost::default_type::QUEUE_TYPES.contains(&t) => {
            Ok(Some(t.to_string()))
        }
        Some(t) => Err(ApiError::bad_request(format!(
            "Unsupported queue type '{t}': expected classic, quorum or stream"
        ))),
    }
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let deleted = if http.state.cluster.is_some() {
        http.state.broker.vhost(&vhost).is_some()
            && super::replicate(
                &http,
                MetaCommand::DeleteVhost {
                    name: vhost.clone(),
                },
            )
            .await?
    } else {
        let state = std::sync::Arc::clone(&http.state);
        let name = vhost.clone();
        blocking(move || state.broker.delete_vhost(&name)).await??
    };
    if !deleted {
        return Err(ApiError::not_found());
    }
    tracing::info!(vhost = %vhost, user = %caller.name, "vhost deleted through the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
