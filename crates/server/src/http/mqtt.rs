//! MQTT sessions and retained messages (Pigeon's own endpoints, under `/api/mqtt/`: RabbitMQ
//! has none). Who sees what follows the connections' rules: a `management` user the vhosts it
//! has permissions in, `monitoring` every vhost read-only, `administrator` everything.
//!
//! Each item carries a `name` (a session's client id, a retained message's topic), so that the
//! lists take `name` / `use_regex`, `sort` and paging like RabbitMQ's own lists.
//!
//! - `GET /api/mqtt/sessions[/{vhost}]`, `GET /api/mqtt/sessions/{vhost}/{client_id}`;
//!   `DELETE` of one disconnects its client (MQTT 5.0: DISCONNECT 0x98 Administrative
//!   action) and discards the session (administrators, or the user connected with it).
//! - `GET /api/mqtt/retained[/{vhost}]` (payloads previewed, base64, truncated),
//!   `GET /api/mqtt/retained/{vhost}/{topic}` (the topic URL-encoded, or its `/` left as they
//!   are) with the whole payload unless `truncate` says otherwise; `DELETE` of one, as an
//!   empty retained PUBLISH would (administrators, or users who may publish to the MQTT
//!   exchange of the vhost).

use super::json::{list, ListQuery};
use super::{blocking, ApiError, ApiResult, Caller, Shared};
use crate::mqtt::admin::{self, DiscardError, RetainedView, SessionView};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use pigeon_broker::permission::Access;
use serde::Deserialize;
use serde_json::{json, Value};

/// Bytes of a payload shown in a listing of retained messages.
const PREVIEW_BYTES: usize = 128;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/mqtt/sessions", get(all_sessions))
        .route("/api/mqtt/sessions/{vhost}", get(vhost_sessions))
        .route(
            "/api/mqtt/sessions/{vhost}/{client_id}",
            get(one_session).delete(delete_session),
        )
        .route("/api/mqtt/retained", get(all_retained))
        .route("/api/mqtt/retained/{vhost}", get(vhost_retained))
        .route(
            "/api/mqtt/retained/{vhost}/{*topic}",
            get(one_retained).delete(delete_retained),
        )
}

fn session_json(s: &SessionView) -> Value {
    let subscriptions: Vec<Value> = s
        .subscriptions
        .iter()
        .map(|sub| {
            json!({
                "topic_filter": sub.filter,
                "qos": sub.qos,
                "no_local": sub.no_local,
                "retain_as_published": sub.retain_as_published,
                "retain_handling": sub.retain_handling,
                "subscription_identifier": sub.id,
                "share_group": sub.group,
            })
        })
        .collect();
    json!({
        // `name` as on RabbitMQ's other lists, so that the `name` / `use_regex` filter and the
        // default sort work here too: the client id.
        "name": s.client_id,
        "client_id": s.client_id,
        "vhost": s.vhost,
        "connected": s.connection.is_some(),
        "connection": s.connection,
        "user": s.user,
        "protocol_version": s.protocol_version,
        // 3.1.1 clean_session=1 is an expiry of 0; clean_session=0 never expires (null).
        "clean_session": s.expiry == Some(0),
        "session_expiry_interval": s.expiry,
        "subscriptions": subscriptions,
        "queue": s.queue,
        "messages": s.queued,
        "inflight": s.inflight,
        "inbound_qos2": s.inbound_qos2,
        "persistent": s.persistent,
    })
}

async fn all_sessions(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let items = caller
        .vhosts(&http)
        .iter()
        .flat_map(|v| admin::sessions(&http.state, Some(v.name())))
        .map(|s| session_json(&s))
        .collect();
    list(items, &q)
}

async fn vhost_sessions(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let items = admin::sessions(&http.state, Some(&vhost))
        .iter()
        .map(session_json)
        .collect();
    list(items, &q)
}

async fn one_session(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, client_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    caller.vhost(&http, &vhost)?;
    let s = admin::session(&http.state, &vhost, &client_id).ok_or_else(ApiError::not_found)?;
    Ok(Json(session_json(&s)))
}

async fn delete_session(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, client_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.vhost(&http, &vhost)?;
    let s = admin::session(&http.state, &vhost, &client_id).ok_or_else(ApiError::not_found)?;
    // As for connections: another user's session (or one nobody is connected with) takes an
    // administrator.
    if !caller.is_admin() && s.user.as_deref() != Some(caller.name.as_str()) {
        return Err(ApiError::not_authorised("Not administrator user"));
    }
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .to_string();
    match admin::discard(&http.state, &vhost, &client_id, &reason).await {
        Ok(()) => {
            tracing::info!(%vhost, %client_id, by = %caller.name, "MQTT session discarded through the management API");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(DiscardError::NotFound) => Err(ApiError::not_found()),
        Err(e @ DiscardError::Busy(_)) => Err(ApiError::internal(e.to_string())),
    }
}

/// `truncate`: the most payload bytes to show.
#[derive(Debug, Default, Deserialize)]
struct Truncate {
    truncate: Option<String>,
}

fn retained_json(vhost: &str, r: &RetainedView, limit: usize) -> Value {
    let shown = &r.payload[..r.payload.len().min(limit)];
    json!({
        // The topic, as `name` for the lists' `name` / `use_regex` filter and default sort.
        "name": r.topic,
        "vhost": vhost,
        "topic": r.topic,
        "qos": r.qos,
        "content_type": r.content_type,
        "payload_bytes": r.payload.len(),
        "payload": base64::engine::general_purpose::STANDARD.encode(shown),
        "payload_encoding": "base64",
        "payload_truncated": shown.len() < r.payload.len(),
    })
}

async fn all_retained(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let items = caller
        .vhosts(&http)
        .iter()
        .flat_map(|v| {
            admin::retained(v)
                .iter()
                .map(|r| retained_json(v.name(), r, PREVIEW_BYTES))
                .collect::<Vec<_>>()
        })
        .collect();
    list(items, &q)
}

async fn vhost_retained(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let items = admin::retained(&v)
        .iter()
        .map(|r| retained_json(v.name(), r, PREVIEW_BYTES))
        .collect();
    list(items, &q)
}

async fn one_retained(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, topic)): Path<(String, String)>,
    Query(t): Query<Truncate>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let limit = match t.truncate.as_deref() {
        None => usize::MAX,
        Some(n) => n
            .parse()
            .map_err(|_| ApiError::bad_request("truncate must be a number of bytes"))?,
    };
    let r = admin::retained_one(&v, &topic).ok_or_else(ApiError::not_found)?;
    Ok(Json(retained_json(v.name(), &r, limit)))
}

async fn delete_retained(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, topic)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    if !caller.is_admin() {
        // What an empty retained PUBLISH to the topic would need.
        let exchange = http.state.config.mqtt_exchange.clone();
        caller.check(&http, &vhost, Access::Write, "exchange", &exchange)?;
    }
    let state = std::sync::Arc::clone(&http.state);
    let deleted = blocking(move || admin::delete_retained(&state, &v, &topic)).await?;
    if !deleted {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
