//! Connections, channels and consumers, read from the connection registry (`registry/`):
//! `/api/connections`, `/api/vhosts/{vhost}/connections`, `/api/connections/{name}` (GET,
//! DELETE: closes it, as `rabbitmqctl close_connection`, with the `X-Reason` header as the
//! text), `/api/connections/{name}/channels`, `/api/channels`, `/api/vhosts/{vhost}/channels`,
//! `/api/channels/{name}`, `/api/consumers`, `/api/consumers/{vhost}`
//! (`rabbit_mgmt_wm_connection*`, `rabbit_mgmt_wm_channel*`, `rabbit_mgmt_wm_consumers`).
//!
//! In a cluster the lists are every node's (each row with its `node`): the other nodes are
//! asked over the cluster link (`peers.rs`), and a GET or DELETE of a connection this node does
//! not have is forwarded to the node that has it.
//!
//! As in RabbitMQ, monitoring and administrator users see every connection; other
//! management users see their own. Closing another user's connection takes an administrator.

use super::json::{list, table_json, ListQuery};
use super::peers::{self, Ask};
use super::stats::{self, Ctx, StatsQuery};
use super::{ApiError, ApiResult, Caller, Shared};
use crate::amqp::convert;
use crate::registry::{ChannelInfo, ConnectionInfo, ConsumerInfo};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

/// How long closing a stream connection waits for it to be gone (its task closes the socket
/// at once; the bound keeps a wedged connection from holding the request).
const STREAM_CLOSE_WAIT: Duration = Duration::from_secs(5);

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

/// A connection with its `recv_oct_details` / `send_oct_details` rates.
pub(super) fn connection_json(http: &Shared, ctx: &Ctx, c: &ConnectionInfo) -> Value {
    let mut v = connection_fields(http, c);
    stats::api::connection(&http.stats.read(), c, ctx, &mut v);
    v
}

fn connection_fields(http: &Shared, c: &ConnectionInfo) -> Value {
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

fn channel_json(http: &Shared, ctx: &Ctx, c: &ChannelInfo) -> Value {
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
        "message_stats": stats::api::channel(&http.stats.read(), c, ctx),
    })
}

fn consumer_json(http: &Shared, c: &ConsumerInfo) -> Value {
    json!({
        "node": http.node(),
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

/// A registry row that belongs to a user and a vhost (a connection or a channel).
trait Owned {
    fn user(&self) -> &str;
    fn vhost(&self) -> &str;
}

impl Owned for ConnectionInfo {
    fn user(&self) -> &str {
        &self.user
    }
    fn vhost(&self) -> &str {
        &self.vhost
    }
}

impl Owned for ChannelInfo {
    fn user(&self) -> &str {
        &self.user
    }
    fn vhost(&self) -> &str {
        &self.vhost
    }
}

/// Whether `caller` may see the row (`rabbit_mgmt_util:filter_user`): monitoring and
/// administrator users see all, others their own.
fn sees(caller: &Caller, row: &impl Owned) -> bool {
    caller.is_monitor() || row.user() == caller.name
}

/// How a row becomes JSON, with its statistics.
type Render<T> = fn(&Shared, &Ctx, &T) -> Value;

/// The rows `caller` may see, of `vhost` if given (404 or 401 when `caller` may not see that
/// vhost), as JSON.
fn listing<T: Owned>(
    http: &Shared,
    caller: &Caller,
    rows: Vec<T>,
    vhost: Option<&str>,
    (sq, to_json): (&StatsQuery, Render<T>),
) -> ApiResult<Vec<Value>> {
    if let Some(vhost) = vhost {
        caller.vhost(http, vhost)?;
    }
    let ctx = sq.ctx(&http.stats)?;
    Ok(rows
        .iter()
        .filter(|c| sees(caller, *c) && vhost.is_none_or(|v| c.vhost() == v))
        .map(|c| to_json(http, &ctx, c))
        .collect())
}

async fn connections(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let rows = http.state.registry.connections();
    let render = (&sq, connection_json as fn(&_, &_, &_) -> _);
    let local = listing(&http, &caller, rows, None, render)?;
    let ask = Ask::Connections {
        caller: (&caller).into(),
    };
    list(with_peers(&http, local, &ask, None).await, &q)
}

async fn vhost_connections(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let rows = http.state.registry.connections();
    let render = (&sq, connection_json as fn(&_, &_, &_) -> _);
    let local = listing(&http, &caller, rows, Some(&vhost), render)?;
    let ask = Ask::Connections {
        caller: (&caller).into(),
    };
    list(with_peers(&http, local, &ask, Some(&vhost)).await, &q)
}

/// `local` and the rows of every other node that answers `ask` (a list; of `vhost` only if
/// given): RabbitMQ lists every node's connections and channels, each with its `node`.
async fn with_peers(
    http: &Shared,
    mut local: Vec<Value>,
    ask: &Ask,
    vhost: Option<&str>,
) -> Vec<Value> {
    for rows in peers::answered(http, ask).await {
        if let Value::Array(rows) = rows {
            local.extend(
                rows.into_iter()
                    .filter(|r| vhost.is_none_or(|v| r["vhost"].as_str() == Some(v))),
            );
        }
    }
    local
}

/// This node's connections `caller` may see (a peer's question, `peers.rs`).
pub(super) fn local_connections(http: &Shared, caller: &Caller, ctx: &Ctx) -> Vec<Value> {
    http.state
        .registry
        .connections()
        .iter()
        .filter(|c| sees(caller, *c))
        .map(|c| connection_json(http, ctx, c))
        .collect()
}

/// This node's channels `caller` may see (a peer's question).
pub(super) fn local_channels(http: &Shared, caller: &Caller, ctx: &Ctx) -> Vec<Value> {
    http.state
        .registry
        .channels()
        .iter()
        .filter(|c| sees(caller, *c))
        .map(|c| channel_json(http, ctx, c))
        .collect()
}

/// One of this node's connections (a peer's question): 404 if none, or `caller` may not see it.
pub(super) fn local_connection(
    http: &Shared,
    caller: &Caller,
    name: &str,
    ctx: &Ctx,
) -> ApiResult<Value> {
    let c = find(http, caller, name)?;
    Ok(connection_json(http, ctx, &c))
}

/// Closes one of this node's connections (a peer forwarding a DELETE): 404 if none.
pub(super) async fn close_local(
    http: &Shared,
    caller: &Caller,
    name: &str,
    reason: &str,
) -> ApiResult<()> {
    let c = find(http, caller, name)?;
    close_because(http, caller, &c, reason).await.map(|_| ())
}

/// The connection, if `caller` may see it (404 otherwise, as if it did not exist).
fn find(http: &Shared, caller: &Caller, name: &str) -> ApiResult<ConnectionInfo> {
    http.state
        .registry
        .connection(name)
        .filter(|c| sees(caller, c))
        .ok_or_else(ApiError::not_found)
}
async fn connection(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let ctx = sq.ctx(&http.stats)?;
    match find(&http, &caller, &name) {
        Ok(c) => Ok(Json(connection_json(&http, &ctx, &c))),
        Err(e) => {
            let ask = Ask::Connection {
                caller: (&caller).into(),
                name,
            };
            on_a_peer(&http, &ask, e).await.map(Json)
        }
    }
}

/// Closes the connection: AMQP clients get 320 CONNECTION_FORCED with the `X-Reason` header
/// as text (RabbitMQ's default "Closed via management plugin"). A connection to another node
/// is closed by that node (the DELETE is forwarded over the cluster link).
async fn close(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    match find(&http, &caller, &name) {
        Ok(c) => close_found(&http, &caller, &c, &headers).await,
        Err(e) => {
            let ask = Ask::CloseConnection {
                caller: (&caller).into(),
                name,
                reason: reason(&headers).to_string(),
            };
            on_a_peer(&http, &ask, e).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// The answer of the node that has the object `ask` names: the first success, else the first
/// error other than 404, else `not_here` (this node's own error, a 404).
async fn on_a_peer(http: &Shared, ask: &Ask, not_here: ApiError) -> ApiResult<Value> {
    let mut error = not_here;
    for (_, reply) in peers::ask_others(http, ask).await {
        match reply {
            Some(Ok(v)) => return Ok(v),
            Some(Err(e)) if e.status != StatusCode::NOT_FOUND => error = e,
            _ => {}
        }
    }
    Err(error)
}

/// The close reason: the `X-Reason` header, or RabbitMQ's default.
fn reason(headers: &HeaderMap) -> &str {
    headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
}

/// Closes connection `name` of `user`, found by the caller's endpoint (AMQP, MQTT or stream):
/// another user's takes an administrator; the reason is the `X-Reason` header.
pub(super) async fn close_found(
    http: &Shared,
    caller: &Caller,
    c: &ConnectionInfo,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    close_because(http, caller, c, reason(headers)).await
}

/// Closes connection `c` with `reason` (another user's takes an administrator).
async fn close_because(
    http: &Shared,
    caller: &Caller,
    c: &ConnectionInfo,
    reason: &str,
) -> ApiResult<Response> {
    let (user, name) = (c.user.as_str(), c.name.as_str());
    if user != caller.name && !caller.is_admin() {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    if !http.state.close_connection(name, reason) {
        return Err(ApiError::not_found());
    }
    tracing::info!(connection = %name, by = %caller.name, "connection closed through the management API");
    if c.protocol == "stream" {
        // rabbit_stream_reader answers the management plugin's `{shutdown, Reason}` call once
        // it has closed the socket: a client listing connections right after the DELETE no
        // longer sees it (rabbitmq-stream-js-client's suite closes every connection between
        // tests and then counts them).
        http.state
            .registry
            .until_gone(name, STREAM_CLOSE_WAIT)
            .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn connection_channels(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    find(&http, &caller, &name)?;
    let ctx = sq.ctx(&http.stats)?;
    let items = http
        .state
        .registry
        .channels()
        .iter()
        .filter(|c| c.connection == name)
        .map(|c| channel_json(&http, &ctx, c))
        .collect();
    Ok(Json(Value::Array(items)))
}

async fn channels(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let rows = http.state.registry.channels();
    let render = (&sq, channel_json as fn(&_, &_, &_) -> _);
    let local = listing(&http, &caller, rows, None, render)?;
    let ask = Ask::Channels {
        caller: (&caller).into(),
    };
    list(with_peers(&http, local, &ask, None).await, &q)
}

async fn vhost_channels(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let rows = http.state.registry.channels();
    let render = (&sq, channel_json as fn(&_, &_, &_) -> _);
    let local = listing(&http, &caller, rows, Some(&vhost), render)?;
    let ask = Ask::Channels {
        caller: (&caller).into(),
    };
    list(with_peers(&http, local, &ask, Some(&vhost)).await, &q)
}

async fn channel(
    State(http): State<Shared>,
    caller: Caller,
    Path(name): Path<String>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let ctx = sq.ctx(&http.stats)?;
    http.state
        .registry
        .channels()
        .iter()
        .find(|c| c.name == name && sees(&caller, *c))
        .map(|c| Json(channel_json(&http, &ctx, c)))
        .ok_or_else(ApiError::not_found)
}

/// This node's consumers of the vhosts `caller` sees (`None`: every vhost); a peer's question
/// too (`peers.rs`).
pub(super) fn local_consumers(http: &Shared, caller: &Caller, vhost: Option<&str>) -> Value {
    let items: Vec<Value> = http
        .state
        .registry
        .consumers()
        .iter()
        .filter(|c| vhost.is_none_or(|v| v == c.vhost) && caller.sees_vhost(http, &c.vhost))
        .map(|c| consumer_json(http, c))
        .collect();
    Value::Array(items)
}

/// Every node's consumers (of `vhost` if given).
async fn consumers_of(http: &Shared, caller: &Caller, vhost: Option<&str>) -> Value {
    let Value::Array(local) = local_consumers(http, caller, vhost) else {
        return Value::Array(Vec::new());
    };
    let ask = Ask::Consumers {
        caller: caller.into(),
    };
    let all = with_peers(http, local, &ask, None).await;
    Value::Array(
        all.into_iter()
            .filter(|c| vhost.is_none_or(|v| c["queue"]["vhost"].as_str() == Some(v)))
            .collect(),
    )
}

async fn consumers(State(http): State<Shared>, caller: Caller) -> Json<Value> {
    Json(consumers_of(&http, &caller, None).await)
}

async fn vhost_consumers(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&http, &vhost)?;
    Ok(Json(consumers_of(&http, &caller, Some(&vhost)).await))
}
