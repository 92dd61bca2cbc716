//! rabbitmq-streams' listing commands: `list_stream_connections`, `list_stream_publishers`,
//! `list_stream_consumers`, `list_stream_consumer_groups`, `list_stream_group_consumers`, with
//! their column names and default columns (rabbitmq-streams(8), "Stream plugin"), read from
//! `/api/stream/...`.

use super::lists::{connection_pid, connection_pids, field, list};
use super::{columns, Ctx};
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::Value;
use std::collections::HashMap;

/// The pid token of the connection a publisher or consumer row belongs to.
fn row_pid(pids: &HashMap<String, String>, row: &Value) -> Value {
    row.pointer("/connection_details/name")
        .and_then(Value::as_str)
        .and_then(|name| pids.get(name))
        .map_or(Value::Null, |p| Value::String(p.clone()))
}

/// `list_stream_connections [column ...]`, default `conn_name`.
pub fn connections(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "auth_mechanism",
        "client_properties",
        "conn_name",
        "connected_at",
        "connection_state",
        "frame_max",
        "heartbeat",
        "host",
        "peer_cert_issuer",
        "peer_cert_subject",
        "peer_cert_validity",
        "peer_host",
        "peer_port",
        "port",
        "ssl",
        "ssl_cipher",
        "ssl_hash",
        "ssl_key_exchange",
        "ssl_protocol",
        "subscriptions",
        "user",
        "vhost",
        "pid",
    ];
    let wanted = columns(ctx, keys, &["conn_name"])?;
    let subscriptions = if wanted.iter().any(|c| c == "subscriptions") {
        let mut by_conn: HashMap<String, u64> = HashMap::new();
        for c in super::items(ctx.node.get("/api/stream/consumers")?) {
            if let Some(name) = c
                .pointer("/connection_details/name")
                .and_then(Value::as_str)
            {
                *by_conn.entry(name.to_string()).or_default() += 1;
            }
        }
        by_conn
    } else {
        HashMap::new()
    };
    let banners = ["Listing stream connections ...".to_string()];
    list(
        ctx,
        keys,
        &["conn_name"],
        &banners,
        "/api/stream/connections",
        |col, c| match col {
            "conn_name" => field(c, "name"),
            "connection_state" => field(c, "state"),
            "heartbeat" => field(c, "timeout"),
            "auth_mechanism" => match field(c, col) {
                Value::Null => Value::String("PLAIN".into()),
                v => v,
            },
            "subscriptions" => {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                Value::from(subscriptions.get(name).copied().unwrap_or(0))
            }
            "pid" => Value::String(connection_pid(c)),
            other => field(c, other),
        },
    )
}

/// The connections' pids, when the columns asked for include `connection_pid`.
fn pids_if_wanted(ctx: &Ctx, keys: &[&str]) -> CtlResult<HashMap<String, String>> {
    let wanted = columns(ctx, keys, keys)?;
    if wanted.iter().any(|c| c == "connection_pid") {
        connection_pids(ctx)
    } else {
        Ok(HashMap::new())
    }
}

/// `list_stream_publishers [-p vhost] [column ...]`, every column by default.
pub fn publishers(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "connection_pid",
        "publisher_id",
        "stream",
        "reference",
        "messages_published",
        "messages_confirmed",
        "messages_errored",
    ];
    let pids = pids_if_wanted(ctx, keys)?;
    let banners = [format!(
        "Listing stream publishers in vhost {} ...",
        ctx.vhost()
    )];
    let path = format!("/api/stream/publishers/{}", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, |col, p| match col {
        "connection_pid" => row_pid(&pids, p),
        "messages_published" => field(p, "published"),
        "messages_confirmed" => field(p, "confirmed"),
        "messages_errored" => field(p, "errored"),
        other => field(p, other),
    })
}

/// `list_stream_consumers [-p vhost] [column ...]`, every column by default.
pub fn consumers(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "connection_pid",
        "subscription_id",
        "stream",
        "messages_consumed",
        "offset",
        "offset_lag",
        "credits",
        "active",
        "activity_status",
        "properties",
    ];
    let pids = pids_if_wanted(ctx, keys)?;
    let banners = [format!(
        "Listing stream consumers in vhost {} ...",
        ctx.vhost()
    )];
    let path = format!("/api/stream/consumers/{}", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, |col, c| match col {
        "connection_pid" => row_pid(&pids, c),
        "messages_consumed" => field(c, "consumed"),
        other => field(c, other),
    })
}

/// `list_stream_consumer_groups [-p vhost] [column ...]`, every column by default: the
/// single-active-consumer groups of the vhost (`/api/stream/consumer-groups/{vhost}`).
pub fn consumer_groups(ctx: &Ctx) -> CtlResult {
    let keys = &["stream", "reference", "partition_index", "consumers"];
    let banners = [format!(
        "Listing consumer groups in vhost {} ...",
        ctx.vhost()
    )];
    let path = format!("/api/stream/consumer-groups/{}", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, |col, g| field(g, col))
}

/// `list_stream_group_consumers --stream <stream> --reference <reference> [-p vhost]
/// [column ...]`, every column by default; a group that does not exist is an error, as
/// rabbitmq-streams' "The group does not exist".
pub fn group_consumers(ctx: &Ctx) -> CtlResult {
    let required = |name: &str| {
        ctx.inv
            .opts
            .flag(name)
            .map(str::to_string)
            .ok_or_else(|| CtlError::Usage(format!("--{name} is required")))
    };
    let (stream, reference) = (required("stream")?, required("reference")?);
    let keys = &["subscription_id", "connection_name", "state"];
    let path = format!(
        "/api/stream/consumer-groups/{}/{}/{}",
        seg(ctx.vhost()),
        seg(&stream),
        seg(&reference)
    );
    if ctx.node.get_opt(&path)?.is_none() {
        return Err(CtlError::Data("The group does not exist".into()));
    }
    let banners = [format!(
        "Listing group consumers of stream {stream}, reference {reference} in vhost {} ...",
        ctx.vhost()
    )];
    list(ctx, keys, keys, &banners, &path, |col, c| field(c, col))
}
