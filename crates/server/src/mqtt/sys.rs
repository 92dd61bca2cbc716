//! `$SYS/broker/...` topics, as Mosquitto users monitor them: retained messages on the default
//! vhost's MQTT exchange, refreshed every `mqtt_sys_interval` seconds.

use super::handlers::publish_message;
use crate::ServerState;
use bytes::Bytes;
use mqtt_wire::{PublishProperties, QoS, TopicName};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Publishes the `$SYS` topics every `interval` until shutdown.
pub async fn run(server: Arc<ServerState>, interval: Duration) {
    let mut shutdown = server.shutdown.clone();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => publish_all(&server),
            _ = shutdown.changed() => return,
        }
    }
}

fn publish_all(server: &ServerState) {
    let Some(vhost) = server.broker.vhost("/") else {
        return;
    };
    let Ok(exchange) = vhost.exchange(&server.config.mqtt_exchange) else {
        return;
    };
    let stats = &server.mqtt.stats;
    // PUBLISH received from and sent to MQTT clients: the connections' counters.
    let (mut received, mut sent) = (0, 0);
    for (p, t) in crate::registry::Protocol::ALL
        .into_iter()
        .zip(server.registry.message_totals())
    {
        if p.is_mqtt() {
            received += t.received;
            sent += t.delivered();
        }
    }
    let values = [
        (
            "$SYS/broker/uptime",
            format!("{} seconds", stats.started.elapsed().as_secs()),
        ),
        (
            "$SYS/broker/version",
            format!("pigeon version {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "$SYS/broker/clients/connected",
            stats.connected.load(Ordering::Relaxed).to_string(),
        ),
        (
            "$SYS/broker/clients/total",
            server.mqtt.registry.len().to_string(),
        ),
        ("$SYS/broker/messages/received", received.to_string()),
        ("$SYS/broker/messages/sent", sent.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            server.mqtt.registry.subscription_count().to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            vhost.retained.len().to_string(),
        ),
    ];
    for (topic, value) in values {
        if let Ok(name) = TopicName::new(topic) {
            publish_message(
                &vhost,
                &exchange,
                &name,
                QoS::AtMostOnce,
                true,
                &PublishProperties::default(),
                Bytes::from(value),
                0,
            );
        }
    }
}
