//! Single-active-consumer groups of the stream protocol, read from the server's coordinator
//! (`stream/sac.rs`, RabbitMQ's `rabbit_stream_sac_coordinator`). Pigeon's own paths:
//! RabbitMQ has no HTTP API for them, only `rabbitmq-streams list_stream_consumer_groups` and
//! `list_stream_group_consumers`, which `pigeon ctl` implements on top of these.
//!
//! - `GET /api/stream/consumer-groups/{vhost}`: `[{stream, reference, partition_index,
//!   consumers}]`, by stream then reference; `partition_index` is -1 for a stream that is not
//!   a super stream's partition, as rabbitmq-streams shows it;
//! - `GET /api/stream/consumer-groups/{vhost}/{stream}/{reference}`: the group's consumers in
//!   registration order, `[{subscription_id, connection_name, state}]`, `state` `active` or
//!   `inactive`; 404 when there is no such group.
//!
//! As the other `/api/stream/` lists: the vhost must be visible to the caller, and consumers
//! of other users' connections are only seen by monitoring and administrator users.

use super::json::{list, ListQuery};
use super::{ApiError, ApiResult, Caller, Shared};
use crate::registry::ConnectionInfo;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use pigeon_broker::stream_sac::{GroupInfo, GroupKey};
use serde_json::{json, Value};
use std::collections::HashMap;

/// The stream connections by id, those `caller` may see.
fn visible_connections(http: &Shared, caller: &Caller) -> HashMap<u64, ConnectionInfo> {
    http.state
        .registry
        .connections()
        .into_iter()
        .filter(|c| caller.is_monitor() || c.user == caller.name)
        .map(|c| (c.id, c))
        .collect()
}

/// The group's consumers `caller` sees, with their connection and whether each is active.
fn members<'a>(
    group: &GroupInfo,
    seen: &'a HashMap<u64, ConnectionInfo>,
) -> Vec<(u8, &'a ConnectionInfo, bool)> {
    group
        .consumers
        .iter()
        .filter_map(|(c, active)| {
            seen.get(&c.connection)
                .map(|i| (c.subscription, i, *active))
        })
        .collect()
}

pub(super) async fn groups(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let seen = visible_connections(&http, &caller);
    let rows: Vec<Value> = http
        .state
        .stream_groups
        .list(&vhost)
        .iter()
        .filter_map(|g| {
            let consumers = members(g, &seen).len();
            (consumers > 0).then(|| {
                json!({
                    "vhost": g.key.vhost,
                    "stream": g.key.stream,
                    "reference": g.key.name,
                    "partition_index": g.partition_index.map_or(-1, i64::from),
                    "consumers": consumers,
                })
            })
        })
        .collect();
    list(rows, &q)
}

pub(super) async fn group_consumers(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, stream, reference)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let seen = visible_connections(&http, &caller);
    let group = http
        .state
        .stream_groups
        .group(&GroupKey::new(&vhost, &stream, &reference))
        .ok_or_else(ApiError::not_found)?;
    let rows: Vec<Value> = members(&group, &seen)
        .into_iter()
        .map(|(subscription, conn, active)| {
            json!({
                "subscription_id": subscription,
                "connection_name": conn.name,
                "state": if active { "active" } else { "inactive" },
            })
        })
        .collect();
    list(rows, &q)
}
