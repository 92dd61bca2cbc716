//! The statistics of each endpoint's objects, added to the JSON the endpoint builds (so that
//! the endpoint files only call in here): `/api/overview`, queues, exchanges, vhosts,
//! connections, channels and nodes.

use super::render::{self, insert_message_stats, Kind};
use super::ring::Ring;
use super::values::{self, LENGTHS_IN_VHOST, RECV_OCT_IN_VHOST, SEND_OCT_IN_VHOST};
use super::{Ctx, Tables};
use crate::http::{Caller, Http, Shared};
use crate::registry::{ChannelInfo, ConnectionInfo};
use pigeon_broker::{Exchange, Queue, QueueStats, VHost};
use serde_json::{Map, Value};
use std::sync::Arc;

/// `churn_rates` fields, in ring order (`rabbit_mgmt_stats`, `connection_churn_rates`).
const CHURN_FIELDS: [(&str, usize, bool); values::CHURN] = [
    ("connection_created", 0, false),
    ("connection_closed", 1, false),
    ("channel_created", 2, false),
    ("channel_closed", 3, false),
    ("queue_declared", 4, false),
    ("queue_created", 5, false),
    ("queue_deleted", 6, false),
];

/// `node_coarse_stats` fields.
const NODE_FIELDS: [(&str, usize, bool); values::NODE] = [
    ("mem_used", values::MEM_USED, true),
    ("fd_used", values::FD_USED, true),
    ("sockets_used", values::SOCKETS_USED, true),
    ("proc_used", values::PROC_USED, true),
    ("disk_free", values::DISK_FREE, true),
];

fn as_map(v: &mut Value) -> Option<&mut Map<String, Value>> {
    v.as_object_mut()
}

/// `/api/overview`: `message_stats`, the `_details` of `queue_totals` (whose counts it
/// already has) and `churn_rates`. Monitoring users and administrators see the broker-wide
/// counters (every protocol, cumulative since start); other users the sum of the vhosts
/// they may see (their queues' deliveries and their exchanges' publishes).
pub(crate) fn overview(
    http: &Shared,
    caller: &Caller,
    ctx: &Ctx,
    queue_totals: &mut Value,
) -> (Value, Value) {
    let t = http.stats.read();
    let registry = &http.state.registry;
    let message_stats = if caller.is_monitor() {
        let now = values::global(registry);
        if let Some(out) = as_map(queue_totals) {
            let count = |k: &str| out.get(k).and_then(Value::as_u64).unwrap_or(0);
            let lengths = [
                count("messages"),
                count("messages_ready"),
                count("messages_unacknowledged"),
            ];
            render::lengths(out, &lengths, &[&t.queue_totals], [0, 1, 2], ctx);
        }
        render::message_stats(&now, &[&t.overview], Kind::Full, ctx)
    } else {
        let connections = registry.connections();
        let mut sum = [0u64; values::VHOST];
        let mut rings = Vec::new();
        for v in caller.vhosts(http) {
            let now = values::vhost(&v, &connections);
            for (s, x) in sum.iter_mut().zip(now) {
                *s += x;
            }
            rings.extend(Tables::ring_of(&t.vhosts, &v));
        }
        if let Some(out) = as_map(queue_totals) {
            render::lengths(out, &sum, &rings, LENGTHS_IN_VHOST, ctx);
        }
        render::message_stats(&sum, &rings, Kind::PublishAndDeliveries, ctx)
    };
    let churn = render::named_object(&churn_now(http), &[&t.churn], &CHURN_FIELDS, ctx.msg, ctx);
    (message_stats, churn)
}

/// Connections and channels opened and closed, queues declared, created and deleted, now.
fn churn_now(http: &Http) -> [u64; values::CHURN] {
    let mut queue_churn = [0u64; 3];
    for v in http.state.broker.vhosts() {
        for (c, n) in queue_churn.iter_mut().zip(values::queue_churn(&v)) {
            *c += n;
        }
    }
    values::churn(&http.state.registry, queue_churn)
}

/// A queue's `message_stats` and the `_details` of its lengths, from its `stats` read with
/// its JSON.
pub(crate) fn queue(t: &Tables, q: &Arc<Queue>, stats: &QueueStats, ctx: &Ctx, out: &mut Value) {
    let Some(out) = as_map(out) else { return };
    let now = values::queue(stats);
    let ring: Vec<&Ring<{ values::QUEUE }>> = Tables::ring_of(&t.queues, q).into_iter().collect();
    render::lengths(out, &now, &ring, LENGTHS_IN_VHOST, ctx);
    insert_message_stats(
        out,
        render::message_stats(&now, &ring, Kind::PublishAndDeliveries, ctx),
    );
}

/// An exchange's `message_stats` (`publish_in`, `publish_out`), once anything was published
/// to it.
pub(crate) fn exchange(t: &Tables, x: &Arc<Exchange>, ctx: &Ctx, out: &mut Value) {
    let Some(out) = as_map(out) else { return };
    let now = values::exchange(x);
    if now[values::PUBLISH_IN] == 0 {
        return;
    }
    let ring: Vec<_> = Tables::ring_of(&t.exchanges, x).into_iter().collect();
    let stats = render::named_object(
        &now,
        &ring,
        &[
            ("publish_in", values::PUBLISH_IN, false),
            ("publish_out", values::PUBLISH_OUT, false),
        ],
        ctx.msg,
        ctx,
    );
    insert_message_stats(out, stats);
}

/// A vhost's `message_stats`, lengths' `_details` and its connections' `recv_oct` /
/// `send_oct` with `_details`.
pub(crate) fn vhost(
    t: &Tables,
    v: &Arc<VHost>,
    connections: &[ConnectionInfo],
    ctx: &Ctx,
    out: &mut Value,
) {
    let Some(out) = as_map(out) else { return };
    let now = values::vhost(v, connections);
    let ring: Vec<_> = Tables::ring_of(&t.vhosts, v).into_iter().collect();
    render::lengths(out, &now, &ring, LENGTHS_IN_VHOST, ctx);
    render::named(
        out,
        &now,
        &ring,
        &[
            ("recv_oct", RECV_OCT_IN_VHOST, false),
            ("send_oct", SEND_OCT_IN_VHOST, false),
        ],
        ctx.data,
        ctx,
    );
    insert_message_stats(
        out,
        render::message_stats(&now, &ring, Kind::PublishAndDeliveries, ctx),
    );
}

/// A connection's `recv_oct_details` and `send_oct_details`.
pub(crate) fn connection(t: &Tables, c: &ConnectionInfo, ctx: &Ctx, out: &mut Value) {
    let Some(out) = as_map(out) else { return };
    let ring = t.connections.get(c.id).map(|e| e.ring(t));
    let ring: Vec<_> = ring.as_deref().into_iter().collect();
    render::named(
        out,
        &values::connection(c),
        &ring,
        &[
            ("recv_oct", values::RECV_OCT, false),
            ("send_oct", values::SEND_OCT, false),
        ],
        ctx.data,
        ctx,
    );
}

/// A channel's `message_stats`.
pub(crate) fn channel(t: &Tables, c: &ChannelInfo, ctx: &Ctx) -> Value {
    let ring: Vec<_> = t
        .channels
        .get(&c.name)
        .and_then(|e| e.ring.as_ref())
        .into_iter()
        .collect();
    render::message_stats(&values::channel(c), &ring, Kind::Full, ctx)
}

/// The node's figures with their `_details`, those without, and the churn figures RabbitMQ
/// also shows on its node.
pub(crate) fn node(http: &Http, ctx: &Ctx, out: &mut Value) {
    let Some(out) = as_map(out) else { return };
    let t = http.stats.read();
    let now = super::node::sample(http);
    render::named(out, &now, &[&t.node], &NODE_FIELDS, ctx.lengths, ctx);
    render::named(
        out,
        &churn_now(http),
        &[&t.churn],
        &CHURN_FIELDS,
        ctx.msg,
        ctx,
    );
    out.insert("mem_calculation_strategy".into(), "rss".into());
    let s = super::node::statics(http);
    out.insert("fd_total".into(), s.fd_total.into());
    out.insert("sockets_total".into(), s.sockets_total.into());
    out.insert("proc_total".into(), s.proc_total.into());
    out.insert("run_queue".into(), s.run_queue.into());
    out.insert("uptime".into(), s.uptime_ms.into());
}
