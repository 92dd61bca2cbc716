//! Small read-only endpoints the RabbitMQ management UI and HTTP API clients call on start:
//! `/api/auth` (`rabbit_mgmt_wm_auth`: unauthenticated, what login the UI should offer),
//! `/api/extensions` (`rabbit_mgmt_wm_extensions`: UI plugins), `/api/feature-flags`
//! (`rabbit_mgmt_wm_feature_flags`) and `/api/deprecated-features[/used]`
//! (`rabbit_mgmt_wm_deprecated_features`).
//!
//! Pigeon has no UI extensions, no feature flags (nothing is gated behind a cluster-wide
//! upgrade switch; `pigeon ctl enable_feature_flag` is accepted and does nothing) and no
//! deprecated features, so the lists are empty: what these endpoints answer is true.

use super::{Caller, Shared};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/auth", get(auth))
        .route("/api/extensions", get(empty))
        .route("/api/feature-flags", get(empty))
        .route("/api/deprecated-features", get(empty))
        .route("/api/deprecated-features/used", get(empty))
}

/// No OAuth 2: the UI logs in with basic auth against the user store.
async fn auth() -> Json<Value> {
    Json(json!({"oauth_enabled": false}))
}

/// An empty list, to any management user.
async fn empty(_caller: Caller) -> Json<Value> {
    Json(json!([]))
}
