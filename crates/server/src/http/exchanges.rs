//! `/api/exchanges`, `/api/exchanges/{vhost}`, `/api/exchanges/{vhost}/{name}`
//! (`rabbit_mgmt_wm_exchanges`, `rabbit_mgmt_wm_exchange`). The default exchange is listed
//! with the name `""` and reached as `amq.default`, as in RabbitMQ.

use super::json::{arguments, body, list, opt_bool, req_str, table_json, ListQuery};
use super::stats::{self, Ctx, StatsQuery, Tables};
use super::{created_or_updated, ApiError, ApiResult, Caller, Shared};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pigeon_broker::permission::Access;
use pigeon_broker::{Exchange, ExchangeDeclare, VHost};
use pigeon_cluster::MetaCommand;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/exchanges", get(all))
        .route("/api/exchanges/{vhost}", get(of_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(put).delete(delete),
        )
}

/// The exchange's name in the API's paths: `amq.default` is the default exchange.
pub(super) fn exchange_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

fn exchange_json(v: &VHost, x: &Exchange) -> Value {
    let vhost = v.name();
    let applied = v.exchange_policies(&x.name);
    json!({
        "name": &*x.name,
        "vhost": vhost,
        "type": x.kind.as_str(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": table_json(&x.arguments),
        "user_who_performed_action": if x.name.starts_with("amq.") || x.name.is_empty() { "rmq-internal" } else { "" },
        "policy": applied.policy,
        "operator_policy": applied.operator_policy,
        "effective_policy_definition": table_json(&applied.effective),
    })
}

/// An exchange with its `message_stats` (`publish_in`, `publish_out`).
fn with_stats(t: &Tables, ctx: &Ctx, vhost: &VHost, x: &Arc<Exchange>) -> Value {
    let mut v = exchange_json(vhost, x);
    stats::api::exchange(t, x, ctx, &mut v);
    v
}

/// Every exchange of `vhost`, the default one first.
fn of(v: &VHost, t: &Tables, ctx: &Ctx) -> Vec<Value> {
    let mut all = vec![with_stats(t, ctx, v, v.default_exchange())];
    all.extend(v.exchanges().iter().map(|x| with_stats(t, ctx, v, x)));
    all
}

async fn all(
    State(http): State<Shared>,
    caller: Caller,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let ctx = sq.ctx(&http.stats)?;
    let t = http.stats.read();
    let items: Vec<Value> = caller
        .vhosts(&http)
        .iter()
        .flat_map(|v| of(v, &t, &ctx))
        .collect();
    list(items, &q)
}

async fn of_vhost(
    State(http): State<Shared>,
    caller: Caller,
    Path(vhost): Path<String>,
    Query(q): Query<ListQuery>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let ctx = sq.ctx(&http.stats)?;
    let t = http.stats.read();
    list(of(&v, &t, &ctx), &q)
}

async fn show(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(sq): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let v = caller.vhost(&http, &vhost)?;
    let x = v.exchange(exchange_name(&name))?;
    let ctx = sq.ctx(&http.stats)?;
    let t = http.stats.read();
    Ok(Json(with_stats(&t, &ctx, &v, &x)))
}

/// Declares an exchange: `{"type": "direct", "durable": true, "auto_delete": false,
/// "internal": false, "arguments": {}}`. Declaring an existing one with other properties is
/// a 400 with the AMQP precondition text, as in RabbitMQ.
async fn put(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let map = body(&bytes)?;
    let name = exchange_name(&name);
    if name.is_empty() {
        return Err(ApiError::not_authorised(
            "operation not permitted on the default exchange",
        ));
    }
    caller.check(&http, &vhost, Access::Configure, "exchange", name)?;
    let kind = req_str(&map, "type")?;
    let declare = ExchangeDeclare {
        name,
        kind,
        passive: false,
        durable: opt_bool(&map, "durable")?.unwrap_or(true),
        auto_delete: opt_bool(&map, "auto_delete")?.unwrap_or(false),
        internal: opt_bool(&map, "internal")?.unwrap_or(false),
        arguments: arguments(&map)?,
    };
    let existed = v.exchange(name).is_ok();
    if !existed && name.starts_with("amq.") {
        return Err(ApiError::bad_request(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        )));
    }
    // A new durable exchange goes through the cluster when clustered (as an AMQP
    // `exchange.declare` does, `amqp/replicated.rs`); a redeclare is checked here.
    if !existed
        && declare.durable
        && pigeon_broker::exchange::ExchangeKind::parse(kind).is_some()
        && super::replicate(&http, declare_command(&vhost, &declare)).await?
    {
        return Ok(created_or_updated(true));
    }
    v.declare_exchange(&declare)?;
    Ok(created_or_updated(!existed))
}

/// The replicated form of a durable exchange's declaration.
fn declare_command(vhost: &str, d: &ExchangeDeclare) -> MetaCommand {
    MetaCommand::DeclareExchange {
        vhost: vhost.to_string(),
        name: d.name.to_string(),
        kind: d.kind.to_string(),
        auto_delete: d.auto_delete,
        internal: d.internal,
        arguments: crate::cluster::commands::to_json(&d.arguments),
    }
}

#[derive(Deserialize, Default)]
struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
}

async fn delete(
    State(http): State<Shared>,
    caller: Caller,
    Path((vhost, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<Response> {
    let v = caller.vhost(&http, &vhost)?;
    let name = exchange_name(&name);
    let x = v.exchange(name)?;
    caller.check(&http, &vhost, Access::Configure, "exchange", name)?;
    let if_unused = q.if_unused.as_deref() == Some("true");
    // A durable exchange is deleted through the cluster when clustered; `if-unused` with
    // bindings left is refused here, with the local path's error.
    if x.durable
        && !name.starts_with("amq.")
        && !(if_unused && x.binding_count() > 0)
        && super::replicate(
            &http,
            MetaCommand::DeleteExchange {
                vhost: vhost.clone(),
                name: name.to_string(),
            },
        )
        .await?
    {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    v.delete_exchange(name, if_unused)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
