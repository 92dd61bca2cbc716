//! Operations across a cluster of three `pigeon` processes (issue 13, item 6;
//! docs/clustering.md "Operations"): every node's statistics and connections seen from any
//! node, `/metrics` naming the node and its cluster, and maintenance mode (drain: clients
//! disconnected with 320 and sent elsewhere, the listeners refusing, the metadata group's
//! leadership moved; revive: back in service). The harness is `cluster.rs`'s; every wait is
//! bounded by `within` and polls for the event.

use super::cluster::{start_all, until_login, write_configs, Node};
use super::ctl_support::ctl_at;
use futures_lite::StreamExt;
use lapin::{Connection, ConnectionProperties};
use pigeon_tests::lapin_support::reply_code;
use pigeon_tests::within;
use serde_json::Value;
use std::time::Duration;

const CONNECTION_FORCED: u16 = 320;

async fn get(node: &Node, path: &str) -> Value {
    let reply = reqwest::Client::new()
        .get(format!("{}{path}", node.api()))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .unwrap();
    assert!(
        reply.status().is_success(),
        "GET {path}: {}",
        reply.status()
    );
    reply.json().await.unwrap()
}

/// The entry of `/api/nodes` named `name`.
fn entry<'a>(nodes: &'a Value, name: &str) -> &'a Value {
    nodes
        .as_array()
        .and_then(|all| all.iter().find(|n| n["name"] == name))
        .unwrap_or_else(|| panic!("{name} is not in {nodes}"))
}

/// Polls `GET path` on `node` until `ok` holds; the last answer.
async fn until_api(node: &Node, what: &str, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    within(what, async {
        loop {
            let v = get(node, path).await;
            if ok(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// The node's Prometheus address, from its log.
pub(crate) fn prometheus(node: &Node) -> String {
    let log = node.log();
    let line = log
        .lines()
        .find(|l| l.contains("Prometheus listener started"))
        .unwrap_or_else(|| panic!("no Prometheus listener in the log:\n{log}"));
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap();
    format!("http://{addr}/metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_shows_the_cluster_and_a_drained_node_sends_its_clients_away() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;
    // A is the metadata group's leader (so that draining it moves the leadership), B and C
    // the others.
    let status = until_api(
        &nodes[1],
        "a leader to be elected",
        "/api/pigeon/cluster",
        |s| s["leader"].is_string(),
    )
    .await;
    let leader = status["leader"].as_str().unwrap().to_string();
    let li: usize = leader.trim_start_matches("rabbit@n").parse().unwrap();
    let (a, b, c) = (&nodes[li], &nodes[(li + 1) % 3], &nodes[(li + 2) % 3]);
    let name = |i: usize| format!("rabbit@n{}", (li + i) % 3);
    let (a_name, c_name) = (name(0), name(2));

    // /api/nodes on B: every member running, A with its own statistics (asked over the link).
    let all = until_api(b, "B to show every node's statistics", "/api/nodes", |v| {
        ["rabbit@n0", "rabbit@n1", "rabbit@n2"].iter().all(|n| {
            v.as_array().is_some_and(|all| {
                all.iter()
                    .any(|e| e["name"] == *n && e["running"] == true && e["mem_used"].is_u64())
            })
        })
    })
    .await;
    let n0 = entry(&all, &a_name);
    for field in [
        "mem_used",
        "mem_limit",
        "disk_free",
        "disk_free_limit",
        "fd_used",
        "fd_total",
        "sockets_used",
        "proc_used",
        "uptime",
        "run_queue",
        "processors",
    ] {
        assert!(
            n0[field].is_u64(),
            "{field} missing from A's entry on B: {n0}"
        );
    }
    assert_eq!(n0["being_drained"], false, "{n0}");
    assert_eq!(n0["mem_alarm"], false, "{n0}");
    assert!(n0["partitions"].is_array(), "{n0}");
    let one = get(b, &format!("/api/nodes/{a_name}")).await;
    assert_eq!(one["name"], a_name.as_str());
    assert!(one["mem_used"].is_u64(), "{one}");

    // Connections to A and C are counted and listed by B's overview and connection list.
    let on_a = until_login(a, "guest", "guest").await;
    let on_c = until_login(c, "guest", "guest").await;
    let overview = until_api(
        b,
        "B's overview to count A's and C's connections",
        "/api/overview",
        |o| o["object_totals"]["connections"].as_u64() >= Some(2),
    )
    .await;
    let listeners = overview["listeners"].as_array().unwrap();
    for n in ["rabbit@n0", "rabbit@n1", "rabbit@n2"] {
        assert!(
            listeners
                .iter()
                .any(|l| l["node"] == n && l["protocol"] == "amqp"),
            "no amqp listener of {n} in {overview}"
        );
    }
    let conns = get(b, "/api/connections").await;
    let of = |node: &str| -> Vec<String> {
        conns
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["node"] == node)
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of(&a_name).len(), 1, "{conns}");
    let c_conn = of(&c_name);
    assert_eq!(c_conn.len(), 1, "{conns}");

    // A DELETE on B of C's connection is forwarded to C, which closes it.
    let path = format!("{}/api/connections/{}", b.api(), urlencode(&c_conn[0]));
    let reply = reqwest::Client::new()
        .delete(path)
        .basic_auth("guest", Some("guest"))
        .header("X-Reason", "moved")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 204);
    within("C's connection to close", async {
        while on_c.status().connected() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // /metrics stays per node and names the node and its cluster.
    let metrics = reqwest::get(prometheus(a))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("rabbitmq_node=\"{a_name}\"")),
        "identity_info of A: {}",
        metrics
            .lines()
            .filter(|l| l.contains("identity"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("\nrabbitmq_unreachable_cluster_peers_count 0\n"));
    assert!(metrics.contains("\npigeon_cluster_members 3\n"));
    assert!(metrics.contains("\nrabbitmq_raft_term_total "));

    // Drain A through B (forwarded over the cluster link): A's client is closed with 320 and
    // RabbitMQ's reason, A refuses new connections, B still serves, A is being_drained, and the
    // metadata group is led by another node.
    let mut events = on_a.events_listener();
    let drained = ctl_at(&b.api(), &["drain", &a_name, "--formatter", "json"])
        .await
        .json();
    assert_eq!(drained["being_drained"], true, "{drained}");
    assert!(
        drained["connections_closed"].as_u64() >= Some(1),
        "{drained}"
    );
    let error = within("A's client to be told", async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("lapin's events ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(reply_code(&error), Some(CONNECTION_FORCED), "{error}");
    assert!(
        error
            .to_string()
            .contains("Node was put into maintenance mode"),
        "{error}"
    );
    let refused =
        Connection::connect(&a.url("guest", "guest"), ConnectionProperties::default()).await;
    assert!(refused.is_err(), "a drained node accepted a client");
    let on_b = until_login(b, "guest", "guest").await;
    let nodes_b = get(b, "/api/nodes").await;
    assert_eq!(entry(&nodes_b, &a_name)["being_drained"], true, "{nodes_b}");
    assert_eq!(
        entry(&nodes_b, &name(1))["being_drained"],
        false,
        "{nodes_b}"
    );
    let leader = until_api(
        b,
        "another node to lead the metadata group",
        "/api/pigeon/cluster",
        |s| s["leader"].is_string() && s["leader"] != a_name.as_str(),
    )
    .await;
    assert_ne!(leader["leader"], a_name.as_str());
    let metrics = reqwest::get(prometheus(a))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("\npigeon_maintenance_being_drained 1\n"));
    // A user created through B while A is drained (A follows, it is only not leading).
    ctl_at(&b.api(), &["add_user", "during", "drain"])
        .await
        .ok();

    // Revive A (on A itself): it takes clients again and is no longer being drained.
    let revived = ctl_at(&a.api(), &["revive", "--formatter", "json"])
        .await
        .json();
    assert_eq!(revived["being_drained"], false, "{revived}");
    let back = until_login(a, "guest", "guest").await;
    ctl_at(&a.api(), &["set_permissions", "during", ".*", ".*", ".*"])
        .await
        .ok();
    let during = until_login(a, "during", "drain").await;
    let nodes_b = get(b, "/api/nodes").await;
    assert_eq!(
        entry(&nodes_b, &a_name)["being_drained"],
        false,
        "{nodes_b}"
    );
    for conn in [back, during, on_b] {
        conn.close(200, "bye".into()).await.unwrap();
    }
}

/// Percent-encodes a connection name for a path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
