//! The metric families, written in Prometheus' text exposition format (version 0.0.4) into
//! one buffer, with RabbitMQ's names (rabbitmq_prometheus: `rabbitmq_connections`,
//! `rabbitmq_queue_messages_ready`, `rabbitmq_global_messages_received_total{protocol}`...)
//! so that RabbitMQ's Grafana dashboards work, plus Pigeon's own under `pigeon_`.
//!
//! Every value is read when scraped: gauges from the registry and the broker, counters from
//! the relaxed atomics the objects own. `/metrics` sums queues (no labels), as RabbitMQ's
//! aggregated endpoint does; `/metrics/per-object` labels each queue with `vhost` and `queue`.
//! The queues are read once (one short lock each) into a list, then each family is written
//! from it: memory is that list plus the output buffer.

use crate::registry::{Protocol, ProtocolCounters};
use crate::ServerState;
use pigeon_broker::QueueStats;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Writes families and samples into one buffer.
pub struct Exposition {
    buf: String,
    prefix: String,
}

impl Exposition {
    /// An empty exposition whose RabbitMQ-compatible names start with `prefix` (`rabbitmq`).
    pub fn new(prefix: &str) -> Exposition {
        Exposition {
            buf: String::with_capacity(16 * 1024),
            prefix: prefix.to_string(),
        }
    }

    /// The text.
    pub fn into_string(self) -> String {
        self.buf
    }

    /// Starts a family named `<prefix>_<name>` (`own`: `pigeon_<name>`).
    fn family(&mut self, own: bool, name: &str, kind: &str, help: &str) -> String {
        let full = if own {
            format!("pigeon_{name}")
        } else {
            format!("{}_{name}", self.prefix)
        };
        let _ = writeln!(self.buf, "# HELP {full} {help}");
        let _ = writeln!(self.buf, "# TYPE {full} {kind}");
        full
    }

    /// One sample.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.buf.push_str(name);
        if !labels.is_empty() {
            self.buf.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.buf.push(',');
                }
                self.buf.push_str(k);
                self.buf.push_str("=\"");
                escape_into(&mut self.buf, v);
                self.buf.push('"');
            }
            self.buf.push('}');
        }
        let _ = writeln!(self.buf, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, own: bool, name: &str, kind: &str, help: &str, value: u64) {
        let full = self.family(own, name, kind, help);
        self.sample(&full, &[], value);
    }
}

/// Label values escape `\`, `"` and newlines (text format 0.0.4).
fn escape_into(buf: &mut String, v: &str) {
    // Most names need no escaping: one copy.
    if !v.contains(['\\', '"', '\n']) {
        buf.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}

/// One queue as a scrape sees it.
struct QueueRow {
    vhost: String,
    name: String,
    stats: QueueStats,
}

fn queues(state: &ServerState) -> Vec<QueueRow> {
    let mut rows = Vec::new();
    for vhost in state.broker.vhosts() {
        for q in vhost.queue_list() {
            rows.push(QueueRow {
                vhost: vhost.name().to_string(),
                name: q.name().to_string(),
                stats: q.stats(),
            });
        }
    }
    rows
}

/// Writes every family; `per_object` labels queues instead of summing them.
pub(crate) fn write_all(state: &ServerState, per_object: bool) -> String {
    let mut e = Exposition::new(&state.config.prometheus_prefix);
    identity(&mut e, state);
    connections(&mut e, state);
    let rows = queues(state);
    queue_families(&mut e, state, &rows, per_object);
    global(&mut e, state);
    resources(&mut e, state);
    pigeon_own(&mut e, state, &rows);
    e.into_string()
}

fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("pigeon@{host}")
}

fn identity(e: &mut Exposition, _state: &ServerState) {
    let node = node_name();
    let n = e.family(
        false,
        "identity_info",
        "untyped",
        "RabbitMQ node & cluster identity info",
    );
    e.sample(
        &n,
        &[
            ("rabbitmq_node", &node),
            ("rabbitmq_cluster", &node),
            ("rabbitmq_cluster_permanent_id", &node),
        ],
        1,
    );
    let n = e.family(
        false,
        "build_info",
        "untyped",
        "RabbitMQ & Erlang/OTP version info",
    );
    let version = env!("CARGO_PKG_VERSION");
    e.sample(
        &n,
        &[
            ("rabbitmq_version", version),
            ("prometheus_plugin_version", version),
            ("prometheus_client_version", version),
            ("erlang_version", "none"),
            ("product", "Pigeon"),
        ],
        1,
    );
}

fn connections(e: &mut Exposition, state: &ServerState) {
    let r = &state.registry;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    e.single(
        false,
        "connections",
        "gauge",
        "Connections currently open",
        r.len() as u64,
    );
    e.single(
        false,
        "connections_opened_total",
        "counter",
        "Total number of connections opened",
        load(&r.opened),
    );
    e.single(
        false,
        "connections_closed_total",
        "counter",
        "Total number of connections closed or terminated",
        load(&r.closed),
    );
    e.single(
        false,
        "channels",
        "gauge",
        "Channels currently open",
        r.channel_count() as u64,
    );
    e.single(
        false,
        "channels_opened_total",
        "counter",
        "Total number of channels opened",
        load(&r.channels_opened),
    );
    e.single(
        false,
        "channels_closed_total",
        "counter",
        "Total number of channels closed",
        load(&r.channels_closed),
    );
}

fn queue_families(e: &mut Exposition, state: &ServerState, rows: &[QueueRow], per_object: bool) {
    let (mut declared, mut created, mut deleted) = (0, 0, 0);
    for v in state.broker.vhosts() {
        let t = &v.queue_totals;
        declared += t.declared.load(Ordering::Relaxed);
        created += t.created.load(Ordering::Relaxed);
        deleted += t.deleted.load(Ordering::Relaxed);
    }
    e.single(
        false,
        "queues",
        "gauge",
        "Queues available",
        rows.len() as u64,
    );
    e.single(
        false,
        "queues_declared_total",
        "counter",
        "Total number of queues declared",
        declared,
    );
    e.single(
        false,
        "queues_created_total",
        "counter",
        "Total number of queues created",
        created,
    );
    e.single(
        false,
        "queues_deleted_total",
        "counter",
        "Total number of queues deleted",
        deleted,
    );
    type Get = fn(&QueueStats) -> u64;
    let families: [(&str, &str, &str, Get); 9] = [
        (
            "queue_messages_ready",
            "gauge",
            "Messages ready to be delivered to consumers",
            |s| u64::from(s.ready),
        ),
        (
            "queue_messages_unacked",
            "gauge",
            "Messages delivered to consumers but not yet acknowledged",
            |s| u64::from(s.unacked),
        ),
        (
            "queue_messages",
            "gauge",
            "Sum of ready and unacknowledged messages - total queue depth",
            |s| u64::from(s.ready) + u64::from(s.unacked),
        ),
        (
            "queue_messages_bytes",
            "gauge",
            "Size in bytes of ready messages",
            |s| s.bytes,
        ),
        ("queue_consumers", "gauge", "Consumers on a queue", |s| {
            u64::from(s.consumers)
        }),
        (
            "queue_messages_published_total",
            "counter",
            "Total number of messages published to queues",
            |s| s.counters.publish,
        ),
        (
            "queue_messages_delivered_total",
            "counter",
            "Total number of messages delivered to consumers or fetched",
            |s| s.counters.deliver + s.counters.get,
        ),
        (
            "queue_messages_redelivered_total",
            "counter",
            "Total number of messages redelivered",
            |s| s.counters.redeliver,
        ),
        (
            "queue_messages_acked_total",
            "counter",
            "Total number of messages acknowledged by consumers",
            |s| s.counters.ack,
        ),
    ];
    for (name, kind, help, get) in families {
        let n = e.family(false, name, kind, help);
        if per_object {
            for r in rows {
                e.sample(
                    &n,
                    &[("vhost", &r.vhost), ("queue", &r.name)],
                    get(&r.stats),
                );
            }
        } else {
            let sum: u64 = rows.iter().map(|r| get(&r.stats)).sum();
            e.sample(&n, &[], sum);
        }
    }
}

fn global(e: &mut Exposition, state: &ServerState) {
    let g = &state.registry.global;
    type Get = fn(&ProtocolCounters) -> u64;
    let families: [(&str, &str, Get); 8] = [
        ("global_messages_received_total", "Total number of messages received from publishers", |c| ProtocolCounters::get(&c.received)),
        ("global_messages_routed_total", "Total number of messages routed to queues", |c| ProtocolCounters::get(&c.routed)),
        ("global_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", |c| ProtocolCounters::get(&c.unroutable_dropped)),
        ("global_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", |c| ProtocolCounters::get(&c.unroutable_returned)),
        ("global_messages_confirmed_total", "Total number of messages confirmed to publishers", |c| ProtocolCounters::get(&c.confirmed)),
        ("global_messages_delivered_total", "Total number of messages delivered to consumers", |c| ProtocolCounters::get(&c.delivered)),
        ("global_messages_redelivered_total", "Total number of messages redelivered to consumers", |c| ProtocolCounters::get(&c.redelivered)),
        ("global_messages_acknowledged_total", "Total number of messages acknowledged by consumers", |c| ProtocolCounters::get(&c.acknowledged)),
    ];
    for (name, help, get) in families {
        let n = e.family(false, name, "counter", help);
        for (p, c) in g.all() {
            e.sample(&n, &[("protocol", p.label())], get(c));
        }
    }
    let mut pc = state.registry.publishers_and_consumers();
    // MQTT subscribers are sessions' consumers, which the registry does not see.
    let subs = state.mqtt.registry.subscription_count() as u64;
    pc[Protocol::Mqtt311 as usize].1 += subs;
    let n = e.family(
        false,
        "global_publishers",
        "gauge",
        "Current number of publishers",
    );
    for p in Protocol::ALL {
        e.sample(&n, &[("protocol", p.label())], pc[p as usize].0);
    }
    let n = e.family(
        false,
        "global_consumers",
        "gauge",
        "Current number of consumers",
    );
    for p in Protocol::ALL {
        e.sample(&n, &[("protocol", p.label())], pc[p as usize].1);
    }
}

/// Resident memory of the process from /proc/self/statm (pages of 4 KiB).
fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0)
}

fn resources(e: &mut Exposition, state: &ServerState) {
    e.single(
        false,
        "process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        resident_memory(),
    );
    e.single(
        false,
        "resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        crate::memory_limit(&state.config),
    );
    let free = state
        .store
        .as_ref()
        .and_then(|s| crate::alarm::free_space(s.dir()).ok())
        .unwrap_or(0);
    e.single(
        false,
        "disk_space_available_bytes",
        "gauge",
        "Disk space available in bytes",
        free,
    );
    e.single(
        false,
        "disk_space_available_limit_bytes",
        "gauge",
        "Free disk space low watermark in bytes",
        state.disk_free_limit.load(Ordering::Relaxed),
    );
    let alarm = |b: &std::sync::atomic::AtomicBool| u64::from(b.load(Ordering::Relaxed));
    e.single(
        false,
        "alarms_memory_used_watermark",
        "gauge",
        "is set to 1 when the memory alarm is in effect",
        alarm(&state.alarm_causes.memory),
    );
    e.single(
        false,
        "alarms_free_disk_space_watermark",
        "gauge",
        "is set to 1 when the disk alarm is in effect",
        alarm(&state.alarm_causes.disk),
    );
    e.single(
        false,
        "process_open_fds",
        "gauge",
        "Open file descriptors",
        open_fds(),
    );
    e.single(
        false,
        "process_max_fds",
        "gauge",
        "Open file descriptors limit",
        max_fds(),
    );
}

fn pigeon_own(e: &mut Exposition, state: &ServerState, rows: &[QueueRow]) {
    let stats = &state.mqtt.stats;
    e.single(
        true,
        "mqtt_connections",
        "gauge",
        "MQTT clients connected",
        stats.connected.load(Ordering::Relaxed) as u64,
    );
    e.single(
        true,
        "mqtt_sessions",
        "gauge",
        "MQTT sessions, online and offline",
        state.mqtt.registry.len() as u64,
    );
    let retained: usize = state.broker.vhosts().iter().map(|v| v.retained.len()).sum();
    e.single(
        true,
        "mqtt_retained_messages",
        "gauge",
        "Retained MQTT messages",
        retained as u64,
    );
    let g = &state.registry.global;
    for (name, help, sent) in [
        (
            "mqtt_messages_received_total",
            "PUBLISH packets received from MQTT clients",
            false,
        ),
        (
            "mqtt_messages_sent_total",
            "PUBLISH packets sent to MQTT clients",
            true,
        ),
    ] {
        let n = e.family(true, name, "counter", help);
        for (p, c) in g.all().filter(|(p, _)| p.is_mqtt()) {
            for (qos, label) in ["0", "1", "2"].into_iter().enumerate() {
                let v = if sent {
                    &c.sent_qos[qos]
                } else {
                    &c.received_qos[qos]
                };
                e.sample(
                    &n,
                    &[("protocol", p.label()), ("qos", label)],
                    ProtocolCounters::get(v),
                );
            }
        }
    }
    let n = e.family(
        true,
        "mqtt_messages_dropped_total",
        "counter",
        "PUBLISH packets dropped (larger than the client accepts)",
    );
    for (p, c) in g.all().filter(|(p, _)| p.is_mqtt()) {
        e.sample(
            &n,
            &[("protocol", p.label())],
            ProtocolCounters::get(&c.dropped),
        );
    }
    let dropped: u64 = rows.iter().map(|r| r.stats.dropped).sum();
    e.single(
        true,
        "queue_messages_dropped_total",
        "counter",
        "Messages dropped or refused by a queue length limit",
        dropped,
    );
    let paged: u64 = rows.iter().map(|r| u64::from(r.stats.paged_out)).sum();
    e.single(
        true,
        "queue_messages_paged_out",
        "gauge",
        "Ready messages paged out to the queues' logs",
        paged,
    );
    if let Some(store) = &state.store {
        let s = store.stats();
        e.single(
            true,
            "store_fsyncs_total",
            "counter",
            "fdatasync/fsync calls of the store's flusher",
            s.fsyncs,
        );
        e.single(
            true,
            "store_flushes_total",
            "counter",
            "Group-commit rounds of the store",
            s.epochs,
        );
        e.single(
            true,
            "store_bytes_written_total",
            "counter",
            "Bytes written to the queue logs",
            s.bytes_written,
        );
        e.single(
            true,
            "store_segments_deleted_total",
            "counter",
            "Fully acknowledged segments deleted",
            s.segments_deleted,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new("rabbitmq");
        e.sample("m", &[("queue", "a\"b\\c\nd")], 1);
        assert_eq!(e.into_string(), "m{queue=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn families_carry_the_prefix() {
        let state = crate::tests_support::state();
        let text = write_all(&state, false);
        assert!(text.contains("# TYPE rabbitmq_connections gauge\nrabbitmq_connections 0\n"));
        assert!(text.contains("rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 0"));
    }
}
