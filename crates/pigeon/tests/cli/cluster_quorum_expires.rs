//! `x-expires` on a quorum queue of three `pigeon` processes (docs/clustering.md, "Quorum
//! queues in the broker"): the group's leader decides from the replicated last activity that
//! the queue is unused and deletes it through the metadata group, so it goes from every node,
//! decided once; a consumer on another node than the leader keeps the queue (the leader sees
//! it in the replicated state), and its leaving starts the delay.
//!
//! No timing assertion: "kept" is shown against a control queue with the same delay declared
//! before it and left alone, whose deletion everywhere is the event waited for.

use super::cluster::{lists_queue, start_all, until_listed, write_configs, Node};
use super::cluster_quorum::{declare, quorum_args};
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use pigeon_tests::within;
use std::time::Duration;

/// What the leader logs when it deletes an expired queue (server `cluster/quorum/expiry.rs`).
const EXPIRED: &str = "quorum queue expired (x-expires): deleting it";

fn expiring() -> FieldTable {
    quorum_args(&[("x-expires", AMQPValue::LongInt(3_000))])
}

/// Waits until no node lists `queue`.
async fn gone_everywhere(nodes: &[Node], queue: &str) {
    within(&format!("{queue} gone from every node"), async {
        loop {
            let mut listed = false;
            for n in nodes {
                listed |= lists_queue(n, queue).await;
            }
            if !listed {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// How many deletions of `queue` the nodes decided (each logs its own).
fn decisions(nodes: &[Node], queue: &str) -> usize {
    nodes
        .iter()
        .map(|n| {
            n.log()
                .lines()
                .filter(|l| l.contains(EXPIRED) && l.contains(queue))
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_quorum_queue_is_deleted_once_from_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;

    let control = "qexp-control";
    let kept = "qexp-kept";
    // `kept` first, with a consumer on node 2 as soon as node 2 knows it (the group's leader
    // is on node 0, the declaring node): in use from then on.
    let _a = declare(&nodes[0], kept, expiring()).await;
    until_listed(&nodes[2], kept).await;
    let (c2, ch2) = super::cluster::channel(&nodes[2]).await;
    let _consumer = within(
        "basic.consume-ok",
        ch2.basic_consume(
            kept.into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    // The control, left alone.
    let _a2 = declare(&nodes[0], control, expiring()).await;

    // The control goes from every node, decided once.
    gone_everywhere(&nodes, control).await;
    assert_eq!(decisions(&nodes, control), 1);
    // The consumed queue stays, on every node.
    for n in &nodes {
        assert!(lists_queue(n, kept).await, "{kept} deleted on {}", n.api());
    }
    // Its consumer leaves: the delay starts, and it goes too, once.
    within("channel.close-ok", ch2.close(200, "done".into()))
        .await
        .unwrap();
    gone_everywhere(&nodes, kept).await;
    assert_eq!(decisions(&nodes, kept), 1);
    let _ = c2.close(200, "bye".into()).await;
}
