//! `/api/queues`, `/api/queues/{vhost}`, `/api/queues/{vhost}/{name}`,
//! `/api/queues/{vhost}/{name}/contents` (purge) (`rabbit_mgmt_wm_queues`,
//! `rabbit_mgmt_wm_queue`, `rabbit_mgmt_wm_queue_purge`). Lists take RabbitMQ's `page`,
//! `page_size`, `name`, `use_regex`, `sort`, `sort_reverse` and `columns`.

use super::json::{arguments, body, list_named, opt_bool, table_json, ListQuery};
use super::stats::{self, Ctx, StatsQuery, Tables};
use super::{created_or_updated, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete as delete_route, get};
use axum::{Json, Router};
use pigeon_broker::permission::Access;
use pigeon_broker::{Queue, QueueOptions};
use pigeon_cluster::MetaCommand;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/queues", get(all))
        .route("/api/queues/{vhost}", get(of_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
        .route("/api/queues/{vhost}/{name}/contents", delete_route(purge))
}

/// The connection id the API declares queues under: no AMQP connection has it (ids start
/// at 1), so the API can never own an exclusive queue nor use another's.
pub(super) const API_CONNECTION: u64 = 0;

/// A queue as RabbitMQ shows it (the fields its UI and rabbitmqadmin read).
pub(super) fn queue_json(http: &Shared, q: &Queue) -> Value {
    let options = q.options();
    let ready = q.message_count();
    let unacked = q.unacked_count();
    let bytes = q.queued_bytes();
    let applied = http
        .state
        .broker
        .vhost(q.vhost_name())
        .map(|v| v.queue_policies(q.name()))
        .unwrap_or_default();
    let mut v = json!({
        "name": q.name(),
        "vhost": q.vhost_name(),
        "durable": options.durable,
        "auto_delete": options.auto_delete,
        "exclusive": options.exclusive_owner.is_some(),
        "arguments": table_json(&options.arguments),
        // A classic queue homed on another node of the cluster shows that node
        // (cluster/forward.rs), as RabbitMQ's `node` is its process's node.
        "node": q.remote().map_or_else(|| http.node(), |home| home.node().to_string()),
        "type": if q.is_stream() {
            "stream"
        } else if q.is_quorum() {
            "quorum"
        } else {
            "classic"
        },
        "state": "running",
        "messages": u64::from(ready) + u64::from(unacked),
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "message_bytes": bytes,
        "message_bytes_ready": bytes,
        "consumers": q.consumer_count(),
        "policy": applied.policy,
        "operator_policy": applied.operator_policy,
        "exclusive_consumer_tag": Value::Null,
        "effective_policy_definition": table_json(&applied.effective),
    });
    if let (Some(view), Some(m)) = (q.stream_view(), v.as_object_mut()) {
        stream_fields(http, &view, q.consumer_count(), m);
    }
    if let (Some(backend), Some(m)) = (q.quorum(), v.as_object_mut()) {
        // rabbit_quorum_queue `format/1`; the leader is '' when none is known.
        let p = backend.placement();
        m.insert("leader".into(), json!(p.leader.unwrap_or_default()));
        m.insert("members".into(), json!(p.members));
        m.insert("online".into(), json!(p.online));
        // Awaiting at-least-once dead-lettering (rabbit_quorum_queue `handle_tick`,
        // RabbitMQ 3.10+).
        let c = backend.counts();
        m.insert("messages_dlx".into(), json!(c.dlx));
        m.insert("message_bytes_dlx".into(), json!(c.dlx_bytes));
    }
    v
}

/// A stream's own fields: RabbitMQ's (rabbit_osiris_metrics' `STATISTICS_KEYS`: `members`,
/// `online` and `readers` (per node: a reader per consumer), as 3.10.8 shows them; `leader`,
/// `segments`, `first_timestamp` from 3.11 on; `committed_offset` and `committed_chunk_id`
/// from rabbit_stream_queue's info keys; a single node is the leader and the only member),
/// and Pigeon's `first_offset`, `last_offset` (`null` when empty) and `stream_bytes` (the
/// segment files' size), which RabbitMQ shows in `rabbitmq-streams stream_status` instead.
/// Messages are all ready, none unacknowledged, as RabbitMQ counts them (rabbit_osiris_metrics).
fn stream_fields(
    http: &Shared,
    view: &pigeon_broker::StreamView,
    readers: u32,
    m: &mut Map<String, Value>,
) {
    let node = http.node();
    let mut per_node = Map::new();
    per_node.insert(node.clone(), json!(readers));
    m.insert("readers".into(), Value::Object(per_node));
    m.insert("leader".into(), json!(node));
    m.insert("members".into(), json!([node]));
    m.insert("online".into(), json!([node]));
    m.insert("segments".into(), json!(view.segments));
    m.insert("first_timestamp".into(), json!(view.first_timestamp));
    m.insert("committed_offset".into(), json!(view.committed_offset));
    m.insert("committed_chunk_id".into(), json!(view.committed_chunk_id));
    m.insert("first_offset".into(), json!(view.first_offset));
    m.insert("last_offset".into(), json!(view.last_offset));
    m.insert("stream_bytes".into(), json!(view.bytes));
    m.insert("messages".into(), json!(view.messages));
    m.insert("messages_ready".into(), json!(view.messages));
    m.insert("messages_unacknowledged".into(), json!(0));
}

/// The fields that come from statistics, which `disable_stats=true` leaves out
/// (`rabbit_mgmt_format:queue`; `enable_queue_totals=true` keeps the three counts).
const STATS_FIELDS: [&str; 5] = [
    "message_bytes",
    "message_bytes_ready",
    "consumers",
    "exclusive_consumer_tag",
    "effective_policy_definition",
];
const TOTALS_FIELDS: [&str; 3] = ["messages", "messages_ready", "messages_unacknowledged"];

/// A queue with its statistics (`message_stats`, the lengths' `_details`), or without them
/// when the query says `disable_stats=true`.
fn queue_full(http: &Shared, t: &Tables, q: &Arc<Queue>, ctx: &Ctx, sq: &StatsQuery) -> Value {
    let mut v = queue_json(http, q);
    if sq.disable_stats() {
        if let Some(m) = v.as_object_mut() {
            for f in STATS_FIELDS {
                m.remove(f);
            }
            if !sq.enable_queue_totals() {
                for f in TOTALS_FIELDS {
                    m.remove(f);
                }
            }
        }
    } else {
        stats::api::queue(t, q, &q.stats(), ctx, &mut v);
    }
    v
}

/// How long a list waits for the homes of the queues homed elsewhere (as `peers.rs` gives
/// each node for the cluster-wide lists).
const HOMES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Lists `queues`, rendering only the page asked for when the sort allows it. The counts of
/// classic queues homed on other nodes are their homes', asked once per home for all of them
/// (cluster/remote_queue.rs); a queue whose home does not answer within [`HOMES_TIMEOUT`] is
/// listed without them, with `state` `down` when its home is down, as RabbitMQ's list shows
/// a queue on a down node (rabbit_amqqueue `info_down`: `state` and no statistics).
async fn listing(
    http: &Shared,
    queues: Vec<Arc<Queue>>,
    q: &ListQuery,
    sq: &StatsQuery,
) -> ApiResult<Response> {
    let ctx = sq.ctx(&http.stats)?;
    let homes = match http
        .state
        .cluster
        .as_ref()
        .and_then(crate::cluster::forward::Forwarder::of)
    {
        Some(forwarder) => {
            let remote: Vec<Arc<Queue>> = queues
                .iter()
                .filter(|x| x.remote().is_some())
                .cloned()
                .collect();
            let counts = if remote.is_empty() {
                Default::default()
            } else {
                forwarder.counts_of(&remote, HOMES_TIMEOUT).await
            };
            Some((forwarder, counts))
        }
        None => None,
    };
    let t = http.stats.read();
    list_named(
        queues,
        |x| (x.vhost_name(), x.name()),
        |x| {
            let mut v = queue_full(http, &t, x, &ctx, sq);
            if let (Some((forwarder, counts)), Some(home), Some(m)) =
                (&homes, x.remote(), v.as_object_mut())
            {
                let key = (x.vhost_name().to_string(), x.name().to_string());
                match counts.get(&key) {
                    Some(c) => home_counts(m, c),
                    None => {
                        for f in COUNT_FIELDS {
                            m.remove(f);
                        }
                        if !forwarder.is_up(home.node()) {
                            m.insert("state".into(), json!("down"));
                        }
                    }
                }
            }
            v
        },
        q,
    )
}

/// The fields a queue's home answers for it.
const COUNT_FIELDS: [&str; 6] = [
    "messages",
    "messages_ready",
    "messages_unacknowledged",
    "message_bytes",
    "message_bytes_ready",
    "consumers",
];

/// Puts the home's counts in a queue's fields (those the query did not leave out).
fn home_counts(m: &mut Map<String, Value>, c: &crate::cluster::remote_queue::Counts) {
    let values = [
        json!(u64::from(c.ready) + u64::from(c.unacked)),
        json!(c.ready),
        json!(c.unacked),
        json!(c.bytes),
        json!(c.bytes),
        json!(c.consumers),
    ];
    for (field, value) in COUNT_FIELDS.into_iter().zip(values) {
        if let Some(slot) = m.get_mut(field) {
            *slot = value;
        }
    }
}

async fn all(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let queues: Vec<Arc<Queue>> = caller
        .vhosts(&http)
        .iter()
        .flat_map(|v| v.queues())
        .collect();
    listing(&http, queues, &q, &sq).await
}

async fn of_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    listing(&http, v.queues(), &q, &sq).await
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let q = v.queue(&name)?;
    let ctx = sq.ctx(&http.stats)?;
    // A classic queue homed on another node: its counts are the home's (metafinish).
    let home = match crate::cluster::remote_queue::remote(http.state.cluster.as_ref(), &q) {
        Some((forwarder, _)) => forwarder.counts(&q).await,
        None => None,
    };
    let t = http.stats.read();
    let mut shown = queue_full(&http, &t, &q, &ctx, &sq);
    if let (Some(c), Some(m)) = (home, shown.as_object_mut()) {
        home_counts(m, &c);
    }
    Ok(Json(shown))
}

/// Declares a queue: `{"durable": true, "auto_delete": false, "arguments": {}}`. An existing
/// queue with other properties: 400 with the AMQP precondition text. Exclusive queues
/// cannot be declared through the API (they would have no connection to belong to).
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    if name.is_empty() {
        return Err(ApiError::bad_request("queue name must not be empty"));
    }
    if name.starts_with("amq.") {
        return Err(ApiError::bad_request(format!(
            "queue name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    caller.check(&http, &vhost, Access::Configure, "queue", &name)?;
    if opt_bool(&map, "exclusive")?.unwrap_or(false) {
        return Err(ApiError::bad_request(
            "exclusive queues cannot be declared through the management API",
        ));
    }
    let mut options = QueueOptions {
        durable: opt_bool(&map, "durable")?.unwrap_or(true),
        exclusive_owner: None,
        auto_delete: opt_bool(&map, "auto_delete")?.unwrap_or(false),
        arguments: arguments(&map)?,
    };
    let existing = v.queue(&name).ok();
    let existed = existing.is_some();
    if existing.is_none_or(|q| q.options().arguments.get("x-queue-type").is_some()) {
        // The vhost's default queue type, as RabbitMQ's PUT applies it (rabbit_mgmt_wm_queue
        // through rabbit_amqqueue `augment_declare_args`; `vhost/default_type.rs`).
        v.apply_default_queue_type(
            http.state.declares.node_default.as_deref(),
            options.durable,
            false,
            options.auto_delete,
            &mut options.arguments,
        );
    }
    // RabbitMQ declares through a channel (rabbit_mgmt_util `amqp_request`), whose
    // `check_vhost_queue_limit` refuses a new queue over `max-queues`; the API answers 400.
    if !existed {
        crate::limits::check_queue_limit(http.state.broker.access(), &v, &name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    // A new durable queue goes through the cluster when clustered (as an AMQP `queue.declare`
    // does, `amqp/replicated.rs`), living on this node; a redeclare is checked here.
    if !existed && options.durable {
        if let Some(node) = http.state.cluster.as_ref().map(|c| c.name().to_string()) {
            let command = MetaCommand::DeclareQueue {
                vhost: vhost.clone(),
                name: name.clone(),
                kind: options
                    .arguments
                    .get_str("x-queue-type")
                    .unwrap_or("classic")
                    .to_string(),
                auto_delete: options.auto_delete,
                arguments: crate::cluster::commands::to_json(&options.arguments),
                node,
            };
            super::replicate(&http, command).await?;
            return Ok(created_or_updated(true));
        }
    }
    // A quorum queue on a node without [cluster]: its group of one, on the local node started
    // first (`cluster/quorum/single.rs`).
    let local = match &http.state.declares.local {
        Some(l) if !existed && http.state.declares.is_local_quorum(&options.arguments) => {
            l.start().await.map_err(ApiError::internal)?;
            Some(l)
        }
        _ => None,
    };
    v.declare_queue(&name, false, options, API_CONNECTION)?;
    if let Some(local) = local {
        local.declared(&vhost, &name);
    }
    Ok(created_or_updated(!existed))
}

#[derive(Deserialize, Default)]
struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
    #[serde(rename = "if-empty")]
    if_empty: Option<String>,
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let queue = v.queue(&name)?;
    caller.check(&http, &vhost, Access::Configure, "queue", &name)?;
    if queue.options().exclusive_owner.is_some() {
        // RabbitMQ lets the management API delete any queue, exclusive ones included.
        v.remove_queue(&queue);
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (if_unused, if_empty) = (
        q.if_unused.as_deref() == Some("true"),
        q.if_empty.as_deref() == Some("true"),
    );
    // Homed on another node: the home's counts decide, as for AMQP (amqp/remote_queue.rs).
    if if_unused || if_empty {
        if let Some((forwarder, _)) =
            crate::cluster::remote_queue::remote(http.state.cluster.as_ref(), &queue)
        {
            let Some(c) = forwarder.counts(&queue).await else {
                return Err(ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    error: "service_unavailable",
                    reason: format!("the home node of queue '{name}' in vhost '{vhost}' is down or inaccessible"),
                });
            };
            if if_unused && c.consumers > 0 {
                return Err(pigeon_broker::BrokerError::PreconditionFailed(format!(
                    "queue '{name}' in vhost '{vhost}' in use"
                ))
                .into());
            }
            if if_empty && c.ready > 0 {
                return Err(pigeon_broker::BrokerError::PreconditionFailed(format!(
                    "queue '{name}' in vhost '{vhost}' is not empty"
                ))
                .into());
            }
        }
    }
    // A durable queue is deleted through the cluster when clustered; `if-unused` / `if-empty`
    // conditions that fail are refused here, with the local path's error.
    if queue.options().durable
        && !(if_unused && queue.consumer_count() > 0)
        && !(if_empty && queue.message_count() > 0)
        && super::replicate(
            &http,
            MetaCommand::DeleteQueue {
                vhost: vhost.clone(),
                name: name.clone(),
            },
        )
        .await?
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    v.delete_queue(&name, if_unused, if_empty, API_CONNECTION)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Drops the ready messages (those out for delivery stay).
async fn purge(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let queue = v.queue(&name)?;
    caller.check(&http, &vhost, Access::Read, "queue", &name)?;
    // A classic queue homed on another node is purged there (metafinish).
    if let Some((forwarder, home)) =
        crate::cluster::remote_queue::remote(http.state.cluster.as_ref(), &queue)
    {
        let query = crate::cluster::remote_queue::Query::Purge {
            vhost: vhost.clone(),
            queue: name.clone(),
        };
        return match forwarder.ask(&home, query).await {
            Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
            Err(e) => Err(ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "service_unavailable",
                reason: e.to_string(),
            }),
        };
    }
    queue.purge();
    Ok(StatusCode::NO_CONTENT.into_response())
}
