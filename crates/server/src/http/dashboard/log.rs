//! `GET /api/pigeon/log?since=SEQ&limit=N`: the live log's lines after `since` (Pigeon's own
//! endpoint; RabbitMQ's UI has no log page). Monitoring and administrator users only, as
//! RabbitMQ shows node details only to them: a log names users, addresses and queues of every
//! vhost.
//!
//! Answer: `{"lines": [{"seq", "timestamp" (ms), "level", "target", "message"}], "last": SEQ,
//! "missed": N, "capacity": N}`. The dashboard polls with `since` = the last `last` it got;
//! `missed` counts lines that left the ring before it asked.

use crate::http::{ApiError, ApiResult, Caller, Shared};
use crate::livelog;
use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/api/pigeon/log", get(log))
}

#[derive(Deserialize, Default)]
struct LogQuery {
    since: Option<String>,
    limit: Option<String>,
}

fn number(value: Option<&str>, key: &str) -> ApiResult<Option<u64>> {
    value
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

async fn log(caller: Caller, Query(q): Query<LogQuery>) -> ApiResult<Json<Value>> {
    caller.require_monitor()?;
    let since = number(q.since.as_deref(), "since")?.unwrap_or(0);
    let limit = number(q.limit.as_deref(), "limit")?
        .map_or(livelog::CAPACITY, |l| (l as usize).min(livelog::CAPACITY));
    let tail = livelog::since(since, limit);
    let lines: Vec<Value> = tail
        .lines
        .iter()
        .map(|l| {
            json!({
                "seq": l.seq,
                "timestamp": l.time_ms,
                "level": l.level,
                "target": l.target,
                "message": l.text,
            })
        })
        .collect();
    Ok(Json(json!({
        "lines": lines,
        "last": tail.last,
        "missed": tail.missed,
        "capacity": livelog::CAPACITY,
    })))
}
