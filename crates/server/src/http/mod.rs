//! The management HTTP API: the third adapter onto the broker (beside AMQP and MQTT),
//! compatible with RabbitMQ's management plugin so that `rabbitmqadmin`, HTTP API client
//! libraries and scripts work unchanged.
//!
//! The rooms: this file (the router, the listener's serve loop, the body limit and the
//! errors), `auth.rs` (HTTP basic auth and the user tags that decide what a caller may see and
//! do), `json.rs` (JSON <-> broker values, bodies, list paging), and one file per endpoint
//! family: `overview.rs`, `vhosts.rs`, `users.rs`, `permissions.rs`, `limits.rs`,
//! `exchanges.rs`, `queues.rs`, `messages.rs` (publish and get), `bindings.rs`, `health.rs`,
//! `definitions.rs` (export and import), `connections.rs` (connections, channels, consumers,
//! from the connection registry), `stats/` (the sampler behind `message_stats` and the
//! `_details` rates), `runtime.rs` (Pigeon's own: the memory watermark and disk limit of the
//! running node, for `pigeon ctl`), `policies.rs` (policies and operator policies),
//! `parameters.rs` (runtime and global parameters), `features.rs` (auth, extensions,
//! feature flags, deprecated features: what the UI and clients read on start), `mqtt.rs` (MQTT sessions and
//! retained messages), `super_streams.rs` (`/api/stream/super-streams/`), `stream.rs`
//! (`/api/stream/connections`, `/api/stream/publishers`, `/api/stream/consumers`).
//!
//! Every handler reads the broker's state directly; changes to users, vhosts, permissions and
//! limits write to the metadata store synchronously (fsync), so they run on
//! `spawn_blocking` ([`blocking`]).
//!
//! Errors have RabbitMQ's bodies (`rabbit_mgmt_util`): `{"error":..., "reason":...}`.

mod auth;
mod bindings;
mod cluster;
mod connections;
mod dashboard;
mod definitions;
mod exchanges;
mod features;
mod health;
pub(crate) mod json;
mod limits;
mod messages;
mod mqtt;
mod overview;
mod parameters;
mod peers;
mod permissions;
mod policies;
mod queues;
// Quorum queue replicas: add_member, delete_member, grow, shrink, rebalance (quorummembers).
mod quorum_members;
mod runtime;
mod stats;
mod stream;
mod stream_groups;
mod super_streams;
mod users;
pub(crate) mod vhosts;

use crate::ServerState;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub(crate) use auth::Caller;

/// The largest request body accepted: RabbitMQ's `management.http.max_body_size` default
/// (`?MANAGEMENT_DEFAULT_HTTP_MAX_BODY_SIZE`, 20 MB), so that a definitions import that
/// RabbitMQ takes is taken here too.
pub const MAX_BODY_SIZE: usize = 20_000_000;

/// `rabbitmq_version` and `management_version` in `/api/overview` (clients such as
/// rabbitmqadmin look at them): the one [`crate::RABBITMQ_VERSION`].
pub use crate::RABBITMQ_VERSION;

/// What every handler shares.
pub(crate) struct Http {
    /// The server's state (broker, config, alarms, authentication).
    pub state: Arc<ServerState>,
    /// Every bound listener, for `/api/overview` and the listener health checks.
    pub listeners: Vec<(crate::listen::Kind, SocketAddr)>,
    /// The statistics sampler: rings of counters the rates are computed from.
    pub stats: stats::Sampler,
    /// When the management listener started (`uptime` in `/api/nodes`).
    pub started: std::time::Instant,
}

impl Http {
    /// This node's name, RabbitMQ style (`name@host`): its `[cluster]` node name when
    /// clustered.
    pub fn node(&self) -> String {
        match &self.state.cluster {
            Some(c) => c.name().to_string(),
            None => node_name(),
        }
    }

    /// The cluster's name ([`cluster_name`]).
    pub fn cluster_name(&self) -> String {
        cluster_name(&self.state)
    }

    /// Sets the cluster's name (durably: call from a blocking context).
    pub fn set_cluster_name(&self, name: &str) -> ApiResult<()> {
        let value = serde_json::Value::String(name.to_string()).to_string();
        self.state
            .broker
            .parameters()
            .set_global(CLUSTER_NAME, &value)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(())
    }
}

/// The global parameter holding the cluster's name (RabbitMQ's `cluster_name`).
pub(crate) const CLUSTER_NAME: &str = "cluster_name";

/// This node's name, RabbitMQ style (`name@host`): the API's `node`, the metrics'
/// `rabbitmq_node`.
pub(crate) fn node_name() -> String {
    format!("pigeon@{}", hostname())
}

/// The cluster's name: the global parameter `cluster_name`, as in RabbitMQ (so that
/// `/api/cluster-name`, `/api/global-parameters/cluster_name` and the metrics'
/// `rabbitmq_cluster` agree and it survives restarts); this node's name until one is set.
pub(crate) fn cluster_name(state: &ServerState) -> String {
    state
        .broker
        .parameters()
        .global(CLUSTER_NAME)
        .and_then(|v| serde_json::from_str::<String>(&v).ok())
        .unwrap_or_else(node_name)
}

pub(crate) type Shared = Arc<Http>;

/// The machine's host name (`localhost` when it cannot be read).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// An error answer, with RabbitMQ's JSON body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

impl ApiError {
    /// 404 `Object Not Found`, RabbitMQ's answer for anything missing.
    pub fn not_found() -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "Object Not Found",
            reason: "Not Found".into(),
        }
    }

    /// 400 `bad_request`.
    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad_request",
            reason: reason.into(),
        }
    }

    /// 401 `not_authorised` (RabbitMQ answers 401 for a known user lacking a tag too).
    pub fn not_authorised(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            error: "not_authorised",
            reason: reason.into(),
        }
    }

    /// 500 for a store that refused a write.
    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "internal_server_error",
            reason: reason.into(),
        }
    }
}

/// Makes a metadata change through the cluster when the node is clustered (`crate::cluster`):
/// `Ok(true)` once a majority committed it and this node applied it; `Ok(false)` when the node
/// is not clustered (the caller makes the change itself). A node that cannot reach a majority
/// answers 503, as RabbitMQ's management API does when its metadata store times out.
pub(crate) async fn replicate(
    http: &Http,
    command: pigeon_cluster::MetaCommand,
) -> ApiResult<bool> {
    let Some(cluster) = &http.state.cluster else {
        return Ok(false);
    };
    match crate::cluster::write(cluster, command).await {
        Ok(()) => Ok(true),
        Err(crate::cluster::WriteError::Refused { code: 404, .. }) => Err(ApiError::not_found()),
        Err(crate::cluster::WriteError::Refused { text, .. }) => Err(ApiError::bad_request(text)),
        Err(crate::cluster::WriteError::Unavailable(e)) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "service_unavailable",
            reason: format!("the change was not committed by a majority of the cluster: {e}"),
        }),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "reason": self.reason});
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""),
            );
        }
        response
    }
}

impl From<pigeon_broker::access::AccessError> for ApiError {
    fn from(e: pigeon_broker::access::AccessError) -> ApiError {
        use pigeon_broker::access::AccessError as E;
        match e {
            E::NoSuchUser(_) | E::NoSuchVHost(_) => ApiError::not_found(),
            E::Store(e) => ApiError::internal(e.to_string()),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<pigeon_broker::PolicyError> for ApiError {
    fn from(e: pigeon_broker::PolicyError) -> ApiError {
        use pigeon_broker::PolicyError as E;
        match e {
            // rabbit_runtime_parameters:set_any answers `{error_string, "Validation failed..."}`,
            // which the management API sends as a 400 reason.
            E::Invalid(why) => ApiError::bad_request(format!("Validation failed\n\n{why}\n")),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<pigeon_broker::BrokerError> for ApiError {
    fn from(e: pigeon_broker::BrokerError) -> ApiError {
        use pigeon_broker::BrokerError as E;
        match e {
            E::NotFound(_) => ApiError::not_found(),
            E::AccessRefused(r) => ApiError::not_authorised(r),
            // RabbitMQ answers a refused declare (inequivalent arguments...) with 400.
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// A handler's result.
pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// Runs a store write off the async runtime (the metadata store fsyncs).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))
}

/// The user named in the path, or 404.
pub(crate) fn user_or_404(
    http: &Shared,
    name: &str,
) -> ApiResult<Arc<pigeon_broker::access::User>> {
    http.state
        .broker
        .access()
        .user(name)
        .ok_or_else(ApiError::not_found)
}

/// 201 Created (a new object) or 204 No Content (an update), as RabbitMQ answers a PUT.
pub(crate) fn created_or_updated(created: bool) -> Response {
    if created {
        StatusCode::CREATED.into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

/// Every route, reached with one trailing slash dropped from the path.
fn router(http: Shared) -> Router {
    use tower::ServiceExt;
    Router::new().fallback_service(routes(http).map_request(trim_trailing_slash))
}

/// Drops one trailing `/` from a request's path (not from `/` itself): cowboy's router, which
/// RabbitMQ's management API runs on, splits the path into segments and ignores the empty
/// last one, so `/api/stream/consumers/%2F/` is `/api/stream/consumers/%2F`
/// (rabbitmq-stream-js-client's test suite asks for that one, rabbitmq-stream-rust-client's
/// lists `/api/connections/`).
fn trim_trailing_slash(mut request: axum::extract::Request) -> axum::extract::Request {
    let uri = request.uri();
    let path = uri.path();
    if path.len() <= 1 || !path.ends_with('/') {
        return request;
    }
    let trimmed = match uri.query() {
        Some(q) => format!("{}?{q}", &path[..path.len() - 1]),
        None => path[..path.len() - 1].to_string(),
    };
    let mut parts = uri.clone().into_parts();
    let Ok(path_and_query) = trimmed.parse() else {
        return request;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = axum::http::Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request
}

/// The routes themselves.
fn routes(http: Shared) -> Router {
    Router::new()
        .merge(overview::routes())
        .merge(cluster::routes())
        .merge(vhosts::routes())
        .merge(users::routes())
        .merge(permissions::routes())
        .merge(limits::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(quorum_members::routes())
        .merge(messages::routes())
        .merge(bindings::routes())
        .merge(health::routes())
        .merge(definitions::routes())
        .merge(connections::routes())
        .merge(features::routes())
        .merge(runtime::routes())
        .merge(policies::routes())
        .merge(parameters::routes())
        .merge(dashboard::routes())
        .merge(mqtt::routes())
        .merge(super_streams::routes())
        .merge(stream::routes())
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                error: "method_not_allowed",
                reason: "Method Not Allowed".into(),
            }
        })
        // Read barrier (helper readwrites): a 404 on a clustered node is answered again once
        // the node caught up with the metadata leader (`cluster/barrier.rs`).
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&http.state),
            crate::cluster::barrier::http,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_SIZE))
        .layer(axum::middleware::map_response(json::body_limit_answer))
        .with_state(http)
}

/// The router over `state` with no listener and no statistics sampler (`in_memory.rs`).
pub(crate) fn in_memory_router(state: &Arc<ServerState>) -> Router {
    router(Arc::new(Http {
        state: Arc::clone(state),
        listeners: Vec::new(),
        stats: stats::Sampler::new(state.config.collect_statistics_interval),
        started: std::time::Instant::now(),
    }))
}

/// Imports the definitions file (or directory of `*.json` files) `path` at start, as RabbitMQ's
/// `load_definitions` does; what it cannot honour is logged.
pub(crate) fn load_definitions(
    state: &Arc<ServerState>,
    path: &std::path::Path,
) -> Result<(), String> {
    let http = Arc::new(Http {
        state: Arc::clone(state),
        listeners: Vec::new(),
        stats: stats::Sampler::new(state.config.collect_statistics_interval),
        started: std::time::Instant::now(),
    });
    definitions::load_at_start(&http, path)
}

/// Serves the API on every bound management socket, plain (`plain`) and HTTPS (`secure`),
/// until shutdown: one app, so both see the same state.
pub(crate) async fn serve(
    plain: Vec<TcpListener>,
    secure: Vec<crate::tls::https::TlsListener>,
    state: Arc<ServerState>,
    bound: Vec<(crate::listen::Kind, SocketAddr)>,
) {
    use axum::serve::ListenerExt;
    let http = Arc::new(Http {
        state: Arc::clone(&state),
        listeners: bound,
        stats: stats::Sampler::new(state.config.collect_statistics_interval),
        started: std::time::Instant::now(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    // The sampler ends with the shutdown signal, as the listeners do.
    let sampler = Arc::clone(&http);
    tasks.spawn(async move {
        stats::run(sampler).await;
        Ok(())
    });
    peers::register(&http);
    let app = router(http);
    let stop = |state: &Arc<ServerState>| {
        let mut shutdown = state.shutdown.clone();
        async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        }
    };
    for listener in plain {
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service).with_graceful_shutdown(stop(&state));
        tasks.spawn(async move { served.await });
    }
    for listener in secure {
        // `tap_io` only to have axum hand the listener's peer address to `ConnectInfo`.
        let service = app
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let served =
            axum::serve(listener.tap_io(|_| {}), service).with_graceful_shutdown(stop(&state));
        tasks.spawn(async move { served.await });
    }
    while let Some(served) = tasks.join_next().await {
        if let Ok(Err(e)) = served {
            tracing::error!(error = %e, "management API listener failed");
        }
    }
}
