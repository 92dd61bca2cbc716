//! The Prometheus endpoint: `GET /metrics` (aggregated) and `GET /metrics/per-object` (a
//! sample per queue), as RabbitMQ's rabbitmq_prometheus serves them on port 15692. Served by
//! axum, the same HTTP stack as the management API. A scrape is written on a blocking thread
//! (it reads every queue), never on the runtime's workers, and streamed to the client in
//! chunks as it is written (`exposition.rs`).

use super::exposition::{Exposition, CHUNKS_AHEAD};
use crate::listen::Bound;
use crate::ServerState;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes.
pub(crate) fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .with_state(state)
}

async fn aggregated(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
) -> Response {
    scrape(state, false).await
}

async fn per_object(
    axum::extract::State(state): axum::extract::State<Arc<ServerState>>,
) -> Response {
    scrape(state, true).await
}

async fn scrape(state: Arc<ServerState>, per_object: bool) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_AHEAD);
    let prefix = state.config.prometheus_prefix.clone();
    // Probed first (at once, bounded): the writing below runs on a blocking thread.
    let unreachable = super::cluster::unreachable_peers(&state).await;
    tokio::task::spawn_blocking(move || {
        let mut e = Exposition::streaming(&prefix, tx);
        super::write_with(&mut e, &state, per_object, Some(unreachable));
        e.finish();
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        Body::from_stream(chunks),
    )
        .into_response()
}

/// Serves the endpoint on one bound socket until shutdown.
pub(crate) async fn serve(bound: Bound, state: Arc<ServerState>) {
    let mut shutdown = state.shutdown.clone();
    let app = router(Arc::clone(&state));
    let addr = bound.addr;
    let result = axum::serve(bound.listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(%addr, error = %e, "Prometheus listener failed");
    }
}

/// Serves the endpoint over TLS on one bound socket until shutdown.
pub(crate) async fn serve_tls(listener: crate::tls::https::TlsListener, state: Arc<ServerState>) {
    let mut shutdown = state.shutdown.clone();
    let app = router(Arc::clone(&state));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "Prometheus TLS listener failed");
    }
}
