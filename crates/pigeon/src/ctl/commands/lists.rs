//! The `list_*` commands: rabbitmqctl's column names (its `@info_keys`, from
//! deps/rabbitmq_cli/lib/rabbitmq/cli/ctl/commands/list_*_command.ex), its default columns and
//! banners, read from the management API's JSON. A column the API does not report prints empty.
//!
//! Process ids: RabbitMQ names connections and channels by Erlang pid, and scripts pass
//! `list_connections pid` to `close_connection`. Pigeon has no pids, so it makes pid-like
//! tokens without spaces (`<pigeon@host.127.0.0.1.50012.5672>` for a connection, its channels
//! with `.N` appended) that `close_connection` takes back.

use super::{columns, items, quoted, render, Ctx};
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::Value;
use std::collections::HashMap;

/// Lists `path`'s items under the chosen columns; a 404 (a vhost that does not exist) lists
/// nothing, as rabbitmqctl does.
pub(super) fn list(
    ctx: &Ctx,
    keys: &[&str],
    defaults: &[&str],
    banners: &[String],
    path: &str,
    cell: impl Fn(&str, &Value) -> Value,
) -> CtlResult {
    let columns = columns(ctx, keys, defaults)?;
    let body = ctx.node.get_opt(path)?.unwrap_or(Value::Null);
    for b in banners {
        ctx.out.banner(b);
    }
    let rows: Vec<Vec<Value>> = items(body)
        .iter()
        .map(|item| columns.iter().map(|c| cell(c, item)).collect())
        .collect();
    ctx.out.rows(&columns, &rows, render);
    Ok(())
}

/// The item's field `column`, or null.
pub(super) fn field(item: &Value, column: &str) -> Value {
    item.get(column).cloned().unwrap_or(Value::Null)
}

/// The item's field named like the column.
fn by_name(column: &str, item: &Value) -> Value {
    field(item, column)
}

fn text<'a>(item: &'a Value, key: &str) -> &'a str {
    item.get(key).and_then(Value::as_str).unwrap_or("")
}

const QUEUE_KEYS: &[&str] = &[
    "name",
    "durable",
    "auto_delete",
    "arguments",
    "policy",
    "pid",
    "owner_pid",
    "exclusive",
    "exclusive_consumer_pid",
    "exclusive_consumer_tag",
    "messages_ready",
    "messages_unacknowledged",
    "messages",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "messages_ram",
    "messages_persistent",
    "message_bytes",
    "message_bytes_ready",
    "message_bytes_unacknowledged",
    "message_bytes_ram",
    "message_bytes_persistent",
    "head_message_timestamp",
    "disk_reads",
    "disk_writes",
    "consumers",
    "consumer_utilisation",
    "consumer_capacity",
    "memory",
    "slave_pids",
    "synchronised_slave_pids",
    "state",
    "type",
    "leader",
    "members",
    "online",
];

/// `list_queues [-p vhost] [column ...]`, default `name messages`.
pub fn queues(ctx: &Ctx) -> CtlResult {
    let vhost = ctx.vhost();
    let timeout = ctx.inv.opts.timeout.unwrap_or(60);
    let banners = [
        format!("Timeout: {timeout}.0 seconds ..."),
        format!("Listing queues for vhost {vhost} ..."),
    ];
    let path = format!("/api/queues/{}", seg(vhost));
    list(
        ctx,
        QUEUE_KEYS,
        &["name", "messages"],
        &banners,
        &path,
        |c, q| {
            // Pigeon keeps every message in memory or pages it out on its own: the `_ram`
            // figures are the totals (RabbitMQ's lazy-queue distinction does not exist here).
            let alias = match c {
                "messages_ram" => "messages",
                "messages_ready_ram" => "messages_ready",
                "messages_unacknowledged_ram" => "messages_unacknowledged",
                "message_bytes_ram" => "message_bytes",
                other => other,
            };
            match alias {
                "pid" => Value::String(format!("<{}.{}>", text(q, "node"), text(q, "name"))),
                "policy" => match field(q, "policy") {
                    Value::Null => Value::String(String::new()),
                    p => p,
                },
                other => field(q, other),
            }
        },
    )
}

/// `list_exchanges [-p vhost] [column ...]`, default `name type`.
pub fn exchanges(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "name",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "policy",
    ];
    let banners = [format!("Listing exchanges for vhost {} ...", ctx.vhost())];
    let path = format!("/api/exchanges/{}", seg(ctx.vhost()));
    list(ctx, keys, &["name", "type"], &banners, &path, by_name)
}

/// `list_bindings [-p vhost] [column ...]`, all six columns by default.
pub fn bindings(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "source_name",
        "source_kind",
        "destination_name",
        "destination_kind",
        "routing_key",
        "arguments",
    ];
    let banners = [format!("Listing bindings for vhost {}...", ctx.vhost())];
    let path = format!("/api/bindings/{}", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, |c, b| match c {
        "source_name" => field(b, "source"),
        "source_kind" => Value::String("exchange".into()),
        "destination_name" => field(b, "destination"),
        "destination_kind" => field(b, "destination_type"),
        other => field(b, other),
    })
}

const CONNECTION_KEYS: &[&str] = &[
    "pid",
    "name",
    "port",
    "host",
    "peer_port",
    "peer_host",
    "ssl",
    "ssl_protocol",
    "ssl_key_exchange",
    "ssl_cipher",
    "ssl_hash",
    "peer_cert_subject",
    "peer_cert_issuer",
    "peer_cert_validity",
    "state",
    "channels",
    "protocol",
    "auth_mechanism",
    "user",
    "vhost",
    "container_id",
    "timeout",
    "frame_max",
    "channel_max",
    "client_properties",
    "recv_oct",
    "recv_cnt",
    "send_oct",
    "send_cnt",
    "send_pend",
    "connected_at",
];

/// A connection's pid-like token (see the module's comment).
pub fn connection_pid(c: &Value) -> String {
    format!(
        "<{}.{}.{}.{}>",
        text(c, "node"),
        text(c, "peer_host"),
        field(c, "peer_port"),
        field(c, "port")
    )
}

/// Connection name -> pid token, for channels and consumers.
pub(super) fn connection_pids(ctx: &Ctx) -> CtlResult<HashMap<String, String>> {
    let all = items(ctx.node.get("/api/connections")?);
    Ok(all
        .iter()
        .map(|c| (text(c, "name").to_string(), connection_pid(c)))
        .collect())
}

fn channel_pid(pids: &HashMap<String, String>, connection: &str, number: &Value) -> Value {
    match pids.get(connection) {
        Some(pid) => Value::String(format!("{}.{number}>", pid.trim_end_matches('>'))),
        None => Value::Null,
    }
}

/// `list_connections [column ...]`, default `user peer_host peer_port state`.
pub fn connections(ctx: &Ctx) -> CtlResult {
    let defaults = &["user", "peer_host", "peer_port", "state"];
    let banners = ["Listing connections ...".to_string()];
    list(
        ctx,
        CONNECTION_KEYS,
        defaults,
        &banners,
        "/api/connections",
        |col, c| match col {
            "pid" => Value::String(connection_pid(c)),
            "auth_mechanism" => match field(c, col) {
                Value::Null => Value::String("PLAIN".into()),
                v => v,
            },
            other => field(c, other),
        },
    )
}

/// `list_channels [column ...]`, default `pid user consumer_count messages_unacknowledged`.
pub fn channels(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "pid",
        "connection",
        "name",
        "number",
        "user",
        "vhost",
        "transactional",
        "confirm",
        "consumer_count",
        "messages_unacknowledged",
        "messages_uncommitted",
        "acks_uncommitted",
        "messages_unconfirmed",
        "prefetch_count",
        "global_prefetch_count",
    ];
    let defaults = &["pid", "user", "consumer_count", "messages_unacknowledged"];
    let wanted = columns(ctx, keys, defaults)?;
    let pids = if wanted.iter().any(|c| c == "pid" || c == "connection") {
        connection_pids(ctx)?
    } else {
        HashMap::new()
    };
    let banners = ["Listing channels ...".to_string()];
    list(ctx, keys, defaults, &banners, "/api/channels", |col, ch| {
        let connection = ch
            .pointer("/connection_details/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        match col {
            "pid" => channel_pid(&pids, connection, &field(ch, "number")),
            "connection" => pids
                .get(connection)
                .map_or(Value::Null, |p| Value::String(p.clone())),
            other => field(ch, other),
        }
    })
}

/// `list_consumers [-p vhost] [column ...]`, every column but `activity_status` by default.
pub fn consumers(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "activity_status",
        "arguments",
    ];
    let defaults = &[
        "queue_name",
        "channel_pid",
        "consumer_tag",
        "ack_required",
        "prefetch_count",
        "active",
        "arguments",
    ];
    let wanted = columns(ctx, keys, defaults)?;
    let pids = if wanted.iter().any(|c| c == "channel_pid") {
        connection_pids(ctx)?
    } else {
        HashMap::new()
    };
    let banners = [format!("Listing consumers in vhost {} ...", ctx.vhost())];
    let path = format!("/api/consumers/{}", seg(ctx.vhost()));
    list(ctx, keys, defaults, &banners, &path, |col, c| match col {
        "queue_name" => c.pointer("/queue/name").cloned().unwrap_or(Value::Null),
        "channel_pid" => {
            let details = c.get("channel_details").cloned().unwrap_or(Value::Null);
            let connection = text(&details, "connection_name");
            channel_pid(&pids, connection, &field(&details, "number"))
        }
        other => field(c, other),
    })
}

/// `list_vhosts [column ...]`, default `name`.
pub fn vhosts(ctx: &Ctx) -> CtlResult {
    let keys = &[
        "name",
        "description",
        "tags",
        "default_queue_type",
        "tracing",
        "cluster_state",
    ];
    let banners = ["Listing vhosts ...".to_string()];
    list(ctx, keys, &["name"], &banners, "/api/vhosts", by_name)
}

/// `list_users`: `user tags`.
pub fn users(ctx: &Ctx) -> CtlResult {
    crate::ctl::args::arity(&ctx.inv, 0, 0)?;
    let keys = &["user", "tags"];
    let banners = ["Listing users ...".to_string()];
    list(ctx, keys, keys, &banners, "/api/users", |c, u| match c {
        "user" => field(u, "name"),
        _ => match field(u, "tags") {
            // The API may give tags as "a,b" (before 3.13) or as a list.
            Value::String(s) => Value::Array(
                s.split(',')
                    .filter(|t| !t.is_empty())
                    .map(|t| Value::String(t.trim().into()))
                    .collect(),
            ),
            v => v,
        },
    })
}

/// `list_permissions [-p vhost]`: `user configure write read`.
pub fn permissions(ctx: &Ctx) -> CtlResult {
    crate::ctl::args::arity(&ctx.inv, 0, 0)?;
    let keys = &["user", "configure", "write", "read"];
    let banners = [format!(
        "Listing permissions for vhost {} ...",
        quoted(ctx.vhost())
    )];
    let path = format!("/api/vhosts/{}/permissions", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, by_name)
}

/// `list_topic_permissions [-p vhost]`: `user exchange write read`.
pub fn topic_permissions(ctx: &Ctx) -> CtlResult {
    crate::ctl::args::arity(&ctx.inv, 0, 0)?;
    let keys = &["user", "exchange", "write", "read"];
    let banners = [format!(
        "Listing topic permissions for vhost {} ...",
        quoted(ctx.vhost())
    )];
    let path = format!("/api/vhosts/{}/topic-permissions", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, by_name)
}

/// Lists one user's permissions (`topic`: topic permissions); the user must exist.
fn of_user(ctx: &Ctx, topic: bool) -> CtlResult {
    crate::ctl::args::arity(&ctx.inv, 1, 1)?;
    let user = ctx.arg(0);
    require_user(ctx, user)?;
    let (keys, kind, path): (&[&str], _, _) = if topic {
        (
            &["vhost", "exchange", "write", "read"],
            "topic permissions",
            "topic-permissions",
        )
    } else {
        (
            &["vhost", "configure", "write", "read"],
            "permissions",
            "permissions",
        )
    };
    let banners = [format!("Listing {kind} for user {} ...", quoted(user))];
    let path = format!("/api/users/{}/{path}", seg(user));
    // No column arguments: the user name is the only one.
    let body = ctx.node.get_opt(&path)?.unwrap_or(Value::Null);
    for b in &banners {
        ctx.out.banner(b);
    }
    let columns: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let rows: Vec<Vec<Value>> = items(body)
        .iter()
        .map(|item| keys.iter().map(|k| field(item, k)).collect())
        .collect();
    ctx.out.rows(&columns, &rows, render);
    Ok(())
}

/// `list_user_permissions <user>`: `vhost configure write read`.
pub fn user_permissions(ctx: &Ctx) -> CtlResult {
    of_user(ctx, false)
}

/// `list_user_topic_permissions <user>`: `vhost exchange write read`.
pub fn user_topic_permissions(ctx: &Ctx) -> CtlResult {
    of_user(ctx, true)
}

/// `list_policies [-p vhost]`: `vhost name pattern apply-to definition priority`.
pub fn policies(ctx: &Ctx) -> CtlResult {
    crate::ctl::args::arity(&ctx.inv, 0, 0)?;
    let keys = &[
        "vhost",
        "name",
        "pattern",
        "apply-to",
        "definition",
        "priority",
    ];
    let banners = [format!(
        "Listing policies for vhost {} ...",
        quoted(ctx.vhost())
    )];
    let path = format!("/api/policies/{}", seg(ctx.vhost()));
    list(ctx, keys, keys, &banners, &path, by_name)
}

/// Fails with rabbitmqctl's "no such user" (exit 67) unless `user` exists.
pub fn require_user(ctx: &Ctx, user: &str) -> CtlResult {
    match ctx.node.get_opt(&format!("/api/users/{}", seg(user)))? {
        Some(_) => Ok(()),
        None => Err(CtlError::NoUser(format!(
            "User {} does not exist",
            quoted(user)
        ))),
    }
}

/// Fails with rabbitmqctl's "no such vhost" (exit 65) unless `vhost` exists.
pub fn require_vhost(ctx: &Ctx, vhost: &str) -> CtlResult {
    match ctx.node.get_opt(&format!("/api/vhosts/{}", seg(vhost)))? {
        Some(_) => Ok(()),
        None => Err(CtlError::Data(format!(
            "Virtual host '{vhost}' does not exist"
        ))),
    }
}
