//! Pigeon's own endpoints for what rabbitmqctl changes over Erlang distribution rather than
//! HTTP: the memory high watermark and the disk free limit of the running node
//! (`rabbitmqctl set_vm_memory_high_watermark` and `set_disk_free_limit`, which `pigeon ctl`
//! sends here). Administrators only. The change lasts until the node restarts, as in RabbitMQ,
//! where the configuration file's value comes back at boot.
//!
//! - `GET /api/pigeon/vm_memory_high_watermark` -> `{"limit": bytes}`;
//!   `PUT` with `{"relative": 0.4}` (a fraction of the machine's memory, 0 to 1, as
//!   `vm_memory_high_watermark.relative`) or `{"absolute": bytes}`.
//! - `GET /api/pigeon/disk_free_limit` -> `{"limit": bytes}`; `PUT` with `{"absolute": bytes}`
//!   or `{"mem_relative": 1.5}` (a multiple of the machine's memory).
//!
//! Both alarms are checked again at once, so that an alarm the new limit raises or clears is
//! in force when the answer arrives (the timer would otherwise do it within 200 ms).

use super::json::body;
use super::{ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/api/pigeon/vm_memory_high_watermark",
            get(memory_show).put(memory_set),
        )
        .route("/api/pigeon/disk_free_limit", get(disk_show).put(disk_set))
}

/// The one setting a body carries: exactly one of `keys`, a non-negative number.
fn one_number<'a>(map: &Map<String, Value>, keys: &[&'a str]) -> ApiResult<(&'a str, f64)> {
    let given: Vec<&'a str> = keys
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    let [key] = given.as_slice() else {
        return Err(ApiError::bad_request(format!(
            "give exactly one of {}",
            keys.join(", ")
        )));
    };
    let value = map
        .get(*key)
        .and_then(Value::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| ApiError::bad_request(format!("{key} must be a non-negative number")))?;
    Ok((key, value))
}

async fn memory_show(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    Ok(Json(json!({"limit": http.state.memory.limit()})))
}

async fn memory_set(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let limit = match one_number(&map, &["relative", "absolute"])? {
        // RabbitMQ refuses a relative watermark above 1 (`set_vm_memory_high_watermark`).
        ("relative", f) if f > 1.0 => {
            return Err(ApiError::bad_request("relative must be between 0 and 1"))
        }
        ("relative", f) => (crate::memory::total_memory() as f64 * f) as u64,
        (_, bytes) => bytes as u64,
    };
    let state = &http.state;
    state.memory.set_limit(limit);
    state.flow.follow(limit);
    crate::memory::check(state);
    crate::alarm::update_flag(state);
    tracing::info!(limit, by = %caller.name, "memory high watermark changed through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn disk_show(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let limit = http.state.disk_free_limit.load(Ordering::Relaxed);
    Ok(Json(json!({ "limit": limit })))
}

async fn disk_set(State(http): State<Shared>, caller: Caller, bytes: Bytes) -> ApiResult<Response> {
    caller.require_admin()?;
    let map = body(&bytes)?;
    let limit = match one_number(&map, &["absolute", "mem_relative"])? {
        ("mem_relative", f) => (crate::memory::total_memory() as f64 * f) as u64,
        (_, bytes) => bytes as u64,
    };
    let state = &http.state;
    state.disk_free_limit.store(limit, Ordering::Relaxed);
    // statvfs: a blocking call, but one and quick.
    crate::alarm::check_disk(state);
    crate::alarm::update_flag(state);
    tracing::info!(limit, by = %caller.name, "disk free limit changed through the API");
    Ok(StatusCode::NO_CONTENT.into_response())
}
