//! MQTT shared subscriptions and retained messages across the cluster (issue 13 item 5,
//! docs/clustering.md "MQTT in a cluster"): three `pigeon` processes on loopback, driven with
//! rumqttc 3.1.1. Members of one share group on two nodes form one group: each publish made
//! through the third node reaches exactly one member, and what a member leaves
//! unacknowledged goes to the other. A retained message cleared through one node is cleared on
//! every node, a node that was down during the clearing included.
//!
//! Waits are bounded by the harness's `within`. Whether a node has a retained message is
//! asked without timers: a new subscriber of the topic is sent a live (not retained) publish
//! after its SUBACK, so the first PUBLISH it gets is the retained message if the node has one,
//! the live one otherwise.

use super::cluster::{start_all, until_login, write_configs, Node};
use super::cluster_mqtt::{until_formed, v4};
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::within;
use rumqttc::QoS;
use std::collections::BTreeSet;
use std::time::Duration;

/// FNV-1a as the broker's rendezvous hash computes it (`cluster/mqtt_shared.rs`).
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// A share group name whose queue the broker places on `owner` among `nodes` (all up), so
/// that the test covers a group owned by a node without members.
fn group_owned_by(owner: &str, nodes: &[&str], filter: &str) -> String {
    (0..)
        .map(|i| format!("g{i}"))
        .find(|g| {
            let queue = format!("mqtt-shared-{g}-{filter}");
            let best = nodes
                .iter()
                .max_by_key(|n| (fnv(&[n, "/", &queue]), n.to_string()))
                .unwrap();
            *best == owner
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_with_members_on_two_nodes_gets_each_publish_once() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&write_configs(dir.path(), 3)).await;
    until_formed(&nodes).await;
    let _logs = LogsOnFailure(&nodes);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let names = ["rabbit@n0", "rabbit@n1", "rabbit@n2"];
    let group = group_owned_by("rabbit@n2", &names, "s/#");
    let filter = format!("$share/{group}/s/#");

    // One member on A, one on B that never acknowledges (its messages stay in flight).
    let mut m1 = Mqtt4::connect(v4(a, "member-a")).await;
    m1.subscribe(&filter, QoS::AtLeastOnce).await;
    let mut opts = v4(b, "member-b");
    opts.set_manual_acks(true);
    let mut m2 = Mqtt4::connect(opts).await;
    m2.subscribe(&filter, QoS::AtLeastOnce).await;

    // Twenty QoS 1 publishes through C: each reaches one member, and every one arrives.
    let mut publisher = Mqtt4::connect(v4(c, "publisher-c")).await;
    for i in 0..20 {
        let text = format!("m-{i}");
        publisher
            .publish(&format!("s/{i}"), QoS::AtLeastOnce, false, text.as_bytes())
            .await;
    }
    let (mut got1, mut got2) = (Vec::new(), Vec::new());
    within("the twenty messages at the members", async {
        while got1.len() + got2.len() < 20 {
            tokio::select! {
                p = m1.next_publish() => got1.push(String::from_utf8_lossy(&p.payload).into_owned()),
                p = m2.next_publish() => got2.push(String::from_utf8_lossy(&p.payload).into_owned()),
            }
        }
    })
    .await;
    let all: BTreeSet<&String> = got1.iter().chain(&got2).collect();
    assert_eq!(
        all.len(),
        20,
        "a message reached both members: {got1:?} {got2:?}"
    );
    assert!(
        !got1.is_empty() && !got2.is_empty(),
        "the group is one across nodes, round-robin: {got1:?} {got2:?}"
    );

    // The member on B goes (its socket dropped): what it held unacknowledged goes to the
    // member on A, once each.
    m2.kill();
    let mut handed: Vec<String> = Vec::new();
    within("B's unacknowledged messages at A", async {
        while handed.len() < got2.len() {
            handed.push(m1.next_text().await);
        }
    })
    .await;
    let held: BTreeSet<&String> = got2.iter().collect();
    let handed_set: BTreeSet<&String> = handed.iter().collect();
    assert_eq!(handed_set, held, "what B held went to A");
    assert_eq!(handed.len(), held.len(), "once each");

    // The group goes on with its one member: every new publish through C reaches it, in
    // order (and nothing of before arrives twice).
    for i in 20..30 {
        let text = format!("m-{i}");
        publisher
            .publish(&format!("s/{i}"), QoS::AtLeastOnce, false, text.as_bytes())
            .await;
    }
    for i in 20..30 {
        assert_eq!(m1.next_text().await, format!("m-{i}"));
    }

    // The last member leaves: the group is gone everywhere, and a new member on B (a new
    // group) gets what is published after its SUBACK.
    m1.unsubscribe(&filter).await;
    let mut m3 = Mqtt4::connect(v4(b, "member-b2")).await;
    m3.subscribe(&filter, QoS::AtLeastOnce).await;
    publisher
        .publish("s/new", QoS::AtLeastOnce, false, b"new group")
        .await;
    assert_eq!(m3.next_text().await, "new group");
}

/// Publishes `probe-<n>` through `publisher` until one of the members gets a PUBLISH (the
/// group's queue is there and bound on the publisher's node), within `limit`; returns what
/// each member got meanwhile (probes published before the group was in place are lost).
async fn until_routed(
    publisher: &mut Mqtt4,
    members: [&mut Mqtt4; 2],
    limit: Duration,
    what: &str,
) -> [Vec<String>; 2] {
    let [m1, m2] = members;
    let mut got = [Vec::new(), Vec::new()];
    let wait = async {
        for n in 0.. {
            let text = format!("probe-{n}");
            publisher
                .publish("s/probe", QoS::AtLeastOnce, false, text.as_bytes())
                .await;
            tokio::select! {
                p = m1.next_publish() => got[0].push(String::from_utf8_lossy(&p.payload).into_owned()),
                p = m2.next_publish() => got[1].push(String::from_utf8_lossy(&p.payload).into_owned()),
                () = tokio::time::sleep(Duration::from_millis(200)) => continue,
            }
            return;
        }
    };
    if tokio::time::timeout(limit, wait).await.is_err() {
        panic!("{what}: no probe reached a member within {limit:?}");
    }
    got
}

/// Publishes `count` QoS 1 messages `<tag>-<i>` through `publisher` and collects them at the
/// two members (probes still on their way are set apart): each must arrive exactly once.
async fn each_once(
    publisher: &mut Mqtt4,
    members: [&mut Mqtt4; 2],
    tag: &str,
    count: usize,
) -> [Vec<String>; 2] {
    let [m1, m2] = members;
    for i in 0..count {
        let text = format!("{tag}-{i}");
        publisher
            .publish(&format!("s/{i}"), QoS::AtLeastOnce, false, text.as_bytes())
            .await;
    }
    let mut got = [Vec::new(), Vec::new()];
    let prefix = format!("{tag}-");
    let seen = |got: &[Vec<String>; 2]| {
        got.iter()
            .flatten()
            .filter(|t| t.starts_with(&prefix))
            .count()
    };
    let wait = async {
        while seen(&got) < count {
            tokio::select! {
                p = m1.next_publish() => got[0].push(String::from_utf8_lossy(&p.payload).into_owned()),
                p = m2.next_publish() => got[1].push(String::from_utf8_lossy(&p.payload).into_owned()),
            }
        }
    };
    if tokio::time::timeout(MOVE_LIMIT, wait).await.is_err() {
        panic!("{tag}: not every message reached a member: {got:?}");
    }
    let mine: Vec<&String> = got
        .iter()
        .flatten()
        .filter(|t| t.starts_with(&prefix))
        .collect();
    let distinct: BTreeSet<&&String> = mine.iter().collect();
    assert_eq!(
        distinct.len(),
        count,
        "{tag}: a message reached both members: {got:?}"
    );
    got
}

/// How long a group may take to move (liveness's down timeout is 4 s; the machine is loaded).
const MOVE_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_group_moves_to_a_live_node_when_its_owner_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes = start_all(&configs).await;
    until_formed(&nodes).await;
    let names = ["rabbit@n0", "rabbit@n1", "rabbit@n2"];
    // Owned by C, members on A and B: C's death leaves both without their group.
    let group = group_owned_by("rabbit@n2", &names, "s/#");
    let filter = format!("$share/{group}/s/#");
    let mut m1 = Mqtt4::connect(v4(&nodes[0], "member-a")).await;
    m1.subscribe(&filter, QoS::AtLeastOnce).await;
    let mut m2 = Mqtt4::connect(v4(&nodes[1], "member-b")).await;
    m2.subscribe(&filter, QoS::AtLeastOnce).await;
    let mut publisher = Mqtt4::connect(v4(&nodes[0], "publisher-a")).await;
    each_once(&mut publisher, [&mut m1, &mut m2], "before", 10).await;

    // C is killed: the group moves to A or B (rendezvous among the live nodes), and what is
    // published through A reaches one member each, and in time both members again.
    nodes.remove(2).kill();
    until_routed(
        &mut publisher,
        [&mut m1, &mut m2],
        MOVE_LIMIT,
        "after the kill",
    )
    .await;
    let mut got = each_once(&mut publisher, [&mut m1, &mut m2], "after", 20).await;
    // The member whose node learns of the death later (liveness's timeout) joins in time.
    let both = async {
        for round in 1.. {
            if got.iter().all(|g| g.iter().any(|t| t.starts_with("after"))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let tag = format!("after{round}");
            let more = each_once(&mut publisher, [&mut m1, &mut m2], &tag, 5).await;
            for (g, m) in got.iter_mut().zip(more) {
                g.extend(m);
            }
        }
    };
    if tokio::time::timeout(MOVE_LIMIT, both).await.is_err() {
        panic!("one member got nothing after the move: {got:?}");
    }

    // C comes back (restarted: its queue is gone): the group stays with its new owner, and C,
    // told of it at the Sync, routes to it: publishes through C reach one member each.
    nodes.push(Node::start(&configs[2]).await);
    let c = until_login(&nodes[2], "guest", "guest").await;
    let _ = c.close(200, "bye".into()).await;
    until_formed(&nodes).await;
    let mut via_c = Mqtt4::connect(v4(&nodes[2], "publisher-c")).await;
    until_routed(
        &mut via_c,
        [&mut m1, &mut m2],
        MOVE_LIMIT,
        "through C once back",
    )
    .await;
    each_once(&mut via_c, [&mut m1, &mut m2], "back", 20).await;
}

/// Whether `node` has a retained message for `topic`: its payload, if so (see the module's
/// comment: the first PUBLISH after a live one is sent behind the SUBACK).
async fn retained_at(node: &Node, topic: &str, client: &str) -> Option<String> {
    let mut probe = Mqtt4::connect(v4(node, client)).await;
    probe.subscribe(topic, QoS::AtLeastOnce).await;
    let mut live = Mqtt4::connect(v4(node, &format!("{client}-live"))).await;
    live.publish(topic, QoS::AtLeastOnce, false, b"live").await;
    let first = probe.next_publish().await;
    let found = first
        .retain
        .then(|| String::from_utf8_lossy(&first.payload).into_owned());
    if found.is_some() {
        // The live one follows.
        assert_eq!(probe.next_text().await, "live");
    }
    probe.disconnect().await;
    live.disconnect().await;
    found
}

/// Waits until `node`'s retained message for `topic` is `want`.
async fn until_retained(node: &Node, topic: &str, want: Option<&str>, what: &str) {
    within(what, async {
        for attempt in 0.. {
            let found = retained_at(node, topic, &format!("probe-{attempt}")).await;
            if found.as_deref() == want {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_cleared_on_one_node_is_cleared_on_every_node_one_down_included() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes = start_all(&configs).await;
    until_formed(&nodes).await;

    // Set on A, cleared on B: a subscriber on C gets nothing.
    let mut on_a = Mqtt4::connect(v4(&nodes[0], "retainer-a")).await;
    on_a.publish("r/x", QoS::AtLeastOnce, true, b"v1").await;
    until_retained(&nodes[2], "r/x", Some("v1"), "v1 on C").await;
    let mut on_b = Mqtt4::connect(v4(&nodes[1], "retainer-b")).await;
    on_b.publish("r/x", QoS::AtLeastOnce, true, b"").await;
    until_retained(&nodes[2], "r/x", None, "r/x cleared on C").await;
    until_retained(&nodes[0], "r/x", None, "r/x cleared on A").await;

    // Set again on A and known to C; C is killed; cleared on B while C is down.
    on_a.publish("r/x", QoS::AtLeastOnce, true, b"v2").await;
    until_retained(&nodes[2], "r/x", Some("v2"), "v2 on C").await;
    nodes.remove(2).kill();
    on_b.publish("r/x", QoS::AtLeastOnce, true, b"").await;
    until_retained(&nodes[0], "r/x", None, "r/x cleared on A, C down").await;

    // C comes back with v2 in its store: the tombstone, newer, clears it there, and C's v2,
    // older, comes back nowhere.
    nodes.push(Node::start(&configs[2]).await);
    let c = until_login(&nodes[2], "guest", "guest").await;
    let _ = c.close(200, "bye".into()).await;
    until_formed(&nodes).await;
    until_retained(&nodes[2], "r/x", None, "r/x cleared on C once back").await;
    // A retained message set on C after its return reaches A behind everything C sent A when
    // it came back (one ordered link): then A still has no r/x.
    let mut on_c = Mqtt4::connect(v4(&nodes[2], "retainer-c")).await;
    on_c.publish("r/y", QoS::AtLeastOnce, true, b"after").await;
    until_retained(&nodes[0], "r/y", Some("after"), "r/y on A").await;
    assert_eq!(retained_at(&nodes[0], "r/x", "final-a").await, None);
    assert_eq!(retained_at(&nodes[1], "r/x", "final-b").await, None);
}

/// Prints the nodes' logs when the test fails (to tell a lost message's cause).
struct LogsOnFailure<'a>(&'a [Node]);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (i, n) in self.0.iter().enumerate() {
                eprintln!("===== node {i} =====\n{}", n.log());
            }
        }
    }
}
