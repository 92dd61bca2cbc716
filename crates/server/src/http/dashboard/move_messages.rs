//! `POST /api/pigeon/queues/{vhost}/{name}/move` with `{"destination": "queue", "count": N}`:
//! moves up to `count` messages (all those ready when the request came, without `count`) from
//! the queue to another queue of the same vhost, oldest first, for retrying a dead-letter
//! queue. RabbitMQ's UI does this with a shovel (`rabbitmq_shovel_management`'s "Move
//! messages"): source `ack-mode` on-confirm, destination the queue through the default
//! exchange. This is the same without a shovel, and with the same guarantee:
//!
//! a message is never lost. Each batch is taken from the source as unacknowledged deliveries,
//! published to the destination through the default exchange (routing key: its name; the
//! properties and body as they are, `x-death` included), and only once the destination holds
//! it (and, for a persistent message in a durable queue, once the store has synced it, as a
//! publisher confirm waits) is it acknowledged in the source. A crash in between leaves it in
//! both queues (a duplicate), never in neither. A message the destination refuses (its
//! length limit with `reject-publish`) goes back to the source, and the move stops there.
//!
//! Answer: `{"moved": N, "stopped": null | "why"}`. Pigeon's own endpoint (RabbitMQ has none).

use crate::http::json::{body, opt_str};
use crate::http::{ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use pigeon_broker::permission::Access;
use pigeon_broker::{Message, QueuedMessage};
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new().route(
        "/api/pigeon/queues/{vhost}/{name}/move",
        post(move_messages),
    )
}

/// Messages taken, published and settled together: one store sync per batch.
const BATCH: u64 = 256;

fn count(map: &serde_json::Map<String, Value>) -> ApiResult<Option<u64>> {
    let parsed = match map.get("count") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    parsed
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("count must be a non-negative integer"))
}

async fn move_messages(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let source = v.queue(&name)?;
    let destination = opt_str(&map, "destination")?
        .filter(|d| !d.is_empty())
        .ok_or_else(|| ApiError::bad_request("destination is required"))?
        .to_string();
    if destination == name {
        return Err(ApiError::bad_request(
            "destination must be another queue than the source",
        ));
    }
    let target = v.queue(&destination).map_err(|_| {
        ApiError::bad_request(format!(
            "no queue '{destination}' in vhost '{vhost}' to move messages to"
        ))
    })?;
    // As an AMQP client of the caller would need: read the source, write to the default
    // exchange (`amq.default`), which routes to the destination.
    caller.check(&http, &vhost, Access::Read, "queue", &name)?;
    caller.check(&http, &vhost, Access::Write, "exchange", "")?;
    let wanted = count(&map)?.unwrap_or_else(|| u64::from(source.message_count()));
    let job = Move {
        http: Arc::clone(&http),
        vhost: v,
        source,
        target,
        destination: destination.clone(),
    };
    // On a task of its own: a client that goes away mid-move must not drop taken messages
    // on the floor (they would stay unacknowledged in the source with no one to settle them).
    let (moved, stopped) = tokio::spawn(job.run(wanted))
        .await
        .map_err(|e| ApiError::internal(format!("moving messages failed: {e}")))??;
    tracing::info!(queue = %name, %vhost, %destination, moved, by = %caller.name, "messages moved through the management API");
    Ok(Json(json!({"moved": moved, "stopped": stopped})))
}

/// One move, owned by its task.
struct Move {
    http: Shared,
    vhost: Arc<pigeon_broker::VHost>,
    source: Arc<pigeon_broker::Queue>,
    target: Arc<pigeon_broker::Queue>,
    destination: String,
}

impl Move {
    /// Moves up to `wanted` messages: how many moved, and why it stopped early if it did.
    async fn run(self, wanted: u64) -> ApiResult<(u64, Option<String>)> {
        let Move {
            http,
            vhost: v,
            source,
            target,
            destination,
        } = self;
        let name = source.name().to_string();
        let vhost = v.name().to_string();
        let exchange = Arc::clone(v.default_exchange());
        let mut moved = 0u64;
        let mut stopped: Option<String> = None;
        while moved < wanted && stopped.is_none() {
            let mut taken: Vec<QueuedMessage> = Vec::new();
            while (taken.len() as u64) < BATCH.min(wanted - moved) {
                match source.get(false) {
                    Some((m, _)) => taken.push(m),
                    None => break,
                }
            }
            if taken.is_empty() {
                break;
            }
            let mut stored = false;
            let mut published = 0;
            for m in &taken {
                let copy = Message::new(
                    &*exchange.name,
                    &destination,
                    m.message.properties(),
                    m.message.body_bytes(),
                    http.state.broker.next_id(),
                );
                let p = v.publish(&exchange, &copy);
                if p.queues == 0 || p.rejected || target.is_deleted() {
                    stopped = Some(if p.queues == 0 || target.is_deleted() {
                        format!("queue '{destination}' is gone")
                    } else {
                        format!("queue '{destination}' refused a message (length limit)")
                    });
                    break;
                }
                stored |= p.stored;
                published += 1;
            }
            target.dispatch();
            let unsent = taken.split_off(published);
            if !unsent.is_empty() {
                source.requeue(unsent);
            }
            if stored {
                if let Some(store) = &http.state.store {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    store.on_synced(
                        store.current_epoch(),
                        Box::new(move |r| {
                            let _ = tx.send(r);
                        }),
                    );
                    match rx.await {
                        Ok(Ok(())) => {}
                        failed => {
                            // Not on disk in the destination: the source keeps them.
                            source.requeue(taken);
                            source.dispatch();
                            let why = match failed {
                                Ok(Err(e)) => e.to_string(),
                                _ => "the store closed".into(),
                            };
                            tracing::error!(queue = %name, %vhost, error = %why, "moving messages stopped: the store failed");
                            return Err(ApiError::internal(format!(
                                "the store failed while moving messages: {why}"
                            )));
                        }
                    }
                }
            }
            moved += taken.len() as u64;
            source.settle(taken.iter());
        }
        source.dispatch();
        Ok((moved, stopped))
    }
}
