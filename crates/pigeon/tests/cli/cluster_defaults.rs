//! The default user and vhost, and the configuration file's users and policies, written once
//! for the cluster (docs/clustering.md, "The broker in a cluster"): a fresh cluster has
//! guest/guest and `/` on every node, a configured user and policy on every node, and a
//! default user deleted cluster-wide stays deleted when a node restarts or a new one joins
//! (through its static peers: a learner, then a voter).
//!
//! Three `pigeon` processes (the harness of `cluster.rs`), driven with reqwest and lapin;
//! every wait polls for its event, bounded by `within`.

use super::cluster::{start_all, until_login, write_configs, Node};
use pigeon_tests::http_support::Api;
use pigeon_tests::within;
use serde_json::{json, Value};
use std::time::Duration;

/// What every node's configuration adds: a configured user and a configured policy.
const CONFIGURED: &str = "\n[[server.users]]\nname = 'ops'\npassword = 'opspw'\ntags = ['administrator']\n\n[[server.policies]]\nname = 'cfg-ttl'\npattern = '^cfg\\.'\napply_to = 'queues'\ndefinition = { message-ttl = 60000 }\n";

/// Waits until `GET path` on `node` (as `user`) answers `status`.
async fn until_status(node: &Node, user: (&str, &str), path: &str, status: u16) -> Value {
    let api = Api::at(&node.api(), user.0, user.1);
    within(
        &format!("GET {path} on {} to answer {status}", node.api()),
        async {
            loop {
                let a = api.get(path).await;
                if a.status == status {
                    return a.body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await
}

/// Waits until `node`'s log has `text`.
async fn until_logged(node: &Node, text: &str) {
    within(&format!("'{text}' in the log of {}", node.api()), async {
        while !node.log().contains(text) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Names of `GET /api/users` on `node`.
async fn user_names(node: &Node, user: (&str, &str)) -> Vec<String> {
    let body = until_status(node, user, "/api/users", 200).await;
    let mut names: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

const SET_UP: &str = "default user, vhost and configured users and policies set up";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_user_is_created_once_for_the_cluster_and_stays_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    for c in &configs {
        let mut text = std::fs::read_to_string(c).unwrap();
        text.push_str(CONFIGURED);
        std::fs::write(c, text).unwrap();
    }
    let mut nodes = start_all(&configs).await;
    // A fresh cluster: guest/guest logs in to "/" on every node (lapin), and every node
    // lists the same users (guest and the configured one, once each) and the policy.
    for n in &nodes {
        let c = until_login(n, "guest", "guest").await;
        c.close(200, "bye".into()).await.unwrap();
        until_login(n, "ops", "opspw").await;
    }
    for n in &nodes {
        until_logged(n, SET_UP).await;
    }
    for n in &nodes {
        assert_eq!(user_names(n, ("guest", "guest")).await, ["guest", "ops"]);
        let vhosts = until_status(n, ("guest", "guest"), "/api/vhosts", 200).await;
        assert!(vhosts.as_array().unwrap().iter().any(|v| v["name"] == "/"));
        let p = until_status(n, ("ops", "opspw"), "/api/policies/%2f/cfg-ttl", 200).await;
        assert_eq!(p["definition"]["message-ttl"], 60000, "{p}");
    }

    // guest deleted through node 0 (by the configured administrator) is gone everywhere...
    let ops = Api::at(&nodes[0].api(), "ops", "opspw");
    let a = ops.delete("/api/users/guest").await;
    assert_eq!(a.status, 204, "{:?}", a.body);
    for n in &nodes {
        until_status(n, ("ops", "opspw"), "/api/users/guest", 404).await;
    }
    // ... and stays gone when a node restarts (it proposes the set-up again: a no-op).
    let stopped = nodes.remove(2);
    stopped.kill();
    let restarted = Node::start(&configs[2]).await;
    until_logged(&restarted, SET_UP).await;
    nodes.push(restarted);
    // A change made after the restart reaches it: it has applied what came before.
    let a = ops
        .put(
            "/api/users/late",
            json!({"password": "latepw", "tags": "monitoring"}),
        )
        .await;
    assert!(a.status == 201 || a.status == 204, "{:?}", a.body);
    for n in &nodes {
        until_status(n, ("ops", "opspw"), "/api/users/late", 200).await;
        until_status(n, ("ops", "opspw"), "/api/users/guest", 404).await;
        assert_eq!(user_names(n, ("ops", "opspw")).await, ["late", "ops"]);
    }
    assert!(
        lapin::Connection::connect(
            &nodes[2].url("guest", "guest"),
            lapin::ConnectionProperties::default()
        )
        .await
        .is_err(),
        "guest logged in on the restarted node"
    );
}

/// The cluster port in a configuration written by `write_config`.
fn cluster_port(config: &std::path::Path) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().find(|l| l.starts_with("listen = ")).unwrap();
    line.trim_end_matches('\'')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_later_becomes_a_voter_with_the_clusters_users_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;
    // An administrator of the cluster's own, and guest deleted cluster-wide.
    let guest = Api::at(&nodes[0].api(), "guest", "guest");
    let a = guest
        .put(
            "/api/users/admin",
            json!({"password": "adminpw", "tags": "administrator"}),
        )
        .await;
    assert!(a.status == 201 || a.status == 204, "{:?}", a.body);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let a = guest.put("/api/permissions/%2f/admin", all).await;
    assert!(a.status == 201 || a.status == 204, "{:?}", a.body);
    let admin = Api::at(&nodes[0].api(), "admin", "adminpw");
    assert_eq!(admin.delete("/api/users/guest").await.status, 204);
    for n in &nodes {
        until_status(n, ("admin", "adminpw"), "/api/users/guest", 404).await;
    }
    // A fourth node whose static peers are the three (and itself) joins the running cluster:
    // it says Hello, finds them formed, is added as a learner and promoted to voter.
    let mut ports: Vec<u16> = configs.iter().map(|c| cluster_port(c)).collect();
    ports.push(super::cluster::free_port());
    let config = super::cluster::write_config(dir.path(), 3, &ports);
    let late = Node::start(&config).await;
    until_status(&late, ("admin", "adminpw"), "/api/pigeon/cluster", 200).await;
    let members = within("the fourth node to be a voter", async {
        loop {
            let a = admin.get("/api/pigeon/cluster").await;
            let members = a.body["members"].as_array().cloned().unwrap_or_default();
            let voter = members
                .iter()
                .any(|m| m["name"] == "rabbit@n3" && m["voter"] == true);
            if voter {
                return members;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert_eq!(members.len(), 4, "{members:?}");
    // It has the cluster's users (admin logs in there), not a guest of its own: its set-up
    // proposal changed nothing.
    until_login(&late, "admin", "adminpw").await;
    until_logged(&late, SET_UP).await;
    until_status(&late, ("admin", "adminpw"), "/api/users/guest", 404).await;
    assert_eq!(user_names(&late, ("admin", "adminpw")).await, ["admin"]);
    for n in &nodes {
        assert_eq!(user_names(n, ("admin", "adminpw")).await, ["admin"]);
    }
}
