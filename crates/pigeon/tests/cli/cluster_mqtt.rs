//! MQTT across the cluster (issue 13 item 5, docs/clustering.md "MQTT in a cluster"): two
//! `pigeon` processes on loopback, driven with rumqttc (3.1.1 and 5.0) and lapin. A client may
//! connect to any node: a subscription on one node gets the publishes (MQTT and AMQP, wills
//! included) made on the other, retained messages are found on every node, a persistent
//! session follows its client to the other node with its subscriptions and the messages
//! published meanwhile, and a connection taken over from another node gets DISCONNECT 0x8E.
//!
//! Waits are bounded by the harness's `within`; a SUBACK and a CONNACK come only once the
//! other nodes route to the session, so nothing here waits for propagation except the
//! retained message (set on the other nodes asynchronously: the new subscriber retries).

use super::cluster::{start_all, until_login, write_configs, Node};
use super::ctl_support::ctl_at;
use lapin::options::BasicPublishOptions;
use lapin::BasicProperties;
use pigeon_tests::mqtt_support::{Mqtt4, Mqtt5};
use pigeon_tests::within;
use rumqttc::v5;
use rumqttc::QoS;
use std::net::SocketAddr;
use std::time::Duration;

/// The node's MQTT address (from its log).
pub(super) fn mqtt_addr(node: &Node) -> SocketAddr {
    node.log()
        .lines()
        .find_map(|l| super::cluster::addr_after(l, ", MQTT on "))
        .expect("the MQTT address")
}

pub(super) fn v4(node: &Node, client_id: &str) -> rumqttc::MqttOptions {
    let addr = mqtt_addr(node);
    let mut o = rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials("guest", "guest");
    o.set_keep_alive(Duration::from_secs(30));
    o
}

fn v5(node: &Node, client_id: &str) -> v5::MqttOptions {
    let addr = mqtt_addr(node);
    let mut o = v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials("guest", "guest");
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Waits until every node counts `n` members, each running (answering on the cluster link).
pub(super) async fn until_formed(nodes: &[Node]) {
    for node in nodes {
        within("the cluster to form", async {
            loop {
                let out = ctl_at(&node.api(), &["cluster_status", "--formatter", "json"]).await;
                let status: serde_json::Value =
                    serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
                let count = |k: &str| status[k].as_array().map_or(0, Vec::len);
                if count("disk_nodes") == nodes.len() && count("running_nodes") == nodes.len() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_retained_messages_and_wills_reach_subscribers_on_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&write_configs(dir.path(), 2)).await;
    until_formed(&nodes).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // A subscriber on A; MQTT publishes through B at QoS 0 and 1, in order.
    let mut sub = Mqtt4::connect(v4(a, "sub-a")).await;
    sub.subscribe("t/#", QoS::AtLeastOnce).await;
    let mut publisher = Mqtt4::connect(v4(b, "pub-b")).await;
    publisher
        .publish("t/zero", QoS::AtMostOnce, false, b"qos0")
        .await;
    publisher
        .publish("t/one", QoS::AtLeastOnce, false, b"qos1")
        .await;
    let first = sub.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), &first.payload[..], first.qos),
        ("t/zero", &b"qos0"[..], QoS::AtMostOnce)
    );
    let second = sub.next_publish().await;
    assert_eq!(
        (second.topic.as_str(), &second.payload[..], second.qos),
        ("t/one", &b"qos1"[..], QoS::AtLeastOnce)
    );

    // An AMQP publish to amq.topic through B reaches the MQTT subscriber on A.
    let conn = until_login(b, "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_publish(
        "amq.topic".into(),
        "t.amqp".into(),
        BasicPublishOptions::default(),
        b"from amqp",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let amqp = sub.next_publish().await;
    assert_eq!(
        (amqp.topic.as_str(), &amqp.payload[..]),
        ("t/amqp", &b"from amqp"[..])
    );

    // An unsubscribed filter is unbound on the other node too: a publish through B after the
    // UNSUBACK no longer reaches A (the next one, on a filter still subscribed, does).
    sub.subscribe("u/#", QoS::AtLeastOnce).await;
    sub.unsubscribe("t/#").await;
    publisher
        .publish("t/after", QoS::AtLeastOnce, false, b"unsubscribed")
        .await;
    publisher
        .publish("u/still", QoS::AtLeastOnce, false, b"subscribed")
        .await;
    assert_eq!(sub.next_text().await, "subscribed");

    // A retained message published on A is found by a new subscriber on B (set on B
    // asynchronously: a subscriber that came too early retries).
    let mut retainer = Mqtt4::connect(v4(a, "retainer")).await;
    retainer
        .publish("r/x", QoS::AtLeastOnce, true, b"kept")
        .await;
    within("the retained message on B", async {
        for attempt in 0.. {
            let mut late = Mqtt4::connect(v4(b, &format!("late-{attempt}"))).await;
            late.subscribe("r/#", QoS::AtLeastOnce).await;
            if let Ok(p) =
                tokio::time::timeout(Duration::from_millis(500), late.next_publish()).await
            {
                assert!(p.retain, "{p:?}");
                assert_eq!((p.topic.as_str(), &p.payload[..]), ("r/x", &b"kept"[..]));
                return;
            }
            late.disconnect().await;
        }
    })
    .await;

    // The will of a client on A whose socket is dropped reaches a subscriber on B.
    let mut watcher = Mqtt5::connect(v5(b, "watcher-b")).await;
    watcher
        .subscribe("will/#", v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut opts = v4(a, "doomed-a");
    opts.set_last_will(rumqttc::LastWill::new(
        "will/doomed-a",
        "gone",
        QoS::AtLeastOnce,
        false,
    ));
    let doomed = Mqtt4::connect(opts).await;
    doomed.kill();
    let will = watcher.next_publish().await;
    assert_eq!(
        (&will.topic[..], &will.payload[..]),
        (&b"will/doomed-a"[..], &b"gone"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_follows_its_client_to_another_node_and_the_old_connection_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&write_configs(dir.path(), 2)).await;
    until_formed(&nodes).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    // A persistent 3.1.1 session on A, subscribed at QoS 1, then offline.
    let mut opts = v4(a, "roamer");
    opts.set_clean_session(false);
    let mut roamer = Mqtt4::connect(opts).await;
    roamer.subscribe("p/#", QoS::AtLeastOnce).await;
    roamer.disconnect().await;

    // Published through B meanwhile: queued on A for the session (acknowledged once A has
    // them).
    let mut publisher = Mqtt4::connect(v4(b, "pub-b")).await;
    for i in 1..=3 {
        publisher
            .publish(
                &format!("p/{i}"),
                QoS::AtLeastOnce,
                false,
                format!("m-{i}").as_bytes(),
            )
            .await;
    }

    // The client comes back through B: its session is there, with its subscription and the
    // three messages, in order.
    let mut opts = v4(b, "roamer");
    opts.set_clean_session(false);
    let mut roamer = Mqtt4::connect(opts).await;
    assert!(roamer.session_present, "the session moved from A to B");
    for i in 1..=3 {
        let p = roamer.next_publish().await;
        assert_eq!(
            (p.qos, p.payload.to_vec()),
            (QoS::AtLeastOnce, format!("m-{i}").into_bytes())
        );
    }
    // Its subscription now lives on B: a publish through A reaches it there.
    let mut on_a = Mqtt4::connect(v4(a, "pub-a")).await;
    on_a.publish("p/4", QoS::AtLeastOnce, false, b"m-4").await;
    assert_eq!(roamer.next_text().await, "m-4");

    // The same client id connecting through A takes the session over: the connection on B
    // is closed (3.1.1 has no server DISCONNECT) and the session comes back to A.
    let mut opts = v4(a, "roamer");
    opts.set_clean_session(false);
    let mut back = Mqtt4::connect(opts).await;
    assert!(back.session_present);
    let _closed = roamer.closed().await;
    publisher
        .publish("p/5", QoS::AtLeastOnce, false, b"m-5")
        .await;
    assert_eq!(back.next_text().await, "m-5");

    // 5.0: a connection on A taken over from B gets DISCONNECT 0x8E Session taken over.
    let mut first = Mqtt5::connect(v5(a, "twin")).await;
    first
        .subscribe("twin/#", v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    let mut second = Mqtt5::connect(v5(b, "twin")).await;
    assert_eq!(
        first.next_disconnect().await,
        v5::mqttbytes::v5::DisconnectReasonCode::SessionTakenOver
    );
    // The new connection works on B (clean start: the old subscription is gone).
    assert!(!second.session_present());
    second
        .subscribe("twin/#", v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    on_a.publish("twin/x", QoS::AtLeastOnce, false, b"hello twin")
        .await;
    assert_eq!(second.next_text().await, "hello twin");
}

// Not passing yet: in its one run the subscription did not reach B within the 10 s of
// `within` after A was killed (an election, then B's apply of the committed MqttSubscribe,
// then the fallback of the takeover in `cluster/mqtt.rs`); to investigate with the nodes'
// logs. The path it exercises is documented in docs/clustering.md, "MQTT in a cluster".
#[ignore = "not passing yet: the session's subscription did not reach B in time (see above)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_sessions_subscriptions_survive_the_loss_of_its_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_all(&write_configs(dir.path(), 3)).await;
    until_formed(&nodes).await;

    // A persistent session on A: its SUBACK comes once the metadata group committed the
    // subscription (MqttSubscribe), so every node has it in its log.
    let mut opts = v4(&nodes[0], "survivor");
    opts.set_clean_session(false);
    let mut survivor = Mqtt4::connect(opts).await;
    survivor.subscribe("s/#", QoS::AtLeastOnce).await;
    survivor.kill();
    nodes.remove(0).kill();

    // The client reconnects through B: B and C elect a new leader of the metadata group,
    // which commits what A's log had, and B knows the subscription. Until B has applied it
    // (one election away), a publish does not reach the session: the client tries again.
    let (b, c) = (&nodes[0], &nodes[1]);
    let mut publisher = Mqtt4::connect(v4(c, "pub-c")).await;
    within("the session's subscription on B", async {
        for attempt in 0.. {
            let mut opts = v4(b, "survivor");
            opts.set_clean_session(false);
            let mut back = Mqtt4::connect(opts).await;
            let text = format!("after the loss {attempt}");
            publisher
                .publish("s/1", QoS::AtLeastOnce, false, text.as_bytes())
                .await;
            match tokio::time::timeout(Duration::from_millis(500), back.next_publish()).await {
                Ok(p) => {
                    assert!(back.session_present);
                    assert_eq!(p.topic, "s/1");
                    return;
                }
                Err(_) => back.disconnect().await,
            }
        }
    })
    .await;
}
