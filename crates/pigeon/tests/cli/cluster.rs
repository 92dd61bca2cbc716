//! Three `pigeon` processes forming a cluster on loopback (docs/clustering.md): metadata
//! declared through one node is found through the others, changes go on with one node down,
//! a restarted node catches up, and a node left alone refuses changes.
//!
//! Each node is the real binary with a `[cluster]` table naming the other two; the cluster
//! ports come from below the ephemeral range ([`free_port`]), the others are ephemeral. Waits are bounded by the harness's `within`, polling the management API
//! or AMQP for the event, never sleeping a fixed time.

use super::ctl_support::ctl_at;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use pigeon_tests::{pigeon_bin, within};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running node; killed (SIGKILL) when dropped. Shared with `cluster_ops.rs`.
pub(crate) struct Node {
    child: Child,
    pub(crate) amqp: SocketAddr,
    pub(crate) http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// A port for a node's listener that no other socket should take before the node binds it,
/// and again when it restarts (soakdup: the harness's flake). Ports picked by binding port 0
/// and letting go come from the kernel's ephemeral range, which every outgoing connection's
/// local port also comes from: with hundreds of connections opened by the nodes, proxies and
/// clients (and by the tests running beside), one of them could take the port in between, and
/// the node failed to bind it (EADDRINUSE) at its start or a restart. So the ports come from
/// below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which only explicit
/// binds use, from a counter that starts at an offset of this process's id (several test
/// processes at once), each checked free by a bind.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // 12,000 ports below the ephemeral range (at least from 10,000).
    let base = low.saturating_sub(12_000).max(10_000);
    let span = low.saturating_sub(base).max(1);
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(97) % span + 1,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (base + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port below the ephemeral range")
}

/// Publishes `n` persistent messages (`m0`, `m1`, ...) to `queue` through `ch` in confirm mode,
/// each confirmed. Shared by the cluster tests.
pub(crate) async fn publish_confirmed(ch: &lapin::Channel, queue: &str, n: usize) {
    ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..n {
        let confirm = ch
            .basic_publish(
                "".into(),
                queue.into(),
                lapin::options::BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        assert!(matches!(
            within("a confirm", confirm).await.unwrap(),
            lapin::Confirmation::Ack(_)
        ));
    }
}

/// Writes node `i`'s configuration: its data directory and its `[cluster]` table.
pub(crate) fn write_config(dir: &Path, i: usize, cluster_ports: &[u16]) -> PathBuf {
    let data = dir.join(format!("n{i}"));
    std::fs::create_dir_all(&data).unwrap();
    let peers: Vec<String> = cluster_ports
        .iter()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    let text = format!(
        "[server]\ndata_dir = '{}'\nmqtt_sys_interval = 0\n\n[cluster]\nnode_name = 'rabbit@n{i}'\nlisten = '127.0.0.1:{}'\npeers = [{}]\nwrite_timeout_ms = 3000\n",
        data.display(),
        cluster_ports[i],
        peers.join(", ")
    );
    let path = dir.join(format!("n{i}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The address after `prefix` in a log line.
/// Configuration files for `n` nodes that list each other as peers (`write_config`), in `dir`.
pub(crate) fn write_configs(dir: &Path, n: usize) -> Vec<PathBuf> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    (0..n).map(|i| write_config(dir, i, &ports)).collect()
}

/// Starts a node for each configuration, in order, and waits until each takes guest's
/// logins: the cluster formed and committed its set-up (the default user is created once for
/// the cluster, through it: docs/clustering.md).
pub(crate) async fn start_all(configs: &[PathBuf]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for c in configs {
        nodes.push(Node::start(c).await);
    }
    for n in &nodes {
        let c = until_login(n, "guest", "guest").await;
        let _ = c.close(200, "bye".into()).await;
    }
    nodes
}

pub(super) fn addr_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    let rest = line.split(prefix).nth(1)?;
    rest.split([',', ' ']).next()?.parse().ok()
}

impl Node {
    pub(crate) async fn start(config: &Path) -> Node {
        let config = config.to_path_buf();
        tokio::task::spawn_blocking(move || Node::start_blocking(&config))
            .await
            .unwrap()
    }

    fn start_blocking(config: &Path) -> Node {
        let (mut child, log, rx) = crate::spawn::spawn_pigeon(pigeon_bin(), config);
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "pigeon did not say where it listens ({e}); its log:\n{}",
                        log.lock().unwrap().join("\n")
                    )
                }
            };
            if let (Some(amqp), Some(http)) = (
                addr_after(&line, "listening for AMQP 0-9-1 on "),
                addr_after(&line, "management HTTP API on "),
            ) {
                return Node {
                    child,
                    amqp,
                    http,
                    log,
                };
            }
        }
    }

    pub(crate) fn url(&self, user: &str, pass: &str) -> String {
        format!("amqp://{user}:{pass}@{}/%2f", self.amqp)
    }

    pub(crate) fn api(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The process id (for SIGSTOP/SIGCONT: `cluster_heal.rs`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the queue is listed by the node's `/api/queues` (through `pigeon ctl list_queues`).
pub(crate) async fn lists_queue(node: &Node, queue: &str) -> bool {
    let out = ctl_at(&node.api(), &["list_queues", "name", "--formatter", "json"]).await;
    let all: serde_json::Value = serde_json::from_str(&out.ok()).unwrap();
    all.as_array()
        .is_some_and(|l| l.iter().any(|q| q["name"] == queue))
}

/// Waits until `node` lists `queue`.
pub(crate) async fn until_listed(node: &Node, queue: &str) {
    within(&format!("{queue} listed by {}", node.api()), async {
        while !lists_queue(node, queue).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Waits until `user` can open an AMQP connection to `node`.
pub(crate) async fn until_login(node: &Node, user: &str, pass: &str) -> Connection {
    within(&format!("{user} logging in on {}", node.api()), async {
        loop {
            if let Ok(c) =
                Connection::connect(&node.url(user, pass), ConnectionProperties::default()).await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A channel on `node`, once it takes logins.
pub(crate) async fn channel(node: &Node) -> (Connection, lapin::Channel) {
    let c = until_login(node, "guest", "guest").await;
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

/// Declares durable `queue` with `args` through `node`, retrying while the cluster has no
/// leader yet (a declare then times out); the connection it was declared on.
pub(crate) async fn declare_when_ready(node: &Node, queue: &str, args: FieldTable) -> Connection {
    within(&format!("the cluster to declare {queue}"), async {
        loop {
            let (c, ch) = channel(node).await;
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            match ch.queue_declare(queue.into(), durable, args.clone()).await {
                Ok(_) => return c,
                Err(e) if e.to_string().contains("timed out") => continue,
                Err(e) => panic!("queue.declare failed: {e}\n{}", node.log()),
            }
        }
    })
    .await
}

/// Waits until `node` counts `n` members in its cluster.
pub(crate) async fn until_members(node: &Node, n: usize) {
    within(&format!("{n} members in the cluster"), async {
        loop {
            let out = ctl_at(&node.api(), &["cluster_status", "--formatter", "json"]).await;
            let status: serde_json::Value =
                serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
            if status["disk_nodes"]
                .as_array()
                .is_some_and(|l| l.len() == n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn declare_durable(conn: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let ch = conn.create_channel().await?;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
        .await
        .map(|_| ())
}

/// Node `i`, which the test has not killed.
fn node(nodes: &[Option<Node>], i: usize) -> &Node {
    nodes[i].as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_their_metadata_and_a_minority_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();

    // Declared through node 1 (an exchange, a durable queue, a binding)...
    // The first change waits for the cluster to form and elect a leader; a connection closed
    // because none was elected within the write timeout is opened again.
    let (c1, ch1) = within("the cluster to accept a declare", async {
        loop {
            let c = until_login(node(&nodes, 0), "guest", "guest").await;
            let ch = c.create_channel().await.unwrap();
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            let r = ch
                .exchange_declare(
                    "orders".into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await;
            match r {
                Ok(()) => return (c, ch),
                Err(e) if e.to_string().contains("timed out") => continue,
                Err(e) => panic!("exchange.declare failed: {e}\n{}", node(&nodes, 0).log()),
            }
        }
    })
    .await;
    declare_durable(&c1, "orders.eu").await.unwrap();
    ch1.queue_bind(
        "orders.eu".into(),
        "orders".into(),
        "eu.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // ... is found through nodes 2 and 3 by AMQP (passive declares), and in every node's
    // /api/queues.
    for i in 1..3 {
        let conn = until_login(node(&nodes, i), "guest", "guest").await;
        let ch = conn.create_channel().await.unwrap();
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        ch.queue_declare("orders.eu".into(), passive, FieldTable::default())
            .await
            .unwrap_or_else(|e| panic!("node {i} does not know the queue: {e}"));
        ch.exchange_declare(
            "orders".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    }
    for i in 0..3 {
        until_listed(node(&nodes, i), "orders.eu").await;
    }
    let bindings = ctl_at(
        &node(&nodes, 2).api(),
        &["list_bindings", "--formatter", "json"],
    )
    .await
    .ok();
    assert!(bindings.contains("eu.#"), "{bindings}");

    // cluster_status and /api/nodes (through `list_nodes`-like JSON) show the three members.
    let status = ctl_at(
        &node(&nodes, 0).api(),
        &["cluster_status", "--formatter", "json"],
    )
    .await
    .json();
    assert_eq!(
        status["disk_nodes"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    assert_eq!(
        status["running_nodes"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    assert_eq!(
        status["raft"]["members"].as_array().unwrap().len(),
        3,
        "{status}"
    );

    // A user created through node 2 logs in on node 3.
    let api2 = node(&nodes, 1).api();
    ctl_at(&api2, &["add_user", "alice", "s3cret"]).await.ok();
    ctl_at(&api2, &["set_permissions", "alice", ".*", ".*", ".*"])
        .await
        .ok();
    let alice = until_login(node(&nodes, 2), "alice", "s3cret").await;
    alice.close(200, "bye".into()).await.unwrap();

    // Node 3 killed: the other two still accept changes.
    nodes[2].take().unwrap().kill();
    declare_durable(&c1, "while.down")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "a majority refused a declare: {e}\n{}",
                node(&nodes, 0).log()
            )
        });
    ctl_at(&api2, &["add_user", "bob", "pw"]).await.ok();
    until_listed(node(&nodes, 1), "while.down").await;
    // `running_nodes` is node liveness's view: down once it missed its pings (4 s).
    let status = within("node 3 shown down", async {
        loop {
            let status = ctl_at(
                &node(&nodes, 1).api(),
                &["cluster_status", "--formatter", "json"],
            )
            .await
            .json();
            if status["running_nodes"].as_array().unwrap().len() == 2 {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(
        status["disk_nodes"].as_array().unwrap().len(),
        3,
        "{status}"
    );

    // Restarted, it catches up with what it missed.
    nodes[2] = Some(Node::start(&configs[2]).await);
    until_listed(node(&nodes, 2), "while.down").await;
    ctl_at(
        &node(&nodes, 2).api(),
        &["set_permissions", "bob", ".*", ".*", ".*"],
    )
    .await
    .ok();
    let bob = until_login(node(&nodes, 0), "bob", "pw").await;
    bob.close(200, "bye".into()).await.unwrap();

    // Nodes 2 and 3 killed: node 1 alone is a minority and refuses changes, AMQP with 541
    // INTERNAL_ERROR (the connection closes), the API with 503; what it has stays readable.
    nodes[1].take().unwrap().kill();
    nodes[2].take().unwrap().kill();
    let err = within(
        "a minority to refuse a declare",
        declare_durable(&c1, "in.minority"),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("541") || text.contains("INTERNAL_ERROR"),
        "expected 541 INTERNAL_ERROR, got {text}"
    );
    assert!(text.contains("timed out"), "{text}");
    let refused = ctl_at(&node(&nodes, 0).api(), &["add_user", "carol", "pw"]).await;
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stderr.contains("503") || refused.stderr.contains("majority"),
        "{refused:?}"
    );
    assert!(lists_queue(node(&nodes, 0), "orders.eu").await);
    assert!(!lists_queue(node(&nodes, 0), "in.minority").await);
}
