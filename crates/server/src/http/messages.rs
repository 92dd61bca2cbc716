//! Publishing and getting messages through the API: `POST /api/exchanges/{vhost}/{name}/publish`
//! and `POST /api/queues/{vhost}/{name}/get` (`rabbit_mgmt_wm_exchange_publish`,
//! `rabbit_mgmt_wm_queue_get`). Meant for tests and debugging, as RabbitMQ warns: a get takes
//! messages and gives them back (or acks them) at once.
//!
//! Properties travel as AMQP basic properties, the encoding every message carries, so a
//! message published here is the same as one published by an AMQP client.

use super::exchanges::exchange_name;
use super::json::{body, opt_str, req_str, table_json};
use super::{ApiError, ApiResult, Caller, Shared};
use crate::amqp::convert;
use amqp_wire::{BasicProperties, FieldTable, FieldValue, ShortString};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use bytes::BytesMut;
use pigeon_broker::permission::Access;
use pigeon_broker::{Message, Properties, QueuedMessage};
use serde_json::{json, Map, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/exchanges/{vhost}/{name}/publish", post(publish))
        .route("/api/queues/{vhost}/{name}/get", post(get))
}

fn short(map: &Map<String, Value>, key: &str) -> ApiResult<Option<ShortString>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => ShortString::new(s)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("{key} is too long"))),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

fn small_int(map: &Map<String, Value>, key: &str, max: u64) -> ApiResult<Option<u8>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= max)
            .map(|n| Some(n as u8))
            .ok_or_else(|| ApiError::bad_request(format!("{key} must be an integer <= {max}"))),
    }
}

/// A JSON value as an AMQP field value (integers as `l`, strings as `S`, as RabbitMQ's
/// `rabbit_mgmt_format:to_amqp_table` does).
fn field_value(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => FieldValue::I64(i),
            (None, Some(f)) => FieldValue::F64(f),
            _ => FieldValue::Void,
        },
        Value::String(s) => FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes())),
        Value::Array(list) => FieldValue::Array(list.iter().map(field_value).collect()),
        Value::Object(m) => field_table(m).map_or(FieldValue::Void, FieldValue::Table),
    }
}

fn field_table(map: &Map<String, Value>) -> ApiResult<FieldTable> {
    let mut t = FieldTable::new();
    for (k, v) in map {
        let key = ShortString::new(k)
            .map_err(|_| ApiError::bad_request("header names are at most 255 bytes"))?;
        t.push(key, field_value(v));
    }
    Ok(t)
}

/// The `properties` object as AMQP basic properties (unknown keys are ignored).
fn properties(map: &Map<String, Value>) -> ApiResult<BasicProperties> {
    let headers = match map.get("headers") {
        None | Some(Value::Null) => None,
        Some(Value::Object(h)) => Some(field_table(h)?),
        Some(_) => return Err(ApiError::bad_request("headers must be an object")),
    };
    let timestamp = match map.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| ApiError::bad_request("timestamp must be an integer"))?,
        ),
    };
    Ok(BasicProperties {
        content_type: short(map, "content_type")?,
        content_encoding: short(map, "content_encoding")?,
        headers,
        delivery_mode: small_int(map, "delivery_mode", 2)?,
        priority: small_int(map, "priority", 255)?,
        correlation_id: short(map, "correlation_id")?,
        reply_to: short(map, "reply_to")?,
        expiration: short(map, "expiration")?,
        message_id: short(map, "message_id")?,
        timestamp,
        kind: short(map, "type")?,
        user_id: short(map, "user_id")?,
        app_id: short(map, "app_id")?,
        cluster_id: None,
    })
}

/// `{"properties": {...}, "routing_key": "k", "payload": "...", "payload_encoding":
/// "string" | "base64"}` -> `{"routed": true}` when at least one queue took it.
async fn publish(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let name = exchange_name(&name);
    let exchange = v.exchange_for_publish(name)?;
    caller.check(&http, &vhost, Access::Write, "exchange", name)?;
    let routing_key = req_str(&map, "routing_key")?;
    let payload = req_str(&map, "payload")?;
    let payload = match opt_str(&map, "payload_encoding")?.unwrap_or("string") {
        "string" => Bytes::copy_from_slice(payload.as_bytes()),
        "base64" => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(payload)
                .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        ),
        _ => {
            return Err(ApiError::bad_request(
                "payload_encoding must be string or base64",
            ))
        }
    };
    if payload.len() as u64 > http.state.config.max_message_size {
        return Err(ApiError::bad_request(
            "payload is larger than max_message_size",
        ));
    }
    let props = match map.get("properties") {
        None | Some(Value::Null) => BasicProperties::default(),
        Some(Value::Object(p)) => properties(p)?,
        Some(_) => return Err(ApiError::bad_request("properties must be an object")),
    };
    let mut raw = BytesMut::new();
    props.encode(&mut raw);
    let message = Message::new(
        &*exchange.name,
        routing_key,
        Properties::new(raw.freeze(), &crate::amqp::AMQP_CODEC),
        payload,
        http.state.broker.next_id(),
    );
    let published = v.publish(&exchange, &message);
    for q in &published.reached {
        q.dispatch();
    }
    Ok(Json(json!({"routed": published.queues > 0})))
}

/// A non-negative integer field, as a number or a numeric string (rabbitmqadmin sends
/// `"count": "1"`; RabbitMQ's `rabbit_mgmt_util:parse_int` takes both).
fn int(map: &Map<String, Value>, key: &str) -> ApiResult<Option<u64>> {
    let parsed = match map.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::bad_request(format!("{key} must be a non-negative integer")))
}

/// The message's properties as RabbitMQ shows them (absent ones left out).
fn properties_json(m: &Message) -> Value {
    let Ok(p) = BasicProperties::decode(&m.properties_bytes()) else {
        return json!({});
    };
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| json!(s.as_str()));
    put("content_type", s(&p.content_type));
    put("content_encoding", s(&p.content_encoding));
    put(
        "headers",
        p.headers.as_ref().map(|h| table_json(&convert::table(h))),
    );
    put("delivery_mode", p.delivery_mode.map(|d| json!(d)));
    put("priority", p.priority.map(|d| json!(d)));
    put("correlation_id", s(&p.correlation_id));
    put("reply_to", s(&p.reply_to));
    put("expiration", s(&p.expiration));
    put("message_id", s(&p.message_id));
    put("timestamp", p.timestamp.map(|t| json!(t)));
    put("type", s(&p.kind));
    put("user_id", s(&p.user_id));
    put("app_id", s(&p.app_id));
    Value::Object(out)
}

/// `{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 50000}`:
/// takes up to `count` messages, answers them, then gives them back or settles them as
/// `ackmode` says (`ack_requeue_true` / `reject_requeue_true`: back in the queue, marked
/// redelivered; `ack_requeue_false`: acknowledged; `reject_requeue_false`: rejected, so
/// dead-lettered if the queue says so).
async fn get(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let queue = v.queue(&name)?;
    caller.check(&http, &vhost, Access::Read, "queue", &name)?;
    let count = int(&map, "count")?.ok_or_else(|| ApiError::bad_request("count is required"))?;
    let ackmode = req_str(&map, "ackmode")?;
    let requeue = match ackmode {
        "ack_requeue_true" | "reject_requeue_true" => true,
        "ack_requeue_false" | "reject_requeue_false" => false,
        other => return Err(ApiError::bad_request(format!("unknown ackmode {other:?}"))),
    };
    let base64_only = match opt_str(&map, "encoding")?.unwrap_or("auto") {
        "auto" => false,
        "base64" => true,
        other => return Err(ApiError::bad_request(format!("unknown encoding {other:?}"))),
    };
    let truncate = map
        .get("truncate")
        .and_then(Value::as_u64)
        .map(|t| t as usize);
    let mut taken: Vec<(QueuedMessage, u32)> = Vec::new();
    while (taken.len() as u64) < count {
        match queue.get(false) {
            Some(got) => taken.push(got),
            None => break,
        }
    }
    let answer: Vec<Value> = taken
        .iter()
        .map(|(m, left)| {
            let body = m.message.body();
            let shown = &body[..truncate.map_or(body.len(), |t| t.min(body.len()))];
            let (payload, encoding) = match std::str::from_utf8(shown) {
                Ok(text) if !base64_only => (text.to_string(), "string"),
                _ => (
                    base64::engine::general_purpose::STANDARD.encode(shown),
                    "base64",
                ),
            };
            json!({
                "payload_bytes": body.len(),
                "redelivered": m.redelivered,
                "exchange": m.message.exchange(),
                "routing_key": m.message.routing_key_in(queue.name()),
                "message_count": left,
                "properties": properties_json(&m.message),
                "payload": payload,
                "payload_encoding": encoding,
            })
        })
        .collect();
    let messages: Vec<QueuedMessage> = taken.into_iter().map(|(m, _)| m).collect();
    match (requeue, ackmode) {
        (true, _) => queue.requeue(messages),
        (false, "reject_requeue_false") => queue.reject(messages),
        (false, _) => queue.settle(messages.iter()),
    }
    queue.dispatch();
    Ok(Json(Value::Array(answer)))
}
