//! Health checks (`rabbit_mgmt_wm_health_check_*`): `{"status":"ok"}`, or 503
//! `{"status":"failed","reason":...}`. Any management user may call them, as in RabbitMQ;
//! the probes that RabbitMQ serves without credentials (`is-in-service`,
//! `ready-to-serve-clients`, `below-node-connection-limit`, `reached-target-cluster-size`:
//! their modules have no `is_authorized`) are open here too, since Kubernetes probes them
//! without any (the RabbitMQ cluster operator's startup probe is an HTTP GET of
//! `/api/health/checks/reached-target-cluster-size`). `certificates.rs`:
//! `certificate-expiration/{within}/{unit}`.
//! Also `/api/aliveness-test/{vhost}` (RabbitMQ 3.x: declares a queue, publishes a message
//! to it and gets it back).

mod certificates;

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
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(certificates::expiration),
        )
        // Unauthenticated, as in RabbitMQ.
        .route("/api/health/checks/is-in-service", get(in_service))
        .route("/api/health/checks/ready-to-serve-clients", get(ready))
        .route(
            "/api/health/checks/below-node-connection-limit",
            get(below_connection_limit),
        )
        .route(
            "/api/health/checks/reached-target-cluster-size",
            get(reached_target_cluster_size),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness))
}

pub(super) fn failed(reason: impl Into<String>, extra: Value) -> Response {
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
    let wanted = normalize_protocol(&name);
    let protocols: Vec<&str> = http.listeners.iter().map(|(k, _)| protocol(*k)).collect();
    if protocols.contains(&wanted.as_str()) {
        return Json(json!({"status": "ok", "protocol": wanted})).into_response();
    }
    failed(
        "No active listener",
        json!({"missing": wanted, "protocols": protocols}),
    )
}

/// The other names a protocol goes by (`rabbit_mgmt_wm_health_check_protocol_listener:
/// normalize_protocol/1`), lower-cased; any other name is taken as it is.
fn normalize_protocol(name: &str) -> String {
    let name = name.to_lowercase();
    let normal = match name.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp0_9_1" | "amqp10" | "amqp1.0" | "amqp1-0"
        | "amqp1_0" => "amqp",
        "amqps" => "amqp/ssl",
        "mqtt3.1" | "mqtt3.1.1" | "mqtt31" | "mqtt311" | "mqtt3_1" | "mqtt3_1_1" => "mqtt",
        "mqtts" | "mqtt+tls" | "mqtt+ssl" => "mqtt/ssl",
        "http1" | "http1.1" | "http_api" | "management" | "management_ui" | "ui" => "http",
        "webmqtt" | "web-mqtt" | "web_mqtt" => "http/web-mqtt",
        "webmqtt/tls" | "web-mqtt/tls" | "webmqtt/ssl" | "web-mqtt/ssl" | "webmqtt+tls"
        | "web-mqtt+tls" | "webmqtt+ssl" | "web-mqtt+ssl" => "https/web-mqtt",
        _ => return name,
    };
    normal.to_string()
}

async fn virtual_hosts(_caller: Caller) -> Json<Value> {
    // Every vhost of this node runs as long as the node does (no per-vhost supervisor that
    // could have stopped one, as in RabbitMQ).
    Json(json!({"status": "ok"}))
}

/// `is-in-service`: the node serves (it is not shutting down).
async fn in_service(State(http): State<Shared>) -> Response {
    if *http.state.shutdown.borrow() {
        return failed(
            "this rabbit node is not currently available to serve",
            json!({}),
        );
    }
    Json(json!({"status": "ok"})).into_response()
}

/// The connections open and the node's limit (`max_connections`, RabbitMQ's
/// `connection_max`). RabbitMQ counts AMQP connections only; Pigeon's limit covers every
/// protocol's listener, so the check does too.
fn connections(http: &Shared) -> (usize, usize) {
    (
        http.state.connections.load(Ordering::Relaxed),
        http.state.config.max_connections,
    )
}

/// `ready-to-serve-clients`: in service, an AMQP listener open and the connection limit not
/// reached (RabbitMQ's composite of `is-in-service`, `protocol-listener/amqp` and
/// `below-node-connection-limit`).
async fn ready(State(http): State<Shared>) -> Response {
    if *http.state.shutdown.borrow() {
        return failed(
            "the rabbit node is not currently available to serve",
            json!({}),
        );
    }
    let amqp = http
        .listeners
        .iter()
        .any(|(k, _)| matches!(k, crate::listen::Kind::Amqp | crate::listen::Kind::Amqps));
    if !amqp {
        return failed("no active listeners for AMQP/AMQPS", json!({}));
    }
    let (open, limit) = connections(&http);
    if open >= limit {
        return failed(
            "node connection limit is reached",
            json!({"connections": open}),
        );
    }
    Json(json!({"status": "ok"})).into_response()
}

/// `below-node-connection-limit`.
async fn below_connection_limit(State(http): State<Shared>) -> Response {
    let (open, limit) = connections(&http);
    if open >= limit {
        return failed(
            "node connection limit is reached",
            json!({"limit": limit, "connections": open}),
        );
    }
    Json(json!({"status": "ok", "limit": limit, "connections": open})).into_response()
}

/// `reached-target-cluster-size`: the nodes online against `target_cluster_size_hint`. A
/// Pigeon node is a cluster of one.
async fn reached_target_cluster_size(State(http): State<Shared>) -> Response {
    let online = 1u32;
    let target = http.state.config.target_cluster_size_hint;
    if online >= target {
        return Json(json!({"status": "ok"})).into_response();
    }
    failed(
        format!("target cluster size not reached: {online} of {target} nodes are online"),
        json!({"online": online, "target": target}),
    )
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
        &*exchange.name,
        name,
        Properties::new(bytes::Bytes::new(), &crate::amqp::AMQP_CODEC),
        bytes::Bytes::from_static(b"test_message"),
        http.state.broker.next_id(),
    );
    v.publish(&exchange, &message);
    while let Some((m, _)) = queue.get(true) {
        if m.message.body() == b"test_message" {
            return Ok(Json(json!({"status": "ok"})).into_response());
        }
    }
    Ok(failed("aliveness test message was not received", json!({})))
}
