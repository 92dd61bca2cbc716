//! A QoS 1 MQTT persistent session surviving the loss of its node (issue 13 item 5,
//! docs/clustering.md "MQTT in a cluster"): three `pigeon` processes with
//! `mqtt_durable_queue_type = quorum`, driven with rumqttc 5.0. The session's queue is a
//! quorum queue declared through the metadata group (every node has it); its node is
//! SIGKILLed; the client reconnects through another node with the same client id and gets
//! every message the broker acknowledged (PUBACK), none lost, a message twice only as a
//! redelivery (DUP), and new publishes.
//!
//! Waits are bounded by the harness's `within`: for the survivors to see the node down, for
//! the metadata group to commit a change through the node the client reconnects to (then
//! that node has applied the session's subscriptions), and for each message.

use super::cluster::{declare_when_ready, lists_queue, start_all, write_configs, Node};
use super::cluster_mqtt::{until_formed, v4, v5};
use super::ctl_support::ctl_at;
use lapin::types::FieldTable;
use pigeon_tests::mqtt_support::{Mqtt4, Mqtt5};
use pigeon_tests::within;
use rumqttc::v5::mqttbytes::v5::{PubAckReason, Publish};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::QoS as QoS4;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Configurations of `n` nodes whose persistent MQTT sessions keep their queues as quorum
/// queues.
fn quorum_configs(dir: &Path, n: usize) -> Vec<PathBuf> {
    let configs = write_configs(dir, n);
    for c in &configs {
        let text = std::fs::read_to_string(c).unwrap();
        let text = text.replacen(
            "[server]\n",
            "[server]\nmqtt_durable_queue_type = 'quorum'\n",
            1,
        );
        std::fs::write(c, text).unwrap();
    }
    configs
}

/// Waits until every node in `nodes` counts `running` members up (the others seen down).
pub(crate) async fn until_lost(nodes: &[Node], running: usize) {
    for node in nodes {
        within("the lost node seen down", async {
            loop {
                let out = ctl_at(&node.api(), &["cluster_status", "--formatter", "json"]).await;
                let status: serde_json::Value =
                    serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
                if status["running_nodes"]
                    .as_array()
                    .is_some_and(|l| l.len() == running)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
}

/// Waits until a change made through `node` (a durable queue `barrier` declared) is
/// committed: `node` has then applied everything the metadata group committed before, the
/// lost node's sessions' subscriptions included.
pub(crate) async fn until_applied(node: &Node, barrier: &str) {
    let c = declare_when_ready(node, barrier, FieldTable::default()).await;
    let _ = c.close(200, "bye".into()).await;
}

/// A persistent 5.0 session's options (clean start 0, a session expiry).
fn persistent(node: &Node, client_id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = v5(node, client_id);
    o.set_clean_start(false)
        .set_session_expiry_interval(Some(3600));
    o
}

/// Publishes `text-<attempt>` at QoS 1 through `publisher` until one is acknowledged with
/// success (a publish during the queue's election may be refused, 0x80: published again
/// under a new name); every attempt goes into `sent`, the acknowledged one into `acked`.
async fn publish_until_acked(
    publisher: &mut Mqtt5,
    topic: &str,
    text: &str,
    sent: &mut BTreeSet<String>,
    acked: &mut BTreeSet<String>,
) {
    within(&format!("{text} acknowledged"), async {
        for attempt in 0.. {
            let payload = format!("{text}-{attempt}");
            sent.insert(payload.clone());
            if publisher.publish_qos1(topic, payload.as_bytes()).await == PubAckReason::Success {
                acked.insert(payload);
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Receives until every message of `wanted` came; returns how many times each payload came
/// and whether each came with DUP.
async fn receive_all(
    client: &mut Mqtt5,
    wanted: &BTreeSet<String>,
) -> BTreeMap<String, Vec<Publish>> {
    let mut got: BTreeMap<String, Vec<Publish>> = BTreeMap::new();
    while !wanted.iter().all(|w| got.contains_key(w)) {
        let p = client.next_publish().await;
        let text = String::from_utf8_lossy(&p.payload).into_owned();
        got.entry(text).or_default().push(p);
    }
    got
}

/// Every payload received was published; one received more than once only with DUP (a
/// redelivery) after its first time.
fn check_no_invention_and_dup_only(got: &BTreeMap<String, Vec<Publish>>, sent: &BTreeSet<String>) {
    for (text, copies) in got {
        assert!(sent.contains(text), "{text} was never published");
        for again in copies.iter().skip(1) {
            assert!(again.dup, "{text} received twice without DUP: {copies:?}");
        }
    }
}

/// The quorum queue `name` is listed by every node of `nodes` with type quorum.
async fn until_quorum_queue_everywhere(nodes: &[Node], name: &str) {
    for node in nodes {
        within(&format!("{name} listed as a quorum queue"), async {
            loop {
                if lists_queue(node, name).await {
                    let out = ctl_at(
                        &node.api(),
                        &["list_queues", "name", "type", "--formatter", "json"],
                    )
                    .await
                    .ok();
                    let all: serde_json::Value = serde_json::from_str(&out).unwrap();
                    let kind = all
                        .as_array()
                        .and_then(|l| l.iter().find(|q| q["name"] == name))
                        .map(|q| q["type"].clone());
                    assert_eq!(kind, Some(serde_json::json!("quorum")), "{out}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos1_session_in_a_quorum_queue_survives_the_loss_of_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_all(&quorum_configs(dir.path(), 3)).await;
    until_formed(&nodes).await;

    // A persistent 5.0 session on A, subscribed at QoS 1, then offline. Its queue is a quorum
    // queue every node has.
    let mut keeper = Mqtt5::connect(persistent(&nodes[0], "keeper")).await;
    assert!(!keeper.session_present());
    keeper.subscribe("k/#", QoS::AtLeastOnce).await;
    keeper.disconnect().await;
    until_quorum_queue_everywhere(&nodes, "mqtt-session-keeper").await;

    // QoS 1 publishes through C while it is offline, each PUBACKed once a majority of the
    // queue's group has it.
    let (mut sent, mut acked) = (BTreeSet::new(), BTreeSet::new());
    let mut publisher = Mqtt5::connect(v5(&nodes[2], "pub-c")).await;
    for i in 0..20 {
        let text = format!("offline-{i}");
        publish_until_acked(&mut publisher, "k/x", &text, &mut sent, &mut acked).await;
    }

    // A is SIGKILLed; the survivors see it down and B has applied the session's
    // subscriptions.
    nodes.remove(0).kill();
    until_lost(&nodes, 2).await;
    until_applied(&nodes[0], "keeper-barrier").await;

    // The client reconnects through B: its session is there, with every acknowledged
    // message.
    let mut back = Mqtt5::connect(persistent(&nodes[0], "keeper")).await;
    assert!(back.session_present(), "{}", nodes[0].log());
    let got = receive_all(&mut back, &acked).await;
    check_no_invention_and_dup_only(&got, &sent);

    // New publishes through C reach it on B.
    let mut fresh = BTreeSet::new();
    publish_until_acked(&mut publisher, "k/y", "fresh", &mut sent, &mut fresh).await;
    let got = receive_all(&mut back, &fresh).await;
    check_no_invention_and_dup_only(&got, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_session_connected_when_its_node_dies_gets_what_was_published_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_all(&quorum_configs(dir.path(), 3)).await;
    until_formed(&nodes).await;

    // A persistent 5.0 session connected on A, subscribed at QoS 1, receiving.
    let mut keeper = Mqtt5::connect(persistent(&nodes[0], "connected")).await;
    keeper.subscribe("c/#", QoS::AtLeastOnce).await;
    let (mut sent, mut before) = (BTreeSet::new(), BTreeSet::new());
    let mut publisher = Mqtt5::connect(v5(&nodes[2], "pub-c")).await;
    for i in 0..5 {
        let text = format!("before-{i}");
        publish_until_acked(&mut publisher, "c/x", &text, &mut sent, &mut before).await;
    }
    let got = receive_all(&mut keeper, &before).await;
    check_no_invention_and_dup_only(&got, &sent);

    // A is SIGKILLed while the client is connected to it; QoS 1 publishes through C go on
    // (refused while the queue's group elects a leader: published again).
    nodes.remove(0).kill();
    keeper.kill();
    let mut after = BTreeSet::new();
    for i in 0..10 {
        let text = format!("after-{i}");
        publish_until_acked(&mut publisher, "c/x", &text, &mut sent, &mut after).await;
    }

    // The client reconnects through B once the survivors see A down: session present, every
    // message acknowledged after the kill (those before it again only as redeliveries).
    until_lost(&nodes, 2).await;
    until_applied(&nodes[0], "connected-barrier").await;
    let mut back = Mqtt5::connect(persistent(&nodes[0], "connected")).await;
    assert!(back.session_present(), "{}", nodes[0].log());
    let got = receive_all(&mut back, &after).await;
    check_no_invention_and_dup_only(&got, &sent);
    for text in &before {
        if let Some(copies) = got.get(text) {
            assert!(copies.iter().all(|p| p.dup), "{text} again without DUP");
        }
    }

    // New publishes through C reach it on B.
    let mut fresh = BTreeSet::new();
    publish_until_acked(&mut publisher, "c/y", "fresh", &mut sent, &mut fresh).await;
    let got = receive_all(&mut back, &fresh).await;
    check_no_invention_and_dup_only(&got, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_after_its_session_moved_hands_the_queued_messages_over() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes = start_all(&configs).await;
    until_formed(&nodes).await;

    // A persistent 3.1.1 session on A (a classic queue there), subscribed at QoS 1, offline;
    // three QoS 1 messages through B, each PUBACKed once A has it on disk.
    let mut opts = v4(&nodes[0], "returner");
    opts.set_clean_session(false);
    let mut client = Mqtt4::connect(opts).await;
    client.subscribe("h/#", QoS4::AtLeastOnce).await;
    client.disconnect().await;
    let mut publisher = Mqtt4::connect(v4(&nodes[1], "pub-b")).await;
    for i in 1..=3 {
        let text = format!("m-{i}");
        publisher
            .publish("h/x", QoS4::AtLeastOnce, false, text.as_bytes())
            .await;
    }

    // A is SIGKILLed; the client reconnects through B (its subscriptions from the metadata
    // group; the three messages are on A's disk).
    nodes.remove(0).kill();
    until_lost(&nodes, 2).await;
    until_applied(&nodes[0], "returner-barrier").await;
    let mut opts = v4(&nodes[0], "returner");
    opts.set_clean_session(false);
    let mut back = Mqtt4::connect(opts).await;
    assert!(back.session_present);

    // A restarts: it recovers the session from its store, learns that it lives on B now and
    // hands its three messages to it there.
    nodes.insert(0, Node::start(&configs[0]).await);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(back.next_text().await);
    }
    got.sort();
    assert_eq!(got, ["m-1", "m-2", "m-3"], "{}", nodes[0].log());

    // The session ended on A: its queue is gone there and no node routes to A for it.
    within("the session gone from A", async {
        while lists_queue(&nodes[0], "mqtt-session-returner").await
            || lists_queue(&nodes[1], "mqtt-session-returner@rabbit@n0").await
            || lists_queue(&nodes[2], "mqtt-session-returner@rabbit@n0").await
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Publishes through A and C reach the client on B, once each.
    let mut on_a = Mqtt4::connect(v4(&nodes[0], "pub-a")).await;
    on_a.publish("h/y", QoS4::AtLeastOnce, false, b"through A")
        .await;
    let mut on_c = Mqtt4::connect(v4(&nodes[2], "pub-c")).await;
    on_c.publish("h/z", QoS4::AtLeastOnce, false, b"through C")
        .await;
    assert_eq!(back.next_text().await, "through A");
    assert_eq!(back.next_text().await, "through C");
}

/// Waits until no node of `nodes` lists `name` (`pigeon ctl list_queues`).
async fn until_gone_everywhere(nodes: &[Node], name: &str) {
    for node in nodes {
        within(&format!("{name} gone from {}", node.api()), async {
            while lists_queue(node, name).await {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_sessions_queue_is_deleted_on_every_node_when_a_clean_start_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&quorum_configs(dir.path(), 3)).await;
    until_formed(&nodes).await;

    // A persistent session on A with a quorum queue every node has, three QoS 1 messages
    // queued through C while it is offline.
    let mut first = Mqtt5::connect(persistent(&nodes[0], "ender")).await;
    first.subscribe("e/#", QoS::AtLeastOnce).await;
    first.disconnect().await;
    until_quorum_queue_everywhere(&nodes, "mqtt-session-ender").await;
    let (mut sent, mut acked) = (BTreeSet::new(), BTreeSet::new());
    let mut publisher = Mqtt5::connect(v5(&nodes[2], "pub-c")).await;
    for i in 0..3 {
        let text = format!("old-{i}");
        publish_until_acked(&mut publisher, "e/x", &text, &mut sent, &mut acked).await;
    }

    // The session moves to B (session present), then the client starts clean through C:
    // the session ends on B, and its queue on every node.
    let moved = Mqtt5::connect(persistent(&nodes[1], "ender")).await;
    assert!(moved.session_present(), "{}", nodes[1].log());
    moved.disconnect().await;
    let mut clean = Mqtt5::connect(v5(&nodes[2], "ender")).await;
    assert!(!clean.session_present());
    until_gone_everywhere(&nodes, "mqtt-session-ender").await;

    // The clean session subscribes on C (its queue a new one, not the old quorum queue) and
    // gets a publish through A, none of the old messages.
    clean.subscribe("e/#", QoS::AtLeastOnce).await;
    let mut on_a = Mqtt5::connect(v5(&nodes[0], "pub-a")).await;
    let mut fresh = BTreeSet::new();
    publish_until_acked(&mut on_a, "e/y", "fresh", &mut sent, &mut fresh).await;
    let got = receive_all(&mut clean, &fresh).await;
    assert!(
        got.keys().all(|k| fresh.contains(k)),
        "an old message reached the clean session: {got:?}"
    );
    clean.disconnect().await;

    // A new persistent session of the client through A starts empty.
    let again = Mqtt5::connect(persistent(&nodes[0], "ender")).await;
    assert!(!again.session_present(), "{}", nodes[0].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_sessions_queue_is_deleted_on_every_node_when_the_session_expires_one_down() {
    let dir = tempfile::tempdir().unwrap();
    let configs = quorum_configs(dir.path(), 3);
    let mut nodes = start_all(&configs).await;
    until_formed(&nodes).await;

    // A persistent session on A with a 2 s session expiry, subscribed at QoS 1: its quorum
    // queue is on every node.
    let mut options = v5(&nodes[0], "expirer");
    options
        .set_clean_start(false)
        .set_session_expiry_interval(Some(2));
    let mut client = Mqtt5::connect(options).await;
    client.subscribe("x/#", QoS::AtLeastOnce).await;
    until_quorum_queue_everywhere(&nodes, "mqtt-session-expirer").await;

    // C is SIGKILLed (A and B see it down and the metadata group has a leader among them),
    // then the client leaves: its session expires on A while C is down, and the queue goes
    // from A and B.
    nodes.remove(2).kill();
    until_lost(&nodes, 2).await;
    until_applied(&nodes[0], "expirer-barrier").await;
    client.disconnect().await;
    until_gone_everywhere(&nodes, "mqtt-session-expirer").await;

    // C restarts and forgets it too.
    nodes.push(Node::start(&configs[2]).await);
    until_formed(&nodes).await;
    until_gone_everywhere(&nodes, "mqtt-session-expirer").await;
    let back = Mqtt5::connect(persistent(&nodes[2], "expirer")).await;
    assert!(!back.session_present(), "{}", nodes[2].log());
}
