//! Definitions export and import (`rabbit_mgmt_wm_definitions`): `GET/POST /api/definitions`
//! and `/api/definitions/{vhost}`, in RabbitMQ's JSON (`rabbit_version`, `users` with
//! `password_hash` + `hashing_algorithm` + `tags`, `vhosts`, `permissions`,
//! `topic_permissions`, `parameters`, `global_parameters`, `policies`, `queues`,
//! `exchanges`, `bindings`), so that a file exported from RabbitMQ imports here and back.
//!
//! Export leaves out what RabbitMQ leaves out: the default exchange, `amq.*` exchanges,
//! exclusive queues and the default exchange's implicit bindings. Vhost limits and operator
//! policies travel as RabbitMQ stores them, runtime parameters of the components
//! `vhost-limits` and `operator_policy`; other components' parameters and the global
//! parameters as they were imported or set.
//!
//! Import applies users, vhosts, permissions, topic permissions, limits, global parameters,
//! parameters, policies, exchanges, queues and bindings in that order, and is not atomic
//! (neither is RabbitMQ's): the first error stops it with a 400, leaving what was imported
//! before. What Pigeon keeps without honouring it (parameters of components it does not
//! implement, such as federation or shovels; policy keys such as `ha-mode`) and what it
//! changes (non-classic queue types) is listed in the answer, one line per component or kind:
//! 204 when everything was imported as it is, 200 `{"warnings": [...]}` otherwise.

use super::json::{body, table_json, value_json};
use super::parameters::{global_list, limits_parameter, operator_parameter, parameter_json};
use super::policies::policy_json;
use super::{blocking, ApiResult, Caller, Shared, RABBITMQ_VERSION};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::{Destination, PolicyKind, QueueOptions, VHost};
use serde_json::{json, Map, Value};
use std::sync::Arc;

mod import;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost).post(import_vhost),
        )
}

/// The queues, exchanges, bindings and policies of one vhost, as definitions.
fn objects(v: &VHost) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
    let name = v.name();
    let mut queues: Vec<Value> = v
        .queues()
        .iter()
        .filter(|q| q.options().exclusive_owner.is_none())
        .map(|q| {
            let o = q.options();
            json!({"name": q.name(), "vhost": name, "durable": o.durable,
                   "auto_delete": o.auto_delete, "arguments": table_json(&o.arguments)})
        })
        .collect();
    queues.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut all = v.exchanges();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let mut exchanges = Vec::new();
    let mut bindings = Vec::new();
    for x in &all {
        if !x.name.starts_with("amq.") {
            exchanges.push(
                json!({"name": &*x.name, "vhost": name, "type": x.kind.as_str(),
                "durable": x.durable, "auto_delete": x.auto_delete, "internal": x.internal,
                "arguments": table_json(&x.arguments)}),
            );
        }
        for b in x.bindings() {
            let (dest, dtype) = match &b.destination {
                Destination::Queue(q) if q.options().exclusive_owner.is_some() => continue,
                Destination::Queue(q) => (q.name().to_string(), "queue"),
                Destination::Exchange(e) => (e.name.to_string(), "exchange"),
            };
            bindings.push(
                json!({"source": &*x.name, "vhost": name, "destination": dest,
                "destination_type": dtype, "routing_key": b.routing_key,
                "arguments": table_json(&b.arguments)}),
            );
        }
    }
    let policies = v
        .policies_of(PolicyKind::Policy)
        .iter()
        .map(|p| policy_json(name, p))
        .collect();
    (queues, exchanges, bindings, policies)
}

/// The runtime parameters of a vhost: those stored, its limits, its operator policies.
fn parameters(http: &Shared, v: &VHost) -> Vec<Value> {
    let mut out: Vec<Value> = http
        .state
        .broker
        .parameters()
        .list()
        .iter()
        .filter(|p| p.vhost == v.name())
        .map(parameter_json)
        .collect();
    out.extend(limits_parameter(http, v.name()));
    out.extend(
        v.policies_of(PolicyKind::Operator)
            .iter()
            .map(|p| operator_parameter(v.name(), p)),
    );
    out
}

async fn export_all(State(http): State<Shared>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let broker = &http.state.broker;
    let access = broker.access();
    let mut users = access.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let users: Vec<Value> = users
        .iter()
        .map(|u| super::users::user_json(&http, u))
        .collect();
    let live: Vec<_> = broker
        .vhosts()
        .into_iter()
        .filter(|v| !v.is_deleted())
        .collect();
    let vhosts: Vec<Value> = live
        .iter()
        .map(|v| {
            let info = v.info();
            // As RabbitMQ 3.13 exports it: top level and under `metadata`.
            let dqt = info.default_queue_type.as_deref().unwrap_or("classic");
            json!({"name": v.name(), "description": info.description, "tags": info.tags,
                   "default_queue_type": dqt,
                   "metadata": {"description": info.description, "tags": info.tags,
                                "default_queue_type": dqt}})
        })
        .collect();
    let mut permissions = access.all_permissions();
    permissions.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    let permissions: Vec<Value> = permissions
        .iter()
        .map(|(u, v, p)| json!({"user": u, "vhost": v, "configure": p.configure, "write": p.write, "read": p.read}))
        .collect();
    let mut topic = access.all_topic_permissions();
    topic.sort_by(|a, b| (&a.1, &a.0, &a.2.exchange).cmp(&(&b.1, &b.0, &b.2.exchange)));
    let topic_permissions: Vec<Value> = topic
        .iter()
        .map(|(u, v, p)| json!({"user": u, "vhost": v, "exchange": p.exchange, "write": p.write, "read": p.read}))
        .collect();
    let (mut queues, mut exchanges, mut bindings, mut policies, mut parameters) =
        (vec![], vec![], vec![], vec![], vec![]);
    for v in &live {
        let (q, x, b, p) = objects(v);
        queues.extend(q);
        exchanges.extend(x);
        bindings.extend(b);
        policies.extend(p);
        parameters.extend(self::parameters(&http, v));
    }
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Pigeon",
        "product_version": env!("CARGO_PKG_VERSION"),
        "users": users,
        "vhosts": vhosts,
        "permissions": permissions,
        "topic_permissions": topic_permissions,
        "parameters": parameters,
        "global_parameters": global_list(&http),
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })))
}

async fn export_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let v = caller.vhost(&http, &vhost)?;
    let (queues, exchanges, bindings, policies) = objects(&v);
    let parameters = parameters(&http, &v);
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Pigeon",
        "product_version": env!("CARGO_PKG_VERSION"),
        "parameters": parameters,
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    })))
}

async fn import_all(
    State(http): State<Shared>,
    caller: Caller,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let defs = body(&bytes)?;
    run_import(http, defs, None, caller.name).await
}

/// A vhost's definitions: objects without a `vhost` field (or with another) go to `{vhost}`.
async fn import_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    bytes: Bytes,
) -> ApiResult<Response> {
    caller.require_admin()?;
    caller.vhost(&http, &vhost)?;
    let defs = body(&bytes)?;
    run_import(http, defs, Some(vhost), caller.name).await
}

async fn run_import(
    http: Shared,
    defs: Map<String, Value>,
    vhost: Option<String>,
    by: String,
) -> ApiResult<Response> {
    // Quorum queues on a node without [cluster] run on its local node of one: started before
    // the import declares them (helper quorumone).
    if let Some(local) = &http.state.declares.local {
        if !local.is_started() && Value::Object(defs.clone()).to_string().contains("quorum") {
            local.start().await.map_err(super::ApiError::internal)?;
        }
    }
    // Through the cluster when clustered: the import's thread waits on this runtime for each
    // change to commit (`import::Replicator`).
    let runtime = tokio::runtime::Handle::current();
    let warnings = blocking(move || {
        let cluster = import::Replicator::new(&http, Some(runtime));
        import::import(&http, &defs, vhost.as_deref(), &cluster)
    })
    .await??;
    tracing::info!(user = %by, skipped = warnings.len(), "definitions imported through the management API");
    if warnings.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Json(json!({"warnings": warnings})).into_response())
}

/// The files `load_definitions` names: the file itself, or a directory's `*.json` files in
/// name order.
fn definition_files(path: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    let what = |e: std::io::Error| format!("load_definitions {}: {e}", path.display());
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(what)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Imports `load_definitions` at start (RabbitMQ imports it at every boot too). On a
/// clustered node the files are read here (an unreadable file stops the start), then imported
/// through the cluster in the background, after the set-up of `cluster/seed.rs` (the default
/// vhost they may use), as soon as a majority commits, so that every node has what they
/// define ([`replicate_at_start`]).
pub(super) fn load_at_start(http: &Shared, path: &std::path::Path) -> Result<(), String> {
    let mut loaded = Vec::new();
    for file in definition_files(path)? {
        let shown = file.display().to_string();
        let bytes = std::fs::read(&file).map_err(|e| format!("load_definitions {shown}: {e}"))?;
        let defs = body(&Bytes::from(bytes))
            .map_err(|e| format!("load_definitions {shown}: {}", e.reason))?;
        if http.state.cluster.is_some() {
            loaded.push((shown, defs));
            continue;
        }
        let warnings = import::import(http, &defs, None, &import::Replicator::new(http, None))
            .map_err(|e| format!("load_definitions {shown}: {}", e.reason))?;
        for w in &warnings {
            tracing::warn!(file = %shown, "definitions: {w}");
        }
        tracing::info!(file = %shown, "definitions imported");
        loaded.push((shown, defs));
    }
    if http.state.cluster.is_some() {
        replicate_at_start(http, loaded);
    }
    Ok(())
}

/// How long the start's import through the cluster waits before trying again when no
/// majority committed (the cluster is forming, or this node is cut off).
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Imports the start's definitions through the cluster, in the background, trying again until
/// a majority commits them or the node shuts down.
fn replicate_at_start(http: &Shared, loaded: Vec<(String, Map<String, Value>)>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let (http, rt) = (Arc::clone(http), runtime.clone());
    let loaded = Arc::new(loaded);
    runtime.spawn(async move {
        let mut shutdown = http.state.shutdown.clone();
        loop {
            let seeded = match crate::cluster::seed::once(&http.state).await {
                Ok(()) => true,
                Err(crate::cluster::WriteError::Unavailable(_)) => false,
                Err(e) => {
                    tracing::warn!(reason = %e, "cluster: configured users or policies refused");
                    true
                }
            };
            let (h, files, rt2) = (Arc::clone(&http), Arc::clone(&loaded), rt.clone());
            let done = blocking(move || {
                if !seeded {
                    return Err((
                        String::from("(set-up)"),
                        super::ApiError {
                            status: StatusCode::SERVICE_UNAVAILABLE,
                            error: "service_unavailable",
                            reason: "the cluster's set-up was not committed yet".into(),
                        },
                    ));
                }
                let cluster = import::Replicator::new(&h, Some(rt2)).forced();
                for (shown, defs) in files.iter() {
                    import::import(&h, defs, None, &cluster).map_err(|e| (shown.clone(), e))?;
                }
                Ok::<(), (String, super::ApiError)>(())
            })
            .await;
            match done {
                Ok(Ok(())) => {
                    tracing::info!("load_definitions imported through the cluster");
                    return;
                }
                Ok(Err((shown, e))) if e.status == StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::debug!(file = %shown, reason = %e.reason, "load_definitions: no majority yet, trying again");
                }
                Ok(Err((shown, e))) => {
                    tracing::warn!(file = %shown, reason = %e.reason, "load_definitions not imported through the cluster");
                    return;
                }
                Err(e) => {
                    tracing::warn!(reason = %e.reason, "load_definitions not imported through the cluster");
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Declare options of a queue from its definitions JSON.
fn queue_options(q: &Map<String, Value>) -> ApiResult<QueueOptions> {
    Ok(QueueOptions {
        durable: super::json::opt_bool(q, "durable")?.unwrap_or(true),
        exclusive_owner: None,
        auto_delete: super::json::opt_bool(q, "auto_delete")?.unwrap_or(false),
        arguments: super::json::arguments(q)?,
    })
}

/// A short description of a skipped item for the warnings.
fn describe(kind: &str, item: &Map<String, Value>) -> String {
    let name = item.get("name").map(value_text).unwrap_or_default();
    format!("{kind} {name}")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => value_json(&super::json::value(other)).to_string(),
    }
}
