//! The read barrier in the broker (issue 13 item 2, docs/clustering.md "Writes and what a
//! client sees"): an entity declared through node A, acknowledged once a majority committed
//! it, is found through node B right after, although B applies committed entries only when it
//! learns of their commit (the leader's next heartbeat).
//!
//! Every lookup is answered from this node's state, as before. Only when one misses (no such
//! vhost, exchange, queue, user...) does the node first catch up with the metadata leader
//! (`Cluster::read_barrier`: a read-index round, coalesced per node) and look again; only then
//! is the answer "not found". Hits pay nothing. Without `[cluster]`, or on a node that knows
//! no leader (a minority), the answer is what it was.
//!
//! The hooks: the AMQP connection (`amqp/connection/barrier.rs`: a channel method answered
//! 404 or 403, `connection.open` of a missing vhost, a login of a missing user, a publish to an
//! exchange with no bindings while metadata is in flight) and the management API ([`http`],
//! a 404 or 401 answer).

use crate::ServerState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pigeon_cluster::Cluster;
use std::sync::Arc;

/// After a lookup through this node missed: catches up with the metadata leader. True when
/// caught up (look again: the answer is now as fresh as the leader's commit at the miss);
/// false when it could not (no leader, unreachable, timed out): answer from what is here.
pub(crate) async fn catch_up(cluster: &Cluster) -> bool {
    match cluster.read_barrier().await {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "cluster: a missed lookup is answered without catching up with the leader");
            false
        }
    }
}

/// The management API's barrier, a layer over every route: a request answered 404 (or 401: a
/// user created through another node) on a clustered node is answered again after the node
/// caught up. The request's body is kept for that (it is read whole by the handlers anyway).
pub(crate) async fn http(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.cluster.clone() else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::http::MAX_BODY_SIZE).await else {
        // Over the limit (answered 400 as everywhere, `json::body_limit_answer`), or the
        // client went away.
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let again = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let response = next
        .clone()
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let missed = matches!(
        response.status(),
        StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED
    );
    if !missed || !catch_up(&cluster).await {
        return response;
    }
    next.run(again).await
}
