//! `/api/overview`, `/api/whoami`, `/api/cluster-name`.

use super::json::body;
use super::peers;
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

/// This node's listeners, as `/api/overview` lists them (each with its `node`).
fn listeners_json(http: &Shared) -> Vec<Value> {
    let node = http.node();
    http.listeners
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
        .collect()
}

/// This node's management contexts.
fn contexts_json(http: &Shared) -> Vec<Value> {
    let node = http.node();
    http.listeners
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
        .collect()
}

/// The queues and exchanges of the vhosts `caller` sees that exist on this node only: those
/// that never enter the metadata log (exclusive, non-durable or server-named queues,
/// non-durable exchanges: docs/clustering.md "What stays local"). Replicated ones exist on
/// every node, so a cluster-wide count takes them from one node and these from every node.
fn local_only(http: &Shared, caller: &Caller) -> (u64, u64) {
    let (mut queues, mut exchanges) = (0u64, 0u64);
    for vhost in caller.vhosts(http) {
        exchanges += vhost.exchanges().iter().filter(|x| !x.durable).count() as u64;
        for q in vhost.queues() {
            let o = q.options();
            if !o.durable || o.exclusive_owner.is_some() || q.name().starts_with("amq.gen-") {
                queues += 1;
            }
        }
    }
    (queues, exchanges)
}

/// This node's part of a cluster-wide `/api/overview`, answered to the node asking
/// (`peers.rs`): its totals (queues and exchanges: its local-only ones), message rates and
/// listeners.
pub(super) fn share(http: &Shared, caller: &Caller, ctx: &stats::Ctx) -> Value {
    let (mut object_totals, mut queue_totals) = totals(http, caller);
    let (message_stats, churn_rates) = stats::api::overview(http, caller, ctx, &mut queue_totals);
    let (queues, exchanges) = local_only(http, caller);
    object_totals["queues"] = queues.into();
    object_totals["exchanges"] = exchanges.into();
    json!({
        "object_totals": object_totals,
        "queue_totals": queue_totals,
        "message_stats": message_stats,
        "churn_rates": churn_rates,
        "listeners": listeners_json(http),
        "contexts": contexts_json(http),
    })
}

/// RabbitMQ's overview is the cluster's: totals, message rates and listeners of every running
/// node (a node that does not answer within `peers::PEER_TIMEOUT` is left out).
async fn overview(
    State(http): State<Shared>,
    caller: Caller,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let ctx = sq.ctx(&http.stats)?;
    let node = http.node();
    let (mut object_totals, mut queue_totals) = totals(&http, &caller);
    let (mut message_stats, mut churn_rates) =
        stats::api::overview(&http, &caller, &ctx, &mut queue_totals);
    let mut listeners = listeners_json(&http);
    let mut contexts = contexts_json(&http);
    for share in peers::answered(&http, &peers::Ask::overview(&caller)).await {
        peers::add_into(&mut object_totals, &share["object_totals"]);
        peers::add_into(&mut queue_totals, &share["queue_totals"]);
        peers::add_into(&mut message_stats, &share["message_stats"]);
        peers::add_into(&mut churn_rates, &share["churn_rates"]);
        for (all, theirs) in [(&mut listeners, "listeners"), (&mut contexts, "contexts")] {
            if let Some(list) = share[theirs].as_array() {
                all.extend(list.iter().cloned());
            }
        }
    }
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
/// `disk_free` come with their `_details` rates (`stats/`). Peers ask for it (`peers.rs`).
pub(super) fn node_json(http: &Shared, ctx: &stats::Ctx) -> Value {
    let state = &http.state;
    let causes = &state.alarm_causes;
    let mut node = json!({
        "name": http.node(),
        "type": "disc",
        "running": true,
        "being_drained": state.maintenance.being_drained(),
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

/// Every member: its own statistics when it answers (asked over the cluster link, all at
/// once, bounded by `peers::PEER_TIMEOUT`), the basic fields with `running: false` when not.
/// Each entry also has Pigeon's `cluster_address` and `voter`.
async fn all_nodes(http: &Shared, ctx: &stats::Ctx) -> Vec<Value> {
    let mut all = vec![node_json(http, ctx)];
    let Some(cluster) = &http.state.cluster else {
        return all;
    };
    let me = cluster
        .status()
        .members
        .into_iter()
        .find(|m| m.name == cluster.name());
    if let (Some(me), Some(mine)) = (me, all.first_mut()) {
        mine["cluster_address"] = me.addr.into();
        mine["voter"] = me.voter.into();
    }
    for (m, reply) in peers::ask_others(http, &peers::Ask::Node).await {
        all.push(match reply {
            Some(Ok(mut node)) if node.is_object() => {
                node["cluster_address"] = m.addr.clone().into();
                node["voter"] = m.voter.into();
                node
            }
            _ => member_json(&m),
        });
    }
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    all
}

async fn nodes(
    State(http): State<Shared>,
    caller: Caller,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let ctx = sq.ctx(&http.stats)?;
    Ok(Json(Value::Array(all_nodes(&http, &ctx).await)))
}

/// A member that did not answer, as `/api/nodes` lists it: RabbitMQ's fields known without
/// it, and Pigeon's `cluster_address` and `voter`.
fn member_json(m: &pigeon_cluster::MemberStatus) -> Value {
    json!({
        "name": m.name,
        "type": "disc",
        "running": false,
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
    let ctx = sq.ctx(&http.stats)?;
    if name == http.node() {
        return Ok(Json(node_json(&http, &ctx)));
    }
    match peers::ask_node(&http, &name, &peers::Ask::Node).await {
        Some((_, Some(Ok(node)))) => Ok(Json(node)),
        Some((m, _)) => Ok(Json(member_json(&m))),
        None => Err(ApiError::not_found()),
    }
}
