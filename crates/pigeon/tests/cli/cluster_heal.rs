//! Partitions heal (issue 13 item 2; docs/clustering.md, "Writes and what a client sees"): a
//! node cut off (SIGSTOP) while the majority changes the metadata catches up once it runs
//! again (SIGCONT), without a manual step, and every node ends with the same definitions; a
//! change attempted on a node left in a minority fails (503 through the API, 541 over AMQP)
//! and is not applied once the others are back.
//!
//! Three real `pigeon` processes (the harness of `cluster.rs`); the fault is process-level
//! (SIGSTOP/SIGCONT, SIGKILL and restart). The general fault harness with TCP proxies is
//! elsewhere. Every wait polls for its event, bounded by `within`.

use super::cluster::{start_all, until_login, write_configs, Node};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pigeon_tests::http_support::{Answer, Api};
use pigeon_tests::within;
use serde_json::{json, Value};
use std::time::Duration;

fn api(node: &Node) -> Api {
    Api::at(&node.api(), "guest", "guest")
}

fn signal(node: &Node, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} failed");
}

/// `PUT path body` through `node`, again until it is made (a leader is being elected).
async fn put_until_made(node: &Node, path: &str, body: Value) {
    let api = api(node);
    within(&format!("PUT {path} through {}", node.api()), async {
        loop {
            let a = api.put(path, body.clone()).await;
            if a.status == 201 || a.status == 204 {
                return;
            }
            assert!(
                a.status == 503 || a.status == 401,
                "PUT {path}: {} {:?}",
                a.status,
                a.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// `GET /api/definitions` on `node`, without what a node sets for itself.
async fn definitions(node: &Node) -> Option<Value> {
    let a: Answer = api(node).get("/api/definitions").await;
    if a.status != 200 {
        return None;
    }
    let mut d = a.body;
    let m = d.as_object_mut()?;
    m.remove("rabbit_version");
    m.remove("rabbitmq_version");
    // Sorted, so that the same entities in another order compare equal.
    for list in m.values_mut() {
        if let Value::Array(l) = list {
            l.sort_by_key(|v| v.to_string());
        }
    }
    Some(d)
}

/// Waits until every node has the same definitions, satisfying `ok`; they.
async fn until_converged(nodes: &[&Node], ok: impl Fn(&Value) -> bool) -> Value {
    within("every node to have the same definitions", async {
        loop {
            let mut all = Vec::new();
            for n in nodes {
                all.push(definitions(n).await);
            }
            if let Some(Some(first)) = all.first() {
                if ok(first) && all.iter().all(|d| d.as_ref() == Some(first)) {
                    return first.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

fn names(d: &Value, section: &str) -> Vec<String> {
    d[section]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|v| v["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The metadata group's leader as `node` knows it (an index into `nodes`).
async fn leader(node: &Node) -> usize {
    let api = api(node);
    within("a leader to be elected", async {
        loop {
            let a = api.get("/api/pigeon/cluster").await;
            if let Some(l) = a.body["leader"].as_str() {
                return l.trim_start_matches("rabbit@n").parse().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_catches_up_and_a_minoritys_change_is_never_applied() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();
    for n in nodes.iter().flatten() {
        until_login(n, "guest", "guest").await;
    }
    put_until_made(nodes[0].as_ref().unwrap(), "/api/vhosts/before", json!({})).await;

    // Node 2 stops (SIGSTOP): the majority goes on (a new leader if it led).
    let n2 = nodes[2].as_ref().unwrap();
    signal(n2, "-STOP");
    let (n0, n1) = (nodes[0].as_ref().unwrap(), nodes[1].as_ref().unwrap());
    put_until_made(n0, "/api/vhosts/during", json!({})).await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    put_until_made(n0, "/api/permissions/during/guest", all).await;
    put_until_made(
        n1,
        "/api/queues/during/q1",
        json!({"durable": true, "arguments": {}}),
    )
    .await;
    put_until_made(n0, "/api/users/carol", json!({"password": "c", "tags": ""})).await;
    let gone = api(n1).delete("/api/vhosts/before").await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    // It runs again (SIGCONT) and converges on its own.
    signal(n2, "-CONT");
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    let d = until_converged(&all, |d| {
        let v = names(d, "vhosts");
        v.contains(&"during".to_string())
            && !v.contains(&"before".to_string())
            && names(d, "queues").contains(&"q1".to_string())
            && names(d, "users").contains(&"carol".to_string())
    })
    .await;
    assert!(names(&d, "users").contains(&"guest".to_string()), "{d}");

    // A minority: the two nodes other than a follower `m` are killed; `m` alone refuses a
    // change (503 through the API, 541 over AMQP) and keeps serving what it has.
    let l = leader(nodes[0].as_ref().unwrap()).await;
    let m = (l + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|i| *i != m).collect();
    for i in &others {
        nodes[*i].take().unwrap().kill();
    }
    let lone = nodes[m].as_ref().unwrap();
    let a = api(lone).put("/api/vhosts/minority", json!({})).await;
    assert_eq!(a.status, 503, "{:?}", a.body);
    let c = until_login(lone, "guest", "guest").await;
    let ch = c.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "minority-q".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("timed out"), "{e}");
    assert_eq!(api(lone).get("/api/vhosts/during").await.status, 200);

    // The others come back: the cluster takes changes again, and what the minority tried
    // is on no node.
    for i in &others {
        nodes[*i] = Some(Node::start(&configs[*i]).await);
    }
    let lone = nodes[m].as_ref().unwrap();
    put_until_made(lone, "/api/vhosts/healed", json!({})).await;
    let all: Vec<&Node> = nodes.iter().flatten().collect();
    let d = until_converged(&all, |d| names(d, "vhosts").contains(&"healed".to_string())).await;
    assert!(
        !names(&d, "vhosts").contains(&"minority".to_string()),
        "{d}"
    );
    assert!(
        !names(&d, "queues").contains(&"minority-q".to_string()),
        "{d}"
    );
    for n in &all {
        assert_eq!(api(n).get("/api/vhosts/minority").await.status, 404);
    }
}
