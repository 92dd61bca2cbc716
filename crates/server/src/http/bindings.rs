//! Bindings (`rabbit_mgmt_wm_bindings`, `rabbit_mgmt_wm_binding`): `/api/bindings`,
//! `/api/bindings/{vhost}`, `/api/bindings/{vhost}/e/{source}/q|e/{destination}` (GET, POST),
//! `.../{props}` (GET, DELETE), `/api/exchanges/{vhost}/{name}/bindings/source|destination`,
//! `/api/queues/{vhost}/{name}/bindings`.
//!
//! Every queue is bound to the default exchange by its name; those bindings are listed (as
//! RabbitMQ lists them) but cannot be changed.

use super::exchanges::exchange_name;
use super::json::{arguments, body, opt_str, table_json};
use super::{ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use pigeon_broker::permission::Access;
use pigeon_broker::{Destination, Table, VHost};
use serde_json::{json, Value};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/bindings", get(all))
        .route("/api/bindings/{vhost}", get(of_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{dtype}/{destination}",
            get(between).post(create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{dtype}/{destination}/{props}",
            get(show).delete(delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(as_source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(as_destination),
        )
        .route("/api/queues/{vhost}/{name}/bindings", get(of_queue))
}

/// A stable hash of binding arguments (RabbitMQ hashes them with `erlang:phash2`; clients
/// treat the key as opaque and only hand it back).
fn args_hash(args: &Table) -> String {
    let text = table_json(args).to_string();
    // FNV-1a: stable across runs and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:x}")
}

/// RabbitMQ's `properties_key` (`rabbit_mgmt_format:pack_binding_props`): `~` for an empty
/// key without arguments, the quoted key, or the quoted key `~` the arguments' hash.
fn properties_key(key: &str, args: &Table) -> String {
    let quoted = utf8_percent_encode(key, NON_ALPHANUMERIC).to_string();
    match (key.is_empty(), args.is_empty()) {
        (true, true) => "~".into(),
        (false, true) => quoted,
        _ => format!("{quoted}~{}", args_hash(args)),
    }
}

fn binding_json(
    vhost: &str,
    source: &str,
    dest: &str,
    dtype: &str,
    key: &str,
    args: &Table,
) -> Value {
    json!({
        "source": source,
        "vhost": vhost,
        "destination": dest,
        "destination_type": dtype,
        "routing_key": key,
        "arguments": table_json(args),
        "properties_key": properties_key(key, args),
    })
}

/// Every binding of `v`: the implicit default-exchange ones first, then each exchange's.
fn of(v: &VHost) -> Vec<Value> {
    let mut queues = v.queues();
    queues.sort_by(|a, b| a.name().cmp(b.name()));
    let empty = Table::new();
    let mut out: Vec<Value> = queues
        .iter()
        .map(|q| binding_json(v.name(), "", q.name(), "queue", q.name(), &empty))
        .collect();
    let mut exchanges = v.exchanges();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for x in exchanges {
        for b in x.bindings() {
            let (dest, dtype) = match &b.destination {
                Destination::Queue(q) => (q.name().to_string(), "queue"),
                Destination::Exchange(e) => (e.name.to_string(), "exchange"),
            };
            out.push(binding_json(
                v.name(),
                &x.name,
                &dest,
                dtype,
                &b.routing_key,
                &b.arguments,
            ));
        }
    }
    out
}

fn matching(v: &VHost, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    of(v).into_iter().filter(keep).collect()
}

fn is(b: &Value, key: &str, expected: &str) -> bool {
    b.get(key).and_then(Value::as_str) == Some(expected)
}

/// The bindings of `v` to the destination `name` of type `dtype` (`queue` or `exchange`).
fn to_destination(v: &VHost, name: &str, dtype: &str) -> Json<Value> {
    Json(Value::Array(matching(v, |b| {
        is(b, "destination", name) && is(b, "destination_type", dtype)
    })))
}

async fn all(State(http): State<Shared>, caller: Caller) -> Json<Value> {
    let all: Vec<Value> = caller.vhosts(&http).iter().flat_map(|v| of(v)).collect();
    Json(Value::Array(all))
}

async fn of_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    Ok(Json(Value::Array(of(&v))))
}

/// `q` or `e` in the path, as the destination type.
fn destination_type(dtype: &str) -> ApiResult<&'static str> {
    match dtype {
        "q" => Ok("queue"),
        "e" => Ok("exchange"),
        _ => Err(ApiError::not_found()),
    }
}

/// Resolves the destination; 404 when it or the source does not exist.
fn destination(v: &VHost, source: &str, dtype: &str, name: &str) -> ApiResult<Destination> {
    v.exchange(source)?;
    match dtype {
        "queue" => Ok(Destination::Queue(v.queue(name)?)),
        _ => Ok(Destination::Exchange(v.exchange(exchange_name(name))?)),
    }
}

async fn between(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, source, dtype, dest)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let dtype = destination_type(&dtype)?;
    let source = exchange_name(&source).to_string();
    destination(&v, &source, dtype, &dest)?;
    let dest = if dtype == "exchange" {
        exchange_name(&dest)
    } else {
        &dest
    };
    Ok(Json(Value::Array(matching(&v, |b| {
        is(b, "source", &source) && is(b, "destination", dest) && is(b, "destination_type", dtype)
    }))))
}

/// `{"routing_key": "k", "arguments": {}}` -> 201 with the new binding's URI in `Location`.
async fn create(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, source, dtype, dest)): Path<(String, String, String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let dtype = destination_type(&dtype)?;
    let source = exchange_name(&source).to_string();
    if source.is_empty() {
        return Err(ApiError::not_authorised(
            "operation not permitted on the default exchange",
        ));
    }
    let target = destination(&v, &source, dtype, &dest)?;
    let key = opt_str(&map, "routing_key")?.unwrap_or("").to_string();
    let args = arguments(&map)?;
    caller.check(&http, &vhost, Access::Write, dtype, &dest)?;
    caller.check(&http, &vhost, Access::Read, "exchange", &source)?;
    let props = properties_key(&key, &args);
    if !replicate_binding(&http, &v, &source, &target, &key, &args, true).await? {
        v.bind(&source, target, &key, args)?;
    }
    let location = format!(
        "/api/bindings/{}/e/{}/{}/{}/{}",
        utf8_percent_encode(&vhost, NON_ALPHANUMERIC),
        utf8_percent_encode(&source, NON_ALPHANUMERIC),
        if dtype == "queue" { "q" } else { "e" },
        utf8_percent_encode(&dest, NON_ALPHANUMERIC),
        utf8_percent_encode(&props, NON_ALPHANUMERIC),
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// The binding whose `properties_key` is `props`, if any.
fn find(v: &VHost, source: &str, dtype: &str, dest: &str, props: &str) -> ApiResult<Value> {
    matching(v, |b| {
        is(b, "source", source)
            && is(b, "destination", dest)
            && is(b, "destination_type", dtype)
            && is(b, "properties_key", props)
    })
    .into_iter()
    .next()
    .ok_or_else(ApiError::not_found)
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, source, dtype, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let dtype = destination_type(&dtype)?;
    let source = exchange_name(&source);
    Ok(Json(find(&v, source, dtype, &dest, &props)?))
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, source, dtype, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let dtype = destination_type(&dtype)?;
    let source = exchange_name(&source).to_string();
    if source.is_empty() {
        return Err(ApiError::not_authorised(
            "operation not permitted on the default exchange",
        ));
    }
    let found = find(&v, &source, dtype, &dest, &props)?;
    caller.check(&http, &vhost, Access::Write, dtype, &dest)?;
    caller.check(&http, &vhost, Access::Read, "exchange", &source)?;
    let key = found
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("");
    let args = match found.get("arguments") {
        Some(Value::Object(m)) => super::json::table(m),
        _ => Table::new(),
    };
    let target = destination(&v, &source, dtype, &dest)?;
    if !replicate_binding(&http, &v, &source, &target, key, &args, false).await? {
        v.unbind(&source, target, key, args)?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A binding between durable ends, (un)made through the cluster when clustered (as AMQP's
/// `queue.bind` does, `amqp/replicated.rs`): true if it was. Bindings with a non-durable end
/// stay on this node.
async fn replicate_binding(
    http: &Shared,
    v: &VHost,
    source: &str,
    target: &Destination,
    key: &str,
    args: &Table,
    bind: bool,
) -> ApiResult<bool> {
    if http.state.cluster.is_none() {
        return Ok(false);
    }
    let x = v.exchange(source)?;
    if !pigeon_broker::durable::binding_is_durable(&x, target) {
        return Ok(false);
    }
    let (to_exchange, destination) = match target {
        Destination::Queue(q) => (false, q.name().to_string()),
        Destination::Exchange(d) => (true, d.name.to_string()),
    };
    let binding = pigeon_cluster::meta::Binding {
        vhost: v.name().to_string(),
        source: source.to_string(),
        destination,
        to_exchange,
        routing_key: key.to_string(),
        arguments: crate::cluster::commands::to_json(args),
    };
    let command = if bind {
        pigeon_cluster::MetaCommand::Bind { binding }
    } else {
        pigeon_cluster::MetaCommand::Unbind { binding }
    };
    super::replicate(http, command).await
}

async fn as_source(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let name = exchange_name(&name);
    v.exchange(name)?;
    Ok(Json(Value::Array(matching(&v, |b| is(b, "source", name)))))
}

async fn as_destination(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let name = exchange_name(&name);
    v.exchange(name)?;
    Ok(to_destination(&v, name, "exchange"))
}

async fn of_queue(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    v.queue(&name)?;
    Ok(to_destination(&v, &name, "queue"))
}
