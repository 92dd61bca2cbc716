//! The stream protocol's connections, publishers and consumers, as rabbitmq_stream_management
//! serves them (`rabbit_stream_connections_mgmt`, `rabbit_stream_connection_mgmt`,
//! `rabbit_stream_connection_publishers_mgmt`, `rabbit_stream_connection_consumers_mgmt`,
//! `rabbit_stream_publishers_mgmt`, `rabbit_stream_consumers_mgmt`):
//!
//! - `/api/stream/connections`, `/api/stream/connections/{vhost}`: the stream connections, in
//!   `/api/connections`' format;
//! - `/api/stream/connections/{vhost}/{name}` (GET; DELETE closes it, as
//!   `DELETE /api/connections/{name}`), and its `/publishers` and `/consumers`;
//! - `/api/stream/publishers`, `/api/stream/publishers/{vhost}`,
//!   `/api/stream/publishers/{vhost}/{stream}`;
//! - `/api/stream/consumers`, `/api/stream/consumers/{vhost}`.
//!
//! As for `/api/connections`, monitoring and administrator users see every connection, other
//! management users their own; publishers and consumers are those of the connections the
//! caller sees, in the vhosts it may see. The rows come from the stream connections' shared
//! views (`stream/view.rs`).

use super::connections::connection_json;
use super::json::{list, ListQuery};
use super::stats::StatsQuery;
use super::{ApiError, ApiResult, Caller, Shared};
use crate::registry::ConnectionInfo;
use crate::stream::{ConsumerInfo, PublisherInfo};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

/// `ConnectionInfo::protocol` of a stream connection.
const STREAM: &str = "stream";

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/stream/connections", get(connections))
        .route("/api/stream/connections/{vhost}", get(vhost_connections))
        .route(
            "/api/stream/connections/{vhost}/{name}",
            get(connection).delete(close),
        )
        .route(
            "/api/stream/connections/{vhost}/{name}/publishers",
            get(connection_publishers),
        )
        .route(
            "/api/stream/connections/{vhost}/{name}/consumers",
            get(connection_consumers),
        )
        .route("/api/stream/publishers", get(publishers))
        .route("/api/stream/publishers/{vhost}", get(vhost_publishers))
        .route(
            "/api/stream/publishers/{vhost}/{stream}",
            get(stream_publishers),
        )
        .route("/api/stream/consumers", get(consumers))
        .route("/api/stream/consumers/{vhost}", get(vhost_consumers))
        .route(
            "/api/stream/consumer-groups/{vhost}",
            get(super::stream_groups::groups),
        )
        .route(
            "/api/stream/consumer-groups/{vhost}/{stream}/{reference}",
            get(super::stream_groups::group_consumers),
        )
}

/// Whether `caller` sees a connection of `user` (`rabbit_mgmt_util:filter_user`).
fn sees_user(caller: &Caller, user: &str) -> bool {
    caller.is_monitor() || user == caller.name
}

/// The stream connections `caller` sees, of `vhost` if given.
fn stream_connections(http: &Shared, caller: &Caller, vhost: Option<&str>) -> Vec<ConnectionInfo> {
    http.state
        .registry
        .connections()
        .into_iter()
        .filter(|c| c.protocol == STREAM)
        .filter(|c| sees_user(caller, &c.user) && vhost.is_none_or(|v| c.vhost == v))
        .collect()
}

fn connections_json(
    http: &Shared,
    caller: &Caller,
    vhost: Option<&str>,
    sq: &StatsQuery,
) -> ApiResult<Vec<Value>> {
    if let Some(vhost) = vhost {
        caller.vhost(http, vhost)?;
    }
    let ctx = sq.ctx(&http.stats)?;
    Ok(stream_connections(http, caller, vhost)
        .iter()
        .map(|c| connection_json(http, &ctx, c))
        .collect())
}

async fn connections(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    list(connections_json(&http, &caller, None, &sq)?, &q)
}

async fn vhost_connections(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    list(connections_json(&http, &caller, Some(&vhost), &sq)?, &q)
}

/// The stream connection `name` of `vhost`, if `caller` may see it (404 otherwise).
fn find(http: &Shared, caller: &Caller, vhost: &str, name: &str) -> ApiResult<ConnectionInfo> {
    caller.vhost(http, vhost)?;
    stream_connections(http, caller, Some(vhost))
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(ApiError::not_found)
}

async fn connection(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let c = find(&http, &caller, &vhost, &name)?;
    let ctx = sq.ctx(&http.stats)?;
    Ok(Json(connection_json(&http, &ctx, &c)))
}

/// Closes the connection (a `Close` with the `X-Reason` header as its reason, RabbitMQ's
/// default "Closed via management plugin"); another user's takes an administrator.
async fn close(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = find(&http, &caller, &vhost, &name)?;
    super::connections::close_found(&http, &caller, &c, &headers).await
}

/// `connection_details` of a publisher or consumer.
fn connection_details(http: &Shared, c: &crate::stream::ConnectionRef) -> Value {
    json!({
        "name": c.name,
        "user": c.user,
        "node": http.node(),
        "peer_host": c.peer_host,
        "peer_port": c.peer_port,
    })
}

fn publisher_json(http: &Shared, p: &PublisherInfo) -> Value {
    json!({
        "node": http.node(),
        "connection_details": connection_details(http, &p.connection),
        "publisher_id": p.publisher_id,
        "reference": p.reference,
        "stream": p.stream,
        "queue": {"name": p.stream, "vhost": p.connection.vhost},
        "published": p.published,
        "confirmed": p.confirmed,
        "errored": p.errored,
    })
}

fn consumer_json(http: &Shared, c: &ConsumerInfo) -> Value {
    let properties: Map<String, Value> = c
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    let single_active = c
        .properties
        .iter()
        .any(|(k, v)| k == "single-active-consumer" && v == "true");
    // rabbit_stream_reader's activity_status: up, or single_active / waiting in a group.
    let activity_status = match (single_active, c.active) {
        (false, _) => "up",
        (true, true) => "single_active",
        (true, false) => "waiting",
    };
    json!({
        "node": http.node(),
        "connection_details": connection_details(http, &c.connection),
        "subscription_id": c.subscription_id,
        "stream": c.stream,
        "queue": {"name": c.stream, "vhost": c.connection.vhost},
        "offset": c.offset,
        "offset_lag": c.offset_lag,
        "credits": c.credits,
        "consumed": c.consumed,
        "active": c.active,
        "activity_status": activity_status,
        "properties": properties,
    })
}

/// Whether `caller` sees a row of the connection `c` in `vhost` (`None`: any vhost).
fn sees_row(http: &Shared, caller: &Caller, c: &crate::stream::ConnectionRef) -> bool {
    sees_user(caller, &c.user) && caller.sees_vhost(http, &c.vhost)
}

fn publishers_json(
    http: &Shared,
    caller: &Caller,
    keep: impl Fn(&PublisherInfo) -> bool,
) -> Vec<Value> {
    http.state
        .stream_publishers()
        .iter()
        .filter(|p| sees_row(http, caller, &p.connection) && keep(p))
        .map(|p| publisher_json(http, p))
        .collect()
}

fn consumers_json(
    http: &Shared,
    caller: &Caller,
    keep: impl Fn(&ConsumerInfo) -> bool,
) -> Vec<Value> {
    http.state
        .stream_consumers()
        .iter()
        .filter(|c| sees_row(http, caller, &c.connection) && keep(c))
        .map(|c| consumer_json(http, c))
        .collect()
}

async fn connection_publishers(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    find(&http, &caller, &vhost, &name)?;
    list(
        publishers_json(&http, &caller, |p| p.connection.name == name),
        &q,
    )
}

async fn connection_consumers(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    find(&http, &caller, &vhost, &name)?;
    list(
        consumers_json(&http, &caller, |c| c.connection.name == name),
        &q,
    )
}

async fn publishers(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    list(publishers_json(&http, &caller, |_| true), &q)
}

async fn vhost_publishers(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    list(
        publishers_json(&http, &caller, |p| p.connection.vhost == vhost),
        &q,
    )
}

async fn stream_publishers(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, stream)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let rows = publishers_json(&http, &caller, |p| {
        p.connection.vhost == vhost && p.stream == stream
    });
    list(rows, &q)
}

async fn consumers(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    list(consumers_json(&http, &caller, |_| true), &q)
}

async fn vhost_consumers(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    list(
        consumers_json(&http, &caller, |c| c.connection.vhost == vhost),
        &q,
    )
}
