//! Retained messages' tombstones across the cluster are collected (issue 13 item 5,
//! docs/clustering.md "MQTT in a cluster", "Retained messages"): three `pigeon` processes
//! with `mqtt_retained_tombstone_grace_ms` set small, driven with rumqttc 3.1.1. A retained
//! message cleared through one node leaves a tombstone on every node
//! (`pigeon_mqtt_retained_tombstones` on each node's `/metrics`), which each node forgets once
//! it is older than the bound; the topic stays cleared everywhere.
//!
//! Waits are bounded by the harness's `within` and poll for their condition.

use super::cluster::{start_all, write_configs, Node};
use super::cluster_mqtt::{until_formed, v4};
use super::cluster_ops::prometheus;
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::within;
use rumqttc::QoS;
use std::time::{Duration, Instant};

/// The tombstone bound of the test's nodes.
const GRACE: Duration = Duration::from_secs(3);

/// `pigeon_mqtt_retained_tombstones` on `node`.
async fn tombstones(node: &Node) -> u64 {
    let text = reqwest::get(prometheus(node))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("pigeon_mqtt_retained_tombstones "))
        .unwrap_or_else(|| panic!("no tombstone gauge in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Whether `node` has a retained message for `topic`: a new subscriber is sent a live publish
/// after its SUBACK, so the first PUBLISH it gets is the retained one if there is one.
async fn has_retained(node: &Node, topic: &str, client: &str) -> bool {
    let mut probe = Mqtt4::connect(v4(node, client)).await;
    probe.subscribe(topic, QoS::AtLeastOnce).await;
    let mut live = Mqtt4::connect(v4(node, &format!("{client}-live"))).await;
    live.publish(topic, QoS::AtLeastOnce, false, b"live").await;
    let first = probe.next_publish().await;
    probe.disconnect().await;
    live.disconnect().await;
    first.retain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleared_retained_messages_tombstone_is_collected_on_every_node_after_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    for c in &configs {
        let text = std::fs::read_to_string(c).unwrap();
        let setting = format!(
            "[server]\nmqtt_retained_tombstone_grace_ms = {}\n",
            GRACE.as_millis()
        );
        std::fs::write(c, text.replacen("[server]\n", &setting, 1)).unwrap();
    }
    let nodes = start_all(&configs).await;
    until_formed(&nodes).await;

    // Set on A, known to C; cleared through B.
    let mut on_a = Mqtt4::connect(v4(&nodes[0], "retainer-a")).await;
    on_a.publish("g/x", QoS::AtLeastOnce, true, b"v1").await;
    within("g/x retained on C", async {
        for attempt in 0.. {
            if has_retained(&nodes[2], "g/x", &format!("probe-c-{attempt}")).await {
                return;
            }
        }
    })
    .await;
    let mut on_b = Mqtt4::connect(v4(&nodes[1], "retainer-b")).await;
    let cleared = Instant::now();
    on_b.publish("g/x", QoS::AtLeastOnce, true, b"").await;

    // B keeps the clearing as a tombstone (asserted only while the bound cannot have passed).
    let kept = tombstones(&nodes[1]).await;
    if cleared.elapsed() < GRACE {
        assert_eq!(kept, 1, "{}", nodes[1].log());
    }

    // Past the bound, every node has forgotten it, and the topic stays cleared everywhere.
    for node in &nodes {
        within(
            &format!("the tombstone collected on {}", node.api()),
            async {
                while tombstones(node).await != 0 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            },
        )
        .await;
    }
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            !has_retained(node, "g/x", &format!("final-{i}")).await,
            "g/x came back on {}",
            node.api()
        );
    }

    // Retaining on the topic again works as before: a new message through C reaches A.
    let mut on_c = Mqtt4::connect(v4(&nodes[2], "retainer-c")).await;
    on_c.publish("g/x", QoS::AtLeastOnce, true, b"v2").await;
    within("g/x retained again on A", async {
        for attempt in 0.. {
            if has_retained(&nodes[0], "g/x", &format!("probe-a-{attempt}")).await {
                return;
            }
        }
    })
    .await;
}
