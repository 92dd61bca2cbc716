//! Health checks (`rabbit_mgmt_wm_health_check_*`): `{"status":"ok"}`, or 503
//! `{"status":"failed","reason":...}`. Any management user may call them, as in RabbitMQ.
//! Also `/api/aliveness-test/{vhost}` (RabbitMQ 3.x: declares a queue, publishes a message
//! to it and gets it back).

use super::overview::protocol;
use super::{ApiError, ApiResult, Caller, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::{Message, Properties, QueueOptions};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(alarms))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(protocol_listener),
        )
        .route("/api/health/checks/virtual-hosts", get(virtual_hosts))
        // A single node holds no quorum or mirrored queue replicas another node depends on.
        .route("/api/health/checks/node-is-quorum-critical", get(ok))
        .route("/api/health/checks/node-is-mirror-sync-critical", get(ok))
        .route("/api/health/checks/ready-to-serve-clients", get(ready))
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}

fn failed(reason: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({"status": "failed", "reason": reason.into()});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

async fn ok(_caller: Caller) -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn alarms(State(http): State<Shared>, _caller: Caller) -> Response {
    let causes = &http.state.alarm_causes;
    let node = http.node();
    let mut alarms = Vec::new();
    if causes.memory.load(Ordering::Relaxed) {
        alarms.push(json!({"node": node, "resource": "memory"}));
    }
    if causes.disk.load(Ordering::Relaxed) {
        alarms.push(json!({"node": node, "resource": "disk"}));
    }
    if alarms.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        failed(
            "resource alarm(s) in effect in the cluster",
            json!({"alarms": alarms}),
        )
    }
}

async fn port_listener(
    State(http): State<Shared>,
    _caller: Caller,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request("port must be a number"))?;
    let ports: Vec<u16> = http.listeners.iter().map(|(_, a)| a.port()).collect();
    if ports.contains(&port) {
        return Ok(Json(json!({"status": "ok", "port": port})).into_response());
    }
    Ok(failed(
        "No active listener",
        json!({"missing": port, "ports": ports}),
    ))
}

async fn protocol_listener(
    State(http): State<Shared>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Response {
    let protocols: Vec<&str> = http.listeners.iter().map(|(k, _)| protocol(*k)).collect();
    if protocols.iter().any(|p| p.eq_ignore_ascii_case(&name)) {
        return Json(json!({"status": "ok", "protocol": name})).into_response();
    }
    let mut unique = protocols.clone();
    unique.dedup();
    failed(
        "No active listener",
        json!({"missing": name, "protocols": unique}),
    )
}

async fn virtual_hosts(_caller: Caller) -> Json<Value> {
    // Every vhost of this node runs as long as the node does (no per-vhost supervisor that
    // could have stopped one, as in RabbitMQ).
    Json(json!({"status": "ok"}))
}

async fn ready(State(http): State<Shared>, _caller: Caller) -> Response {
    if *http.state.shutdown.borrow() {
        return failed("the node is shutting down", json!({}));
    }
    Json(json!({"status": "ok"})).into_response()
}

/// Declares `aliveness-test` (transient), publishes `test_message` through the default
/// exchange and gets it back, as RabbitMQ 3.x does.
async fn aliveness(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let name = "aliveness-test";
    let declared = v.declare_queue(
        name,
        false,
        QueueOptions::default(),
        super::queues::API_CONNECTION,
    )?;
    let queue = declared.queue;
    let exchange = v.exchange("")?;
    let message = Message::new(
        exchange.name_bytes.clone(),
        name,
        Properties::new(bytes::Bytes::new(), &crate::amqp::AMQP_CODEC),
        bytes::Bytes::from_static(b"test_message"),
        http.state.broker.next_id(),
    );
    v.publish(&exchange, &message);
    while let Some((m, _)) = queue.get(true) {
        if &m.message.body[..] == b"test_message" {
            return Ok(Json(json!({"status": "ok"})).into_response());
        }
    }
    Ok(failed("aliveness test message was not received", json!({})))
}
