//! Quorum queue consumers carry on through node failures, as RabbitMQ's do (docs/clustering.md
//! "Quorum queues in the broker"): a consumer on a node without a member whose serving node is
//! killed attaches at another member; a consumer whose node's member is removed
//! (`delete_member`) is served by a member node; a consumer whose node was paused long enough
//! to be found down (SIGSTOP) gets deliveries again once the node runs (SIGCONT). Each time the
//! consumer's channel is never cancelled, what it held unacknowledged comes again, flagged
//! `redelivered`, and every message ends settled in the group.

use super::cluster::{declare_when_ready, until_login, until_members, write_configs, Node};
use super::cluster_quorum::{consumer, listed_row, next, publish_confirmed, quorum_args};
use super::ctl_support::ctl_at;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection, Consumer};
use pigeon_tests::within;
use std::collections::BTreeSet;
use std::time::Duration;

fn body(d: &Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

async fn confirming(conn: &Connection) -> Channel {
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch
}

/// Waits until `node`'s row of `queue` satisfies `ok`.
async fn until_row(node: &Node, queue: &str, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    within(what, async {
        loop {
            if listed_row(node, queue).await.is_some_and(|r| ok(&r)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Receives until every body of `want` came; acks each delivery (an ack of a delivery made
/// before the failure is ignored: the group gave that message back). Returns the bodies that
/// came flagged `redelivered`.
async fn receive_all(
    consumer: &mut Consumer,
    want: &BTreeSet<String>,
    what: &str,
) -> BTreeSet<String> {
    let mut got = BTreeSet::new();
    let mut redelivered = BTreeSet::new();
    while !want.is_subset(&got) {
        let d = next(consumer, what).await;
        let b = body(&d);
        if d.redelivered {
            redelivered.insert(b.clone());
        }
        got.insert(b);
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    redelivered
}

/// Starts `n` nodes, declares `queue` through node 0 once all are members (node 0 is then
/// its group's first member), and returns the nodes and node 0's connection.
async fn cluster_with(dir: &std::path::Path, n: usize, queue: &str) -> (Vec<Node>, Connection) {
    let configs = write_configs(dir, n);
    let nodes = super::cluster::start_all(&configs).await;
    until_members(&nodes[0], n).await;
    let a = declare_when_ready(&nodes[0], queue, quorum_args(&[])).await;
    until_row(&nodes[0], queue, "three members", |r| {
        names(&r["members"]).len() == 3
    })
    .await;
    (nodes, a)
}

/// A consumer on the fourth node of a cluster whose queue has three members is served by a
/// member node (the group's first, node 0). Node 0 is killed: the consumer attaches at another
/// member and keeps receiving on the same channel; the message node 0 had delivered and the
/// consumer had not acked comes again, redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_a_member_carries_on_when_its_serving_node_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, _a) = cluster_with(dir.path(), 4, "qr").await;
    let row = listed_row(&nodes[0], "qr").await.unwrap();
    let members = names(&row["members"]);
    let outsider = (0..4)
        .find(|i| !members.contains(&format!("rabbit@n{i}")))
        .expect("a node without a member");
    let publisher = (1..4)
        .find(|i| members.contains(&format!("rabbit@n{i}")))
        .expect("a member other than n0");

    let o = until_login(&nodes[outsider], "guest", "guest").await;
    let (_ch, mut far) = consumer(&o, "qr", "far", 10).await;
    let p = until_login(&nodes[publisher], "guest", "guest").await;
    let pub_ch = confirming(&p).await;
    for i in 0..3 {
        publish_confirmed(&pub_ch, "qr", &format!("b{i}")).await;
    }
    let before: BTreeSet<String> = (0..3).map(|i| format!("b{i}")).collect();
    receive_all(&mut far, &before, "deliveries through the serving node").await;
    // Held (not acked) when the serving node dies.
    publish_confirmed(&pub_ch, "qr", "held").await;
    let held = next(&mut far, "the held message").await;
    assert_eq!(body(&held), "held");

    // SIGKILL of the serving node; publishes go on and reach the same consumer.
    nodes.remove(0).kill();
    for i in 0..5 {
        publish_confirmed(&pub_ch, "qr", &format!("a{i}")).await;
    }
    let mut after: BTreeSet<String> = (0..5).map(|i| format!("a{i}")).collect();
    after.insert("held".into());
    let redelivered =
        receive_all(&mut far, &after, "deliveries after the serving node's loss").await;
    assert!(redelivered.contains("held"), "{redelivered:?}");
    // The first delivery's ack is for the lost attachment: ignored.
    held.acker.ack(BasicAckOptions::default()).await.unwrap();
    // Node 0 removed from the list: the publisher's node is one place earlier.
    until_row(
        &nodes[publisher - 1],
        "qr",
        "every message settled in the group",
        |r| r["messages"] == 0,
    )
    .await;
}

/// `pigeon ctl delete_member` of the member on a consumer's node: the consumer is served by a
/// member node from then on (same channel), and its ack of a message delivered before the
/// change is settled in the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_node_leaves_the_group_is_served_by_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, a) = cluster_with(dir.path(), 3, "qm").await;
    let c = until_login(&nodes[2], "guest", "guest").await;
    let (_ch, mut cons) = consumer(&c, "qm", "stays", 10).await;
    let pub_ch = confirming(&a).await;
    publish_confirmed(&pub_ch, "qm", "p0").await;
    let p0 = next(&mut cons, "p0 on n2").await;
    assert_eq!(body(&p0), "p0");

    ctl_at(&nodes[0].api(), &["delete_member", "qm", "rabbit@n2"])
        .await
        .ok();
    let two: BTreeSet<String> = ["rabbit@n0", "rabbit@n1"].map(String::from).into();
    for n in &nodes {
        until_row(n, "qm", "n2 out of the group", |r| {
            names(&r["members"]) == two
        })
        .await;
    }
    for i in 1..4 {
        publish_confirmed(&pub_ch, "qm", &format!("p{i}")).await;
    }
    let want: BTreeSet<String> = (1..4).map(|i| format!("p{i}")).collect();
    receive_all(&mut cons, &want, "deliveries after delete_member").await;
    p0.acker.ack(BasicAckOptions::default()).await.unwrap();
    until_row(&nodes[0], "qm", "every message settled in the group", |r| {
        r["messages"] == 0
    })
    .await;
}

/// A consumer's node paused (SIGSTOP) until the others find it down and the group drops its
/// consumer (`NodeDown`), then resumed (SIGCONT): the consumer, still subscribed, gets new
/// publishes again, and the message it held comes again, redelivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_on_a_node_found_down_and_back_gets_deliveries_again() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, a) = cluster_with(dir.path(), 3, "qs").await;
    let c = until_login(&nodes[2], "guest", "guest").await;
    let (_ch, mut cons) = consumer(&c, "qs", "paused", 10).await;
    let pub_ch = confirming(&a).await;
    publish_confirmed(&pub_ch, "qs", "s0").await;
    let s0 = next(&mut cons, "s0 on n2").await;
    assert_eq!(body(&s0), "s0");
    publish_confirmed(&pub_ch, "qs", "held").await;
    let held = next(&mut cons, "the held message").await;
    assert_eq!(body(&held), "held");
    s0.acker.ack(BasicAckOptions::default()).await.unwrap();
    until_row(&nodes[0], "qs", "s0 settled", |r| r["messages"] == 1).await;

    // (A node dropped at the end of a failed wait is SIGKILLed, stopped or not.)
    signal(&nodes[2], "-STOP");
    // Found down: n2's consumer is dropped from the group (n0's replica counts none).
    until_row(&nodes[0], "qs", "n2 found down", |r| {
        !names(&r["online"]).contains("rabbit@n2")
    })
    .await;
    within("n2's consumer dropped from the group", async {
        loop {
            let out = ctl_at(
                &nodes[0].api(),
                &["list_queues", "name", "consumers", "--formatter", "json"],
            )
            .await;
            let all: serde_json::Value =
                serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
            let row = all
                .as_array()
                .and_then(|l| l.iter().find(|q| q["name"] == "qs").cloned());
            if row.is_some_and(|r| r["consumers"] == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    signal(&nodes[2], "-CONT");

    publish_confirmed(&pub_ch, "qs", "s1").await;
    let want: BTreeSet<String> = ["held", "s1"].map(String::from).into();
    let redelivered = receive_all(&mut cons, &want, "deliveries after SIGCONT").await;
    assert!(redelivered.contains("held"), "{redelivered:?}");
    held.acker.ack(BasicAckOptions::default()).await.unwrap();
    until_row(&nodes[0], "qs", "every message settled in the group", |r| {
        r["messages"] == 0
    })
    .await;
}

fn signal(node: &Node, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}
