//! `pigeon ctl join_cluster` on real `pigeon` processes (docs/clustering.md, "Membership"), as
//! RabbitMQ's `rabbitmqctl join_cluster`: a node started alone (a cluster of one, with its own
//! default user and queues) resets itself and joins another node's cluster; afterwards both
//! list both as members and the joined node serves the other cluster's queues, its own gone.
//! Refused, deleting nothing: a node holding messages in durable queues (unless `--force`), a
//! node whose cluster has other members, its own address.

use super::cluster::{free_port, lists_queue, until_login, Node};
use super::ctl_support::{ctl_at, Run};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pigeon_tests::within;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A node configuration with a `[cluster]` table and no peers: it starts as a cluster of one.
fn lone_config(dir: &Path, name: &str, port: u16) -> PathBuf {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let text = format!(
        "[server]\ndata_dir = '{}'\nmqtt_sys_interval = 0\n\n[cluster]\nnode_name = 'rabbit@{name}'\nlisten = '127.0.0.1:{port}'\npeers = []\nwrite_timeout_ms = 3000\n",
        data.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Declares durable `queue` on `node` and publishes `n` persistent messages to it, confirmed.
async fn declare_with(node: &Node, queue: &str, n: usize) {
    let conn = until_login(node, "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(&format!("{queue} declared"), async {
        while ch
            .queue_declare(queue.into(), durable, FieldTable::default())
            .await
            .is_err()
        {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    super::cluster::publish_confirmed(&ch, queue, n).await;
    let _ = conn.close(200, "bye".into()).await;
}

/// `cluster_status`'s members (`disk_nodes`) on `node`.
async fn members(node: &Node) -> BTreeSet<String> {
    let status = ctl_at(&node.api(), &["cluster_status", "--formatter", "json"])
        .await
        .json();
    status["disk_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn join(node: &Node, seed: u16, force: bool) -> Run {
    let seed = format!("127.0.0.1:{seed}");
    let mut args = vec!["join_cluster", seed.as_str()];
    if force {
        args.push("--force");
    }
    ctl_at(&node.api(), &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_cluster_resets_a_lone_node_and_joins_the_other_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let a = Node::start(&lone_config(dir.path(), "a", port_a)).await;
    let b = Node::start(&lone_config(dir.path(), "b", port_b)).await;
    // Each is a cluster of one with its own default user and queues.
    declare_with(&a, "orders", 2).await;
    declare_with(&b, "b-only", 1).await;
    assert_eq!(members(&a).await, set(&["rabbit@a"]));
    assert_eq!(members(&b).await, set(&["rabbit@b"]));

    // b holds a message in a durable queue: refused, nothing deleted.
    let refused = join(&b, port_a, false).await.fails(65);
    assert!(refused.contains("'b-only' in vhost '/'"), "{refused}");
    assert!(refused.contains("--force"), "{refused}");
    // Its own address: refused.
    let refused = join(&b, port_b, false).await.fails(65);
    assert!(refused.contains("own cluster address"), "{refused}");
    assert!(lists_queue(&b, "b-only").await);
    assert_eq!(members(&b).await, set(&["rabbit@b"]));

    // With --force: b resets (its queue and message are gone), restarts on the same
    // addresses and joins a's cluster; ctl returns once b is a voter.
    let out = join(&b, port_a, true).await.ok();
    assert!(out.contains("Clustering node"), "{out}");
    let both = set(&["rabbit@a", "rabbit@b"]);
    assert_eq!(members(&b).await, both, "{}", b.log());
    within("a to list both members", async {
        while members(&a).await != both {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    // b serves a's metadata: a's queue (homed on a, with a's counts), not its old one.
    let conn = until_login(&b, "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare("orders".into(), passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(q.message_count(), 2);
    assert!(lists_queue(&b, "orders").await);
    assert!(!lists_queue(&b, "b-only").await);
    let shown = pigeon_tests::http_support::Api::at(&b.api(), "guest", "guest")
        .get("/api/queues/%2f/orders")
        .await;
    assert_eq!(shown.body["node"], "rabbit@a", "{:?}", shown.body);

    // Joining again where it is a member already changes nothing.
    join(&b, port_a, false).await.ok();
    // A member of a cluster of two cannot be reset to join another: refused.
    let c = Node::start(&lone_config(dir.path(), "c", port_c)).await;
    until_login(&c, "guest", "guest").await;
    let refused = join(&a, port_c, false).await.fails(65);
    assert!(refused.contains("cluster of 2 nodes"), "{refused}");
    assert_eq!(members(&a).await, both);
    assert_eq!(members(&c).await, set(&["rabbit@c"]));
}
