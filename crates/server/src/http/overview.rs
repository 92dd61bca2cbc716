//! `/api/overview`, `/api/whoami`, `/api/cluster-name`.

use super::json::body;
use super::stats::{self, StatsQuery};
use super::{ApiError, ApiResult, Caller, Shared, RABBITMQ_VERSION};
use crate::listen::Kind;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/overview", get(overview))
        .route("/api/whoami", get(whoami))
        .route("/api/cluster-name", get(cluster_name).put(set_cluster_name))
        .route("/api/nodes", get(nodes))
        .route("/api/nodes/{node}", get(node))
}

/// The `protocol` RabbitMQ lists a listener under.
pub(super) fn protocol(kind: Kind) -> &'static str {
    match kind {
        Kind::Amqp => "amqp",
        Kind::Amqps => "amqp/ssl",
        Kind::Mqtt => "mqtt",
        Kind::Mqtts => "mqtt/ssl",
        Kind::MqttWs => "http/web-mqtt",
        Kind::MqttWss => "https/web-mqtt",
        Kind::Stream => "stream",
        Kind::StreamTls => "stream/ssl",
        Kind::Http => "http",
        Kind::Https => "https",
        Kind::Prometheus => "http/prometheus",
        Kind::PrometheusTls => "https/prometheus",
    }
}

/// Queue totals over the vhosts `caller` sees.
pub(super) fn totals(http: &Shared, caller: &Caller) -> (Value, Value) {
    let (mut exchanges, mut queues, mut consumers) = (0u64, 0u64, 0u64);
    let (mut ready, mut unacked) = (0u64, 0u64);
    for vhost in caller.vhosts(http) {
        exchanges += vhost.exchanges().len() as u64 + 1;
        for q in vhost.queues() {
            queues += 1;
            consumers += u64::from(q.consumer_count());
            ready += u64::from(q.message_count());
            unacked += u64::from(q.unacked_count());
        }
    }
    let connections = http.state.registry.len();
    let channels = http.state.registry.channel_count();
    (
        json!({
            "connections": connections,
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        }),
        json!({
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
        }),
    )
}

async fn overview(
    State(http): State<Shared>,
    caller: Caller,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let ctx = sq.ctx(&http.stats)?;
    let node = http.node();
    let (object_totals, mut queue_totals) = totals(&http, &caller);
    let (message_stats, churn_rates) =
        stats::api::overview(&http, &caller, &ctx, &mut queue_totals);
    let listeners: Vec<Value> = http
        .listeners
        .iter()
        .map(|(kind, addr)| {
            json!({
                "node": node,
                "protocol": protocol(*kind),
                "ip_address": addr.ip().to_string(),
                "port": addr.port(),
                "socket_opts": {},
            })
        })
        .collect();
    let contexts: Vec<Value> = http
        .listeners
        .iter()
        .filter(|(k, _)| matches!(k, Kind::Http | Kind::Https))
        .map(|(_, addr)| {
            json!({
                "node": node,
                "description": "RabbitMQ Management",
                "path": "/",
                "ip": addr.ip().to_string(),
                "port": addr.port().to_string(),
            })
        })
        .collect();
    let exchange_types: Vec<Value> = [
        (
            "direct",
            "AMQP direct exchange, as per the AMQP specification",
        ),
        (
            "fanout",
            "AMQP fanout exchange, as per the AMQP specification",
        ),
        (
            "headers",
            "AMQP headers exchange, as per the AMQP specification",
        ),
        (
            "topic",
            "AMQP topic exchange, as per the AMQP specification",
        ),
    ]
    .iter()
    .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
    .collect();
    Ok(Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rates_mode": "basic",
        // What the rings keep, in seconds (RabbitMQ lists its retention tiers here; the UI
        // offers chart ranges up to them).
        "sample_retention_policies": {"global": [600], "basic": [60], "detailed": [60]},
        "exchange_types": exchange_types,
        "product_version": env!("CARGO_PKG_VERSION"),
        "product_name": "Pigeon",
        "rabbitmq_version": RABBITMQ_VERSION,
        "cluster_name": http.cluster_name(),
        "erlang_version": "",
        "erlang_full_version": "",
        "release_series_support_status": "supported",
        "disable_stats": false,
        "is_op_policy_updating_enabled": false,
        "enable_queue_totals": false,
        "message_stats": message_stats,
        "churn_rates": churn_rates,
        "queue_totals": queue_totals,
        "object_totals": object_totals,
        "statistics_db_event_queue": 0,
        "node": node,
        "listeners": listeners,
        "contexts": contexts,
    })))
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"name": caller.name, "tags": caller.tags}))
}

async fn cluster_name(State(http): State<Shared>, _caller: Caller) -> Json<Value> {
    Json(json!({"name": http.cluster_name()}))
}

async fn set_cluster_name(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let name = super::json::opt_str(&map, "name")?
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("name is required"))?
        .to_string();
    // Through the cluster when clustered, so that every node shows the same name.
    super::parameters::put_global(&http, super::CLUSTER_NAME.into(), Value::String(name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This node as `/api/nodes` lists it (the fields rabbitmqadmin and monitoring read; memory is
/// what the memory alarm weighs). `mem_used`, `fd_used`, `sockets_used`, `proc_used` and
/// `disk_free` come with their `_details` rates (`stats/`).
fn node_json(http: &Shared, ctx: &stats::Ctx) -> Value {
    let state = &http.state;
    let causes = &state.alarm_causes;
    let mut node = json!({
        "name": http.node(),
        "type": "disc",
        "running": true,
        "being_drained": false,
        "mem_limit": state.memory.limit(),
        "mem_alarm": causes.memory.load(std::sync::atomic::Ordering::Relaxed),
        "disk_free_limit": state.disk_free_limit.load(std::sync::atomic::Ordering::Relaxed),
        "disk_free_alarm": causes.disk.load(std::sync::atomic::Ordering::Relaxed),
        "processors": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "os_pid": std::process::id().to_string(),
        "rates_mode": "basic",
        "partitions": [],
        "applications": [],
        "enabled_plugins": ["rabbitmq_management"],
    });
    stats::api::node(http, ctx, &mut node);
    node
}

async fn nodes(
    State(http): State<Shared>,
    caller: Caller,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let ctx = sq.ctx(&http.stats)?;
    let mut all = vec![node_json(&http, &ctx)];
    if let Some(cluster) = &http.state.cluster {
        // The other members: what this node knows of them without their statistics (which
        // stay on their node until the overview is cluster-wide).
        for (m, running) in super::cluster::members(cluster).await {
            if m.name != cluster.name() {
                all.push(member_json(&m, running));
            }
        }
        all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    }
    Ok(Json(Value::Array(all)))
}

/// Another member of the cluster as `/api/nodes` lists it: RabbitMQ's fields that are known
/// here (`running`: it answers on the cluster link), and Pigeon's `cluster_address` and
/// `voter`.
fn member_json(m: &pigeon_cluster::MemberStatus, running: bool) -> Value {
    json!({
        "name": m.name,
        "type": "disc",
        "running": running,
        "being_drained": false,
        "partitions": [],
        "cluster_address": m.addr,
        "voter": m.voter,
    })
}

async fn node(
    State(http): State<Shared>,
    caller: Caller,
    axum::extract::Path(name): axum::extract::Path<String>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    if name != http.node() {
        if let Some(cluster) = &http.state.cluster {
            for (m, running) in super::cluster::members(cluster).await {
                if m.name == name {
                    return Ok(Json(member_json(&m, running)));
                }
            }
        }
        return Err(ApiError::not_found());
    }
    let ctx = sq.ctx(&http.stats)?;
    Ok(Json(node_json(&http, &ctx)))
}
