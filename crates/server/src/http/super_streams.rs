//! `/api/stream/super-streams/{vhost}/{name}`: super streams (partitioned streams, see
//! `broker/src/vhost/super_streams.rs`).
//!
//! `PUT` is RabbitMQ's (rabbitmq_stream_management `rabbit_stream_super_stream_mgmt`, 3.13+):
//! a body `{"partitions": 3}` or `{"binding-keys": "amer,emea"}`, with `"arguments"` the
//! stream protocol's (`max-length-bytes`, `max-age`, ...), its checks, texts and 204. RabbitMQ
//! has no `GET` nor `DELETE` there (`rabbitmq-streams delete_super_stream` goes over Erlang
//! distribution): both are Pigeon's, on the same path, `GET` answering
//! `{"name", "vhost", "partitions": [...]}` (RabbitMQ's `partitions`), `DELETE` deleting as
//! the stream protocol's DeleteSuperStream does. `pigeon ctl add_super_stream` and
//! `delete_super_stream` use them.

use super::json::{arguments, body};
use super::{blocking, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use pigeon_broker::permission::Access;
use pigeon_broker::vhost::{
    split_binding_keys, super_stream_layout, SuperStreamError, MAX_SUPER_STREAM_PARTITIONS,
};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/api/stream/super-streams/{vhost}/{name}",
        put(create).get(show).delete(delete),
    )
}

/// RabbitMQ's answer to a refused creation: 400 with the reason as Erlang prints it
/// (`io_lib:format("~p", [Reason])`), e.g. `{reference_already_exists,"there is already an
/// exchange named s"}`.
fn refused(e: &SuperStreamError) -> ApiError {
    let (atom, text) = match e {
        SuperStreamError::ValidationFailed(m) => ("validation_failed", m),
        SuperStreamError::AlreadyExists(m) => ("reference_already_exists", m),
        SuperStreamError::NotFound(m) => ("stream_not_found", m),
        SuperStreamError::Internal(m) => ("internal_error", m),
        _ => ("internal_error", &String::new()),
    };
    ApiError::bad_request(format!(
        "{{{atom},{}}}",
        serde_json::Value::from(text.as_str())
    ))
}

/// The partition count, a number or a string holding one (rabbit_data_coercion:to_integer),
/// with RabbitMQ's texts.
fn partitions(v: &Value) -> ApiResult<usize> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::bad_request("The partitions must be a number"))?;
    if n < 1 {
        return Err(ApiError::bad_request(
            "The partition number must be greater than 0",
        ));
    }
    match usize::try_from(n) {
        Ok(n) if n <= MAX_SUPER_STREAM_PARTITIONS => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "The partition number must not exceed {MAX_SUPER_STREAM_PARTITIONS}"
        ))),
    }
}

/// The binding keys: RabbitMQ takes a comma-separated string; a JSON list is taken too.
fn binding_keys(v: &Value) -> ApiResult<Vec<String>> {
    let keys = match v {
        Value::String(s) => split_binding_keys(s),
        Value::Array(items) => items
            .iter()
            .map(|k| match k {
                Value::String(s) => Ok(s.trim().to_string()),
                _ => Err(ApiError::bad_request("binding-keys must be strings")),
            })
            .collect::<ApiResult<Vec<String>>>()?
            .into_iter()
            .filter(|k| !k.is_empty())
            .collect(),
        Value::Number(n) => vec![n.to_string()],
        _ => return Err(ApiError::bad_request("binding-keys must be a string")),
    };
    if keys.is_empty() {
        return Err(ApiError::bad_request(
            "The number of binding keys must be greater than 0",
        ));
    }
    if keys.len() > MAX_SUPER_STREAM_PARTITIONS {
        return Err(ApiError::bad_request(format!(
            "The number of binding keys must not exceed {MAX_SUPER_STREAM_PARTITIONS}"
        )));
    }
    Ok(keys)
}

/// The permissions RabbitMQ asks for (rabbit_stream_utils
/// `check_super_stream_management_permitted`): configure on the exchange and on every
/// partition, read on the exchange (binding from it), write on every partition (binding to
/// it). Refused with RabbitMQ's "Access refused.".
fn check_management(
    http: &Shared,
    caller: &Caller,
    vhost: &str,
    name: &str,
    streams: &[String],
) -> ApiResult<()> {
    let allowed = caller
        .check(http, vhost, Access::Configure, "exchange", name)
        .and_then(|()| {
            streams
                .iter()
                .try_for_each(|s| caller.check(http, vhost, Access::Configure, "queue", s))
        })
        .and_then(|()| caller.check(http, vhost, Access::Read, "exchange", name))
        .and_then(|()| {
            streams
                .iter()
                .try_for_each(|s| caller.check(http, vhost, Access::Write, "queue", s))
        });
    allowed.map_err(|_| ApiError::not_authorised("Access refused."))
}

/// `PUT`: creates the super stream (rabbit_stream_super_stream_mgmt `accept_content`).
async fn create(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    caller
        .check(&http, &vhost, Access::Configure, "exchange", &name)
        .map_err(|_| ApiError::not_authorised("Access refused."))?;
    let map = body(&bytes)?;
    let (count, keys) = match (map.get("partitions"), map.get("binding-keys")) {
        (None, None) => {
            return Err(ApiError::bad_request(
                "Must specify partitions or binding keys",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "Specify partitions or binding keys, not both",
            ))
        }
        (Some(p), None) => (Some(partitions(p)?), Vec::new()),
        (None, Some(k)) => (None, binding_keys(k)?),
    };
    let arguments = arguments(&map)?;
    let (streams, keys) = super_stream_layout(&name, count, &keys);
    check_management(&http, &caller, &vhost, &name, &streams)?;
    let limit = http.state.broker.access().vhost_limits(&vhost).max_queues;
    v.check_super_stream_queue_limit(&name, streams.len(), limit)
        .map_err(|e| refused(&e))?;
    let created = blocking(move || v.create_super_stream(&name, streams, keys, arguments)).await?;
    created.map_err(|e| refused(&e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET` (Pigeon's): the super stream's partitions, in order.
async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let partitions = v
        .super_stream_partitions(&name)
        .map_err(|_| ApiError::not_found())?;
    Ok(Json(json!({
        "name": name,
        "vhost": vhost,
        "partitions": partitions,
    })))
}

/// `DELETE` (Pigeon's): deletes the exchange and its partition streams, with the permissions
/// DeleteSuperStream asks for (configure on the exchange, then the management permissions
/// over the partitions read before deleting them).
async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    caller
        .check(&http, &vhost, Access::Configure, "exchange", &name)
        .map_err(|_| ApiError::not_authorised("Access refused."))?;
    let partitions = v
        .super_stream_partitions(&name)
        .map_err(|_| ApiError::not_found())?;
    check_management(&http, &caller, &vhost, &name, &partitions)?;
    blocking(move || v.delete_super_stream_partitions(&name, &partitions)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
