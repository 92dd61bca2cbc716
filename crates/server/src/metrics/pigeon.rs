//! Pigeon's own families, for what RabbitMQ has no metric for: MQTT (connections, sessions,
//! retained messages, messages per QoS, drops), the store (fsyncs and their latency, bytes
//! written), paged-out messages, length-limit drops. Always `pigeon_`, whatever the prefix of
//! the RabbitMQ names, so that they never collide with a future RabbitMQ metric.

use super::exposition::{Exposition, Kind, Owner};
use super::Scrape;
use crate::registry::Protocol;
use crate::ServerState;
use pigeon_store::LATENCY_BUCKETS_US;
use std::sync::atomic::Ordering;

const P: Owner = Owner::Pigeon;

/// The `le` labels of the store's latency buckets, in seconds.
const LATENCY_LE: [&str; 15] = [
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25", "0.5", "1", "2.5", "+Inf",
];

/// MQTT session queues (`mqtt-session-<client id>`, `mqtt-shared-<group>-<filter>`).
fn is_mqtt_queue(name: &str) -> bool {
    name.starts_with("mqtt-session-") || name.starts_with("mqtt-shared-")
}

pub(super) fn mqtt(e: &mut Exposition, state: &ServerState, s: &Scrape) {
    let online = state.mqtt.stats.connected.load(Ordering::Relaxed) as u64;
    e.single(
        P,
        "mqtt_connections",
        Kind::Gauge,
        "MQTT clients connected",
        online,
    );
    let sessions = state.mqtt.registry.len() as u64;
    let n = e.family(
        P,
        "mqtt_sessions",
        Kind::Gauge,
        "MQTT sessions: online (a client is connected) and offline (persistent, kept for a client that left)",
    );
    e.sample(&n, &[("state", "online")], online.min(sessions));
    e.sample(&n, &[("state", "offline")], sessions.saturating_sub(online));
    let (mut retained, mut retained_bytes) = (0u64, 0u64);
    for v in state.broker.vhosts() {
        retained += v.retained.len() as u64;
        retained_bytes += v.retained.bytes();
    }
    e.single(
        P,
        "mqtt_retained_messages",
        Kind::Gauge,
        "Retained MQTT messages",
        retained,
    );
    e.single(
        P,
        "mqtt_retained_bytes",
        Kind::Gauge,
        "Payload bytes of the retained MQTT messages",
        retained_bytes,
    );
    // In a cluster: the cleared topics' tombstones kept (cluster/mqtt_retained.rs).
    let forwarder = state
        .cluster
        .as_ref()
        .and_then(crate::cluster::forward::Forwarder::of);
    if let Some(f) = forwarder {
        e.single(
            P,
            "mqtt_retained_tombstones",
            Kind::Gauge,
            "Cleared retained MQTT messages' tombstones kept until mqtt_retained_tombstone_grace_ms",
            f.retained_tombstones() as u64,
        );
    }
    for (name, help, sent) in [
        (
            "mqtt_messages_received_total",
            "PUBLISH packets received from MQTT clients, per QoS",
            false,
        ),
        (
            "mqtt_messages_sent_total",
            "PUBLISH packets sent to MQTT clients, per QoS",
            true,
        ),
    ] {
        let n = e.family(P, name, Kind::Counter, help);
        for (p, t) in Protocol::ALL.into_iter().zip(&s.totals) {
            if !p.is_mqtt() {
                continue;
            }
            let per_qos = if sent { t.sent_qos } else { t.received_qos };
            for (qos, v) in ["0", "1", "2"].into_iter().zip(per_qos) {
                e.sample(&n, &[("protocol", p.label()), ("qos", qos)], v);
            }
        }
    }
    let too_large: u64 = Protocol::ALL
        .into_iter()
        .zip(&s.totals)
        .filter(|(p, _)| p.is_mqtt())
        .map(|(_, t)| t.dropped)
        .sum();
    // Sessions' queues drop their oldest messages past `mqtt_max_queued_messages` (a client
    // too slow for its subscriptions); counted by the queues, so a clean session's drops go
    // with its queue.
    let queue_full: u64 = s
        .rows
        .iter()
        .filter(|q| is_mqtt_queue(q.queue.name()))
        .map(|q| q.stats.dropped)
        .sum();
    let n = e.family(
        P,
        "mqtt_messages_dropped_total",
        Kind::Counter,
        "Messages for MQTT clients dropped: larger than the client accepts, or its session queue full",
    );
    e.sample(&n, &[("reason", "packet_too_large")], too_large);
    e.sample(&n, &[("reason", "queue_full")], queue_full);
}

pub(super) fn queues(e: &mut Exposition, s: &Scrape) {
    let dropped: u64 = s.rows.iter().map(|q| q.stats.dropped).sum();
    e.single(
        P,
        "queue_messages_dropped_total",
        Kind::Counter,
        "Messages dropped or refused by a queue length limit",
        dropped,
    );
    let paged: u64 = s.rows.iter().map(|q| u64::from(q.stats.paged_out)).sum();
    e.single(
        P,
        "queue_messages_paged_out",
        Kind::Gauge,
        "Ready messages paged out of memory to the queues' logs",
        paged,
    );
}

pub(super) fn store(e: &mut Exposition, state: &ServerState) {
    let Some(store) = &state.store else {
        return;
    };
    let st = store.stats();
    let counters: [(&str, &str, u64); 4] = [
        (
            "store_fsyncs_total",
            "fdatasync/fsync calls of the store's flusher",
            st.fsyncs,
        ),
        (
            "store_flushes_total",
            "Group-commit rounds of the store",
            st.epochs,
        ),
        (
            "store_bytes_written_total",
            "Bytes written to the queue logs",
            st.bytes_written,
        ),
        (
            "store_segments_deleted_total",
            "Fully acknowledged segments deleted",
            st.segments_deleted,
        ),
    ];
    for (name, help, v) in counters {
        e.single(P, name, Kind::Counter, help, v);
    }
    debug_assert_eq!(LATENCY_LE.len(), LATENCY_BUCKETS_US.len() + 1);
    let n = e.family(
        P,
        "store_fsync_duration_seconds",
        Kind::Histogram,
        "How long the store's fdatasync/fsync calls took",
    );
    let h = st.fsync_latency;
    e.histogram_series(&n, &[], &LATENCY_LE, &h.buckets, h.sum_ns as f64 / 1e9);
}

pub(super) fn alarms(e: &mut Exposition, state: &ServerState) {
    let n = e.family(
        P,
        "alarm",
        Kind::Gauge,
        "1 while the resource alarm is in effect (publishers blocked)",
    );
    let on = |b: &std::sync::atomic::AtomicBool| u64::from(b.load(Ordering::Relaxed));
    e.sample(
        &n,
        &[("resource", "memory")],
        on(&state.alarm_causes.memory),
    );
    e.sample(&n, &[("resource", "disk")], on(&state.alarm_causes.disk));
    let n = e.family(
        P,
        "alarm_watermark_bytes",
        Kind::Gauge,
        "The alarm's threshold: memory used above it, or disk free below it, raises the alarm",
    );
    e.sample(&n, &[("resource", "memory")], state.memory.limit());
    e.sample(
        &n,
        &[("resource", "disk")],
        state.disk_free_limit.load(Ordering::Relaxed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_labels_match_the_store_buckets() {
        assert_eq!(LATENCY_LE.len(), LATENCY_BUCKETS_US.len() + 1);
        for (le, us) in LATENCY_LE.iter().zip(LATENCY_BUCKETS_US) {
            let seconds: f64 = le.parse().expect("a number");
            assert!((seconds * 1e6 - us as f64).abs() < 1e-6, "{le} vs {us}");
        }
    }
}
