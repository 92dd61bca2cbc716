//! The families RabbitMQ's rabbitmq_prometheus plugin serves, with its names, types, label
//! sets and HELP texts (`prometheus_rabbitmq_core_metrics_collector.erl`,
//! `rabbit_global_counters.erl`, `rabbit_msg_size_metrics.erl`,
//! `prometheus_rabbitmq_alarm_metrics_collector.erl`), so that the RabbitMQ-Overview Grafana
//! dashboard and people's alerts work unchanged. Erlang VM figures become the process's own
//! where they mean the same thing (resident memory, file descriptors, sockets, uptime); the
//! ones that only make sense for an Erlang VM (reductions, schedulers, GC) are not made up.

use super::exposition::{Exposition, Kind, Owner};
use super::{process, QueueRow, Scrape};
use crate::registry::{Protocol, SIZE_BUCKET_LABELS};
use crate::ServerState;
use pigeon_broker::QueueStats;
use std::sync::atomic::Ordering;

const R: Owner = Owner::RabbitMq;

/// Pigeon's queues are all classic queues: the `queue_type` label of the delivery counters.
const QUEUE_TYPE: &str = "rabbit_classic_queue";

/// `rabbitmq_build_info` and `rabbitmq_identity_info`.
pub(super) fn identity(e: &mut Exposition, state: &ServerState, per_object: bool) {
    // The `[cluster]` node name when clustered, as `/api/nodes` names the node.
    let node = match &state.cluster {
        Some(c) => c.name().to_string(),
        None => crate::http::node_name(),
    };
    let n = e.family(
        R,
        "build_info",
        Kind::Untyped,
        "RabbitMQ & Erlang/OTP version info",
    );
    let api = crate::http::RABBITMQ_VERSION;
    let version = env!("CARGO_PKG_VERSION");
    e.sample(
        &n,
        &[
            // The RabbitMQ release whose names and API Pigeon implements (as in
            // /api/overview), then Pigeon's own name and version as RabbitMQ's product_* labels.
            ("rabbitmq_version", api),
            ("prometheus_plugin_version", api),
            ("prometheus_client_version", version),
            ("erlang_version", "none"),
            ("product_name", "Pigeon"),
            ("product_version", version),
        ],
        1,
    );
    let n = e.family(
        R,
        "identity_info",
        Kind::Untyped,
        "RabbitMQ node & cluster identity info",
    );
    // `rabbitmq_cluster` is the cluster's name (rabbitmq_prometheus reads
    // rabbit_nodes:cluster_name(), the `cluster_name` global parameter, defaulting to the
    // node's name), the same stored value /api/cluster-name answers. A single node is its own
    // cluster: its node name is the permanent id, which a rename leaves alone.
    let endpoint = if per_object {
        "per-object"
    } else {
        "aggregated"
    };
    e.sample(
        &n,
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &crate::http::cluster_name(state)),
            ("rabbitmq_cluster_permanent_id", &node),
            ("rabbitmq_endpoint", endpoint),
        ],
        1,
    );
}

/// Connection, channel and queue churn, and the totals (`?TOTALS`).
pub(super) fn churn_and_totals(e: &mut Exposition, state: &ServerState, s: &Scrape) {
    let r = &state.registry;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (mut declared, mut created, mut deleted) = (0, 0, 0);
    for v in state.broker.vhosts() {
        let t = &v.queue_totals;
        declared += t.declared.load(Ordering::Relaxed);
        created += t.created.load(Ordering::Relaxed);
        deleted += t.deleted.load(Ordering::Relaxed);
    }
    let counters: [(&str, &str, u64); 7] = [
        (
            "connections_opened_total",
            "Total number of connections opened",
            load(&r.opened),
        ),
        (
            "connections_closed_total",
            "Total number of connections closed or terminated",
            load(&r.closed),
        ),
        (
            "channels_opened_total",
            "Total number of channels opened",
            load(&r.channels_opened),
        ),
        (
            "channels_closed_total",
            "Total number of channels closed",
            load(&r.channels_closed),
        ),
        (
            "queues_declared_total",
            "Total number of queues declared",
            declared,
        ),
        (
            "queues_created_total",
            "Total number of queues created",
            created,
        ),
        (
            "queues_deleted_total",
            "Total number of queues deleted",
            deleted,
        ),
    ];
    for (name, help, v) in counters {
        e.single(R, name, Kind::Counter, help, v);
    }
    let consumers: u64 = s.rows.iter().map(|q| u64::from(q.stats.consumers)).sum();
    let totals: [(&str, &str, u64); 4] = [
        ("connections", "Connections currently open", r.len() as u64),
        (
            "channels",
            "Channels currently open",
            r.channel_count() as u64,
        ),
        ("consumers", "Consumers currently connected", consumers),
        ("queues", "Queues available", s.rows.len() as u64),
    ];
    for (name, help, v) in totals {
        e.single(R, name, Kind::Gauge, help, v);
    }
}

type Get = fn(&QueueStats) -> u64;

/// The queue families (`queue_coarse_metrics`, `queue_metrics`, `queue_delivery_metrics`):
/// one sample per queue labelled `vhost` and `queue` on `/metrics/per-object`, their sum
/// without labels on `/metrics`, as RabbitMQ aggregates them.
pub(super) fn queues(e: &mut Exposition, s: &Scrape) {
    let families: [(&str, Kind, &str, Get); 10] = [
        (
            "queue_messages_ready",
            Kind::Gauge,
            "Messages ready to be delivered to consumers",
            |s| u64::from(s.ready),
        ),
        (
            "queue_messages_unacked",
            Kind::Gauge,
            "Messages delivered to consumers but not yet acknowledged",
            |s| u64::from(s.unacked),
        ),
        (
            "queue_messages",
            Kind::Gauge,
            "Sum of ready and unacknowledged messages - total queue depth",
            |s| u64::from(s.ready) + u64::from(s.unacked),
        ),
        (
            "queue_messages_ready_bytes",
            Kind::Gauge,
            "Size in bytes of ready messages",
            |s| s.bytes,
        ),
        (
            "queue_consumers",
            Kind::Gauge,
            "Consumers on a queue",
            |s| u64::from(s.consumers),
        ),
        (
            "queue_messages_published_total",
            Kind::Counter,
            "Total number of messages published into a queue through an exchange on a channel",
            |s| s.counters.publish,
        ),
        // Pigeon's queues count deliveries and gets without splitting them by ack mode:
        // these two carry both modes.
        (
            "queue_messages_delivered_total",
            Kind::Counter,
            "Total number of messages delivered from a queue to consumers",
            |s| s.counters.deliver,
        ),
        (
            "queue_get_total",
            Kind::Counter,
            "Total number of messages fetched from a queue with basic.get",
            |s| s.counters.get,
        ),
        (
            "queue_messages_redelivered_total",
            Kind::Counter,
            "Total number of messages redelivered from a queue to consumers",
            |s| s.counters.redeliver,
        ),
        (
            "queue_messages_acked_total",
            Kind::Counter,
            "Total number of messages acknowledged by consumers on a queue",
            |s| s.counters.ack,
        ),
    ];
    for (name, kind, help, get) in families {
        let n = e.family(R, name, kind, help);
        if s.per_object {
            for q in &s.rows {
                if e.gone() {
                    return;
                }
                write_queue_sample(e, &n, s, q, get(&q.stats));
            }
        } else {
            let sum: u64 = s.rows.iter().map(|q| get(&q.stats)).sum();
            e.sample(&n, &[], sum);
        }
    }
}

fn write_queue_sample(e: &mut Exposition, name: &str, s: &Scrape, q: &QueueRow, v: u64) {
    let vhost = s.vhosts[q.vhost].name();
    e.sample(name, &[("vhost", vhost), ("queue", q.queue.name())], v);
}

/// `rabbitmq_global_*` (`rabbit_global_counters`): per protocol, and per protocol and queue
/// type for what happens at a queue (deliveries, acks).
pub(super) fn global(e: &mut Exposition, state: &ServerState, s: &Scrape) {
    type Total = fn(&crate::registry::MessageTotals) -> u64;
    let per_protocol: [(&str, &str, Total); 6] = [
        (
            "global_messages_received_total",
            "Total number of messages received from publishers",
            |t| t.received,
        ),
        (
            "global_messages_received_confirm_total",
            "Total number of messages received from publishers expecting confirmations",
            |t| t.received_confirm,
        ),
        (
            "global_messages_routed_total",
            "Total number of messages routed to queues or streams",
            |t| t.routed,
        ),
        (
            "global_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            |t| t.unroutable_dropped,
        ),
        (
            "global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            |t| t.unroutable_returned,
        ),
        (
            "global_messages_confirmed_total",
            "Total number of messages confirmed to publishers",
            |t| t.confirmed,
        ),
    ];
    for (name, help, get) in per_protocol {
        let n = e.family(R, name, Kind::Counter, help);
        for (p, t) in Protocol::ALL.into_iter().zip(&s.totals) {
            e.sample(&n, &[("protocol", p.label())], get(t));
        }
    }
    let per_queue_type: [(&str, &str, Total); 8] = [
        (
            "global_messages_delivered_total",
            "Total number of messages delivered to consumers",
            |t| t.delivered(),
        ),
        (
            "global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            |t| t.delivered_consume_manual_ack,
        ),
        (
            "global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            |t| t.delivered_consume_auto_ack,
        ),
        (
            "global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            |t| t.delivered_get_manual_ack,
        ),
        (
            "global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            |t| t.delivered_get_auto_ack,
        ),
        (
            "global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            |t| t.get_empty,
        ),
        (
            "global_messages_redelivered_total",
            "Total number of messages redelivered to consumers",
            |t| t.redelivered,
        ),
        (
            "global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            |t| t.acknowledged,
        ),
    ];
    for (name, help, get) in per_queue_type {
        let n = e.family(R, name, Kind::Counter, help);
        for (p, t) in Protocol::ALL.into_iter().zip(&s.totals) {
            e.sample(
                &n,
                &[("protocol", p.label()), ("queue_type", QUEUE_TYPE)],
                get(t),
            );
        }
    }
    let mut pc = state.registry.publishers_and_consumers();
    // MQTT subscribers are sessions' consumers, which the registry does not see.
    let subs = state.mqtt.registry.subscription_count() as u64;
    pc[Protocol::Mqtt311 as usize].1 += subs;
    for (i, (name, help)) in [
        ("global_publishers", "Current number of publishers"),
        ("global_consumers", "Current number of consumers"),
    ]
    .into_iter()
    .enumerate()
    {
        let n = e.family(R, name, Kind::Gauge, help);
        for p in Protocol::ALL {
            let (publishers, consumers) = pc[p as usize];
            let v = if i == 0 { publishers } else { consumers };
            e.sample(&n, &[("protocol", p.label())], v);
        }
    }
    let n = e.family(
        R,
        "message_size_bytes",
        Kind::Histogram,
        "Size of messages received from publishers",
    );
    for (p, t) in Protocol::ALL.into_iter().zip(&s.totals) {
        e.histogram_series(
            &n,
            &[("protocol", p.label())],
            &SIZE_BUCKET_LABELS,
            &t.size_buckets,
            t.size_sum,
        );
    }
}

/// Node figures (`node_coarse_metrics`, `node_metrics`) and the alarms.
pub(super) fn node(e: &mut Exposition, state: &ServerState) {
    let p = process::read();
    let free = state
        .store
        .as_ref()
        .and_then(|s| crate::alarm::free_space(s.dir()).ok())
        .unwrap_or(0);
    let gauges: [(&str, &str, u64); 8] = [
        ("process_open_fds", "Open file descriptors", p.open_fds),
        ("process_max_fds", "Open file descriptors limit", p.max_fds),
        // Gone from RabbitMQ's collector, still on older dashboards ("TCP sockets available").
        ("process_open_tcp_sockets", "Open TCP sockets", p.sockets),
        (
            "process_max_tcp_sockets",
            "Open TCP sockets limit",
            p.max_fds,
        ),
        (
            "process_resident_memory_bytes",
            "Memory used in bytes",
            state.memory.used(),
        ),
        (
            "resident_memory_limit_bytes",
            "Memory high watermark in bytes",
            state.memory.limit(),
        ),
        (
            "disk_space_available_bytes",
            "Disk space available in bytes",
            free,
        ),
        (
            "disk_space_available_limit_bytes",
            "Free disk space low watermark in bytes",
            state.disk_free_limit.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, v) in gauges {
        e.single(R, name, Kind::Gauge, help, v);
    }
    e.single(
        R,
        "erlang_uptime_seconds",
        Kind::Gauge,
        "Node uptime",
        state.mqtt.stats.started.elapsed().as_secs_f64(),
    );
    let alarm = |b: &std::sync::atomic::AtomicBool| u64::from(b.load(Ordering::Relaxed));
    e.single(
        R,
        "alarms_free_disk_space_watermark",
        Kind::Untyped,
        "is 1 if free disk space watermark alarm is in effect",
        alarm(&state.alarm_causes.disk),
    );
    e.single(
        R,
        "alarms_memory_used_watermark",
        Kind::Untyped,
        "is 1 if VM memory watermark alarm is in effect",
        alarm(&state.alarm_causes.memory),
    );
}
