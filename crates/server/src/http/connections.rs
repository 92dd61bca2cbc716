//! Connections, channels and consumers, read from the connection registry (`registry/`):
//! `/api/connections`, `/api/vhosts/{vhost}/connections`, `/api/connections/{name}` (GET,
//! DELETE: closes it, as `rabbitmqctl close_connection`, with the `X-Reason` header as the
//! text), `/api/connections/{name}/channels`, `/api/channels`, `/api/vhosts/{vhost}/channels`,
//! `/api/channels/{name}`, `/api/consumers`, `/api/consumers/{vhost}`
//! (`rabbit_mgmt_wm_connection*`, `rabbit_mgmt_wm_channel*`, `rabbit_mgmt_wm_consumers`).
//!
//! As in RabbitMQ, monitoring and administrator users see every connection; other
//! management users see their own. Closing another user's connection takes an administrator.

use super::json::{list, table_json, ListQuery};
use super::{ApiError, ApiResult, Caller, Shared};
use crate::amqp::convert;
use crate::registry::{ChannelInfo, ConnectionInfo, ConsumerInfo};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::UNIX_EPOCH;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/connections", get(connections))
        .route("/api/vhosts/{vhost}/connections", get(vhost_connections))
        .route("/api/connections/{name}", get(connection).delete(close))
        .route("/api/connections/{name}/channels", get(connection_channels))
        .route("/api/channels", get(channels))
        .route("/api/vhosts/{vhost}/channels", get(vhost_channels))
        .route("/api/channels/{name}", get(channel))
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(vhost_consumers))
}

fn connection_json(http: &Shared, c: &ConnectionInfo) -> Value {
    let connected_at = c
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    json!({
        "name": c.name,
        "node": http.node(),
        "type": "network",
        "protocol": c.protocol,
        "user": c.user,
        "vhost": c.vhost,
        "host": c.host,
        "port": c.port,
        "peer_host": c.peer_host,
        "peer_port": c.peer_port,
        "ssl": c.ssl,
        "ssl_protocol": c.ssl_protocol,
        "ssl_cipher": c.ssl_cipher,
        "peer_cert_subject": c.peer_cert_subject,
        "client_properties": table_json(&convert::table(&c.client_properties)),
        "connected_at": connected_at,
        "channels": c.channels,
        "state": c.state,
        "timeout": c.timeout,
        "frame_max": c.frame_max,
        "channel_max": c.channel_max,
        "recv_oct": c.recv_oct,
        "recv_cnt": c.recv_cnt,
        "send_oct": c.send_oct,
        "send_cnt": c.send_cnt,
        "user_who_performed_action": c.user,
    })
}

fn channel_json(http: &Shared, c: &ChannelInfo) -> Value {
    json!({
        "name": c.name,
        "node": http.node(),
        "number": c.number,
        "connection_details": {"name": c.connection},
        "user": c.user,
        "vhost": c.vhost,
        "consumer_count": c.consumer_count,
        "messages_unacknowledged": c.messages_unacknowledged,
        "prefetch_count": c.prefetch_count,
        "global_prefetch_count": c.global_prefetch_count,
        "confirm": c.confirm,
        "transactional": c.transactional,
        "state": "running",
        "message_stats": {
            "publish": c.publish,
            "confirm": c.confirmed,
            "deliver": c.deliver,
            "get": c.get,
            "redeliver": c.redeliver,
            "ack": c.ack,
            "return_unroutable": c.return_unroutable,
        },
    })
}

fn consumer_json(c: &ConsumerInfo) -> Value {
    json!({
        "consumer_tag": c.consumer_tag,
        "channel_details": {
            "name": format!("{} ({})", c.connection, c.channel),
            "number": c.channel,
            "connection_name": c.connection,
        },
        "queue": {"name": c.queue, "vhost": c.vhost},
        "ack_required": c.ack_required,
        "exclusive": c.exclusive,
        "prefetch_count": c.prefetch_count,
        "arguments": {},
        "active": true,
        "activity_status": "up",
    })
}

/// The connections `caller` may see (`rabbit_mgmt_util:filter_user`).
fn visible(http: &Shared, caller: &Caller) -> Vec<ConnectionInfo> {
    let mut all = http.state.registry.connections();
    if !caller.is_monitor() {
        all.retain(|c| c.user == caller.name);
    }
    all
}

async fn connections(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let items = visible(&http, &caller)
        .iter()
        .map(|c| connection_json(&http, c))
        .collect();
    list(items, &q)
}

async fn vhost_connections(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let items = visible(&http, &caller)
        .iter()
        .filter(|c| c.vhost == vhost)
        .map(|c| connection_json(&http, c))
        .collect();
    list(items, &q)
}

/// The connection, if `caller` may see it (404 otherwise, as if it did not exist).
fn find(http: &Shared, caller: &Caller, name: &str) -> ApiResult<ConnectionInfo> {
    http.state
        .registry
        .connection(name)
        .filter(|c| caller.is_monitor() || c.user == caller.name)
        .ok_or_else(ApiError::not_found)
}

async fn connection(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = find(&http, &caller, &name)?;
    Ok(Json(connection_json(&http, &c)))
}

/// Closes the connection: AMQP clients get 320 CONNECTION_FORCED with the `X-Reason` header
/// as text (RabbitMQ's default "Closed via management plugin").
async fn close(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = find(&http, &caller, &name)?;
    if c.user != caller.name && !caller.is_admin() {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_string();
    if !http.state.close_connection(&name, &reason) {
        return Err(ApiError::not_found());
    }
    tracing::info!(connection = %name, by = %caller.name, "connection closed through the management API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn connection_channels(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    find(&http, &caller, &name)?;
    let items = http
        .state
        .registry
        .channels()
        .iter()
        .filter(|c| c.connection == name)
        .map(|c| channel_json(&http, c))
        .collect();
    Ok(Json(Value::Array(items)))
}

fn visible_channels(http: &Shared, caller: &Caller) -> Vec<ChannelInfo> {
    let mut all = http.state.registry.channels();
    if !caller.is_monitor() {
        all.retain(|c| c.user == caller.name);
    }
    all
}

async fn channels(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let items = visible_channels(&http, &caller)
        .iter()
        .map(|c| channel_json(&http, c))
        .collect();
    list(items, &q)
}

async fn vhost_channels(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let items = visible_channels(&http, &caller)
        .iter()
        .filter(|c| c.vhost == vhost)
        .map(|c| channel_json(&http, c))
        .collect();
    list(items, &q)
}

async fn channel(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    visible_channels(&http, &caller)
        .iter()
        .find(|c| c.name == name)
        .map(|c| Json(channel_json(&http, c)))
        .ok_or_else(ApiError::not_found)
}

/// Consumers of the vhosts `caller` sees (`None`: every vhost).
fn consumers_of(http: &Shared, caller: &Caller, vhost: Option<&str>) -> Value {
    let items: Vec<Value> = http
        .state
        .registry
        .consumers()
        .iter()
        .filter(|c| vhost.is_none_or(|v| v == c.vhost) && caller.sees_vhost(http, &c.vhost))
        .map(consumer_json)
        .collect();
    Value::Array(items)
}

async fn consumers(State(http): State<Shared>, caller: Caller) -> Json<Value> {
    Json(consumers_of(&http, &caller, None))
}

async fn vhost_consumers(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&http, &vhost)?;
    Ok(Json(consumers_of(&http, &caller, Some(&vhost))))
}
