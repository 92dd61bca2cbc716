//! The management API's metadata changes through the cluster (docs/clustering.md, "What is
//! replicated"): queues, exchanges and bindings made through the HTTP API of one node, vhost
//! and global parameters, a definitions import and a bulk user deletion are found on the
//! others; non-durable entities stay on their node; a node left alone answers 503.
//!
//! Three `pigeon` processes (the harness of `cluster.rs`), driven with reqwest
//! (`pigeon_tests::http_support::Api`) and lapin; every wait polls for its event, bounded by
//! `within`.

use super::cluster::{start_all, until_listed, until_login, write_configs, Node};
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pigeon_tests::http_support::{Answer, Api};
use pigeon_tests::within;
use serde_json::{json, Value};
use std::time::Duration;

fn api(node: &Node) -> Api {
    Api::at(&node.api(), "guest", "guest")
}

/// Waits until `GET path` on `node` answers `status`; the last answer.
async fn until_status(node: &Node, path: &str, status: u16) -> Answer {
    let api = api(node);
    within(
        &format!("GET {path} on {} to answer {status}", node.api()),
        async {
            loop {
                let a = api.get(path).await;
                if a.status == status {
                    return a;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await
}

/// Waits until `GET path` on `node` answers 200 with a body for which `ok` holds.
async fn until_body(node: &Node, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let api = api(node);
    within(&format!("GET {path} on {}", node.api()), async {
        loop {
            let a = api.get(path).await;
            if a.status == 200 && ok(&a.body) {
                return a.body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

fn definitions() -> Value {
    json!({
        "users": [{"name": "importer", "password_hash": "", "tags": ["monitoring"]},
                  {"name": "gone", "password_hash": "", "tags": []}],
        "vhosts": [{"name": "imported", "description": "from a file"}],
        "permissions": [{"user": "guest", "vhost": "imported",
                         "configure": ".*", "write": ".*", "read": ".*"}],
        "parameters": [{"vhost": "imported", "component": "shovel", "name": "s1",
                        "value": {"src-uri": "amqp://"}}],
        "global_parameters": [{"name": "imported-global", "value": 42}],
        "policies": [{"vhost": "imported", "name": "ttl", "pattern": "^def\\.",
                      "apply-to": "queues", "priority": 1,
                      "definition": {"message-ttl": 60000}}],
        "exchanges": [{"vhost": "imported", "name": "def.x", "type": "fanout",
                       "durable": true, "auto_delete": false, "internal": false,
                       "arguments": {}}],
        "queues": [{"vhost": "imported", "name": "def.q", "durable": true,
                    "auto_delete": false, "arguments": {"x-max-length": 10}},
                   {"vhost": "imported", "name": "def.local", "durable": false,
                    "auto_delete": false, "arguments": {}}],
        "bindings": [{"vhost": "imported", "source": "def.x", "destination": "def.q",
                      "destination_type": "queue", "routing_key": "", "arguments": {}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_changes_metadata_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    // C loads a definitions file at start: imported there, then through the cluster.
    let boot = dir.path().join("boot.json");
    let boot_defs = json!({
        "vhosts": [{"name": "booted"}],
        "queues": [{"vhost": "booted", "name": "boot.q", "durable": true,
                    "auto_delete": false, "arguments": {}}],
        "policies": [{"vhost": "booted", "name": "boot.p", "pattern": "^boot",
                      "apply-to": "queues", "priority": 0,
                      "definition": {"max-length": 5}}]
    });
    std::fs::write(&boot, boot_defs.to_string()).unwrap();
    let text = std::fs::read_to_string(&configs[2]).unwrap().replace(
        "[server]\n",
        &format!("[server]\nload_definitions = '{}'\n", boot.display()),
    );
    std::fs::write(&configs[2], text).unwrap();
    let mut nodes = start_all(&configs).await;
    let (a, b, c) = (api(&nodes[0]), api(&nodes[1]), api(&nodes[2]));

    // A durable queue PUT on node A (retried while the cluster forms and elects: 503)...
    within("the cluster to accept a queue through the API", async {
        loop {
            let r = a
                .put("/api/queues/%2f/http.q", json!({"durable": true}))
                .await;
            match r.status {
                201 => return,
                503 => continue,
                other => panic!("PUT queue: {other} {}\n{}", r.body, nodes[0].log()),
            }
        }
    })
    .await;
    // ... a non-durable one stays on A.
    let r = a
        .put("/api/queues/%2f/http.local", json!({"durable": false}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // ... is on B and C, and lapin can passive-declare it on C.
    until_listed(&nodes[1], "http.q").await;
    until_listed(&nodes[2], "http.q").await;
    let conn = until_login(&nodes[2], "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare("http.q".into(), passive, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("node C does not know the queue: {e}"));
    conn.close(200, "bye".into()).await.unwrap();

    // An exchange and a binding made through B are on A and C.
    let r = b
        .put(
            "/api/exchanges/%2f/http.x",
            json!({"type": "topic", "durable": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = b
        .post(
            "/api/bindings/%2f/e/http.x/q/http.q",
            json!({"routing_key": "k.#"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    for n in [&nodes[0], &nodes[2]] {
        until_status(n, "/api/exchanges/%2f/http.x", 200).await;
        until_body(n, "/api/bindings/%2f/e/http.x/q/http.q", |l| {
            l.as_array()
                .is_some_and(|l| l.iter().any(|b| b["routing_key"] == "k.#"))
        })
        .await;
    }
    // The log is one order: C has applied everything up to the binding, never the local queue.
    assert_eq!(c.get("/api/queues/%2f/http.local").await.status, 404);
    assert_eq!(a.get("/api/queues/%2f/http.local").await.status, 200);

    // Parameters set on C appear on A: a vhost parameter, a global one, the cluster's name.
    let r = c
        .put(
            "/api/parameters/federation-upstream/%2f/up1",
            json!({"value": {"uri": "amqp://elsewhere"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = c
        .put(
            "/api/global-parameters/knob",
            json!({"value": {"on": true}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = c.put("/api/cluster-name", json!({"name": "flock"})).await;
    assert_eq!(r.status, 204, "{r:?}");
    until_body(
        &nodes[0],
        "/api/parameters/federation-upstream/%2f/up1",
        |p| p["value"]["uri"] == "amqp://elsewhere",
    )
    .await;
    until_body(&nodes[0], "/api/global-parameters/knob", |p| {
        p["value"]["on"] == true
    })
    .await;
    until_body(&nodes[1], "/api/cluster-name", |n| n["name"] == "flock").await;

    // C's start-time definitions reach A and B.
    for n in [&nodes[0], &nodes[1]] {
        until_status(n, "/api/queues/booted/boot.q", 200).await;
        until_status(n, "/api/policies/booted/boot.p", 200).await;
    }

    // A definitions file imported on B is on A and C (durable entities; the non-durable
    // queue only on B).
    let r = b.post("/api/definitions", definitions()).await;
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    for n in [&nodes[0], &nodes[2]] {
        until_status(n, "/api/users/importer", 200).await;
        until_status(n, "/api/vhosts/imported", 200).await;
        until_status(n, "/api/parameters/shovel/imported/s1", 200).await;
        until_status(n, "/api/global-parameters/imported-global", 200).await;
        until_status(n, "/api/policies/imported/ttl", 200).await;
        until_status(n, "/api/exchanges/imported/def.x", 200).await;
        until_body(n, "/api/queues/imported/def.q", |q| {
            q["arguments"]["x-max-length"] == 10
        })
        .await;
        until_body(n, "/api/bindings/imported/e/def.x/q/def.q", |l| {
            l.as_array().is_some_and(|l| l.len() == 1)
        })
        .await;
        assert_eq!(
            api(n).get("/api/queues/imported/def.local").await.status,
            404
        );
    }
    assert_eq!(b.get("/api/queues/imported/def.local").await.status, 200);

    // A bulk deletion on A removes the users everywhere (a missing one is skipped).
    let r = a
        .post(
            "/api/users/bulk-delete",
            json!({"users": ["gone", "importer", "nobody"]}),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    until_status(&nodes[2], "/api/users/gone", 404).await;
    until_status(&nodes[2], "/api/users/importer", 404).await;

    // Deletions through the API: the binding on A, the queue on C, the exchange and the
    // parameters on A; B sees them all.
    let props = until_body(&nodes[0], "/api/bindings/%2f/e/http.x/q/http.q", |l| {
        l.as_array().is_some_and(|l| l.len() == 1)
    })
    .await[0]["properties_key"]
        .as_str()
        .unwrap()
        .to_string();
    // The properties key is itself percent-encoded: its '%' is escaped in the path.
    let props = props.replace('%', "%25");
    let r = a
        .delete(&format!("/api/bindings/%2f/e/http.x/q/http.q/{props}"))
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(c.delete("/api/queues/%2f/http.q").await.status, 204);
    assert_eq!(a.delete("/api/exchanges/%2f/http.x").await.status, 204);
    let r = a
        .delete("/api/parameters/federation-upstream/%2f/up1")
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(a.delete("/api/global-parameters/knob").await.status, 204);
    until_status(&nodes[1], "/api/queues/%2f/http.q", 404).await;
    until_status(&nodes[1], "/api/exchanges/%2f/http.x", 404).await;
    until_status(
        &nodes[1],
        "/api/parameters/federation-upstream/%2f/up1",
        404,
    )
    .await;
    until_status(&nodes[1], "/api/global-parameters/knob", 404).await;

    // Automatic deletions on A reach B: a durable auto-delete queue losing its last consumer
    // (lapin on A), a durable auto-delete exchange losing its last (local) binding.
    let conn = until_login(&nodes[0], "guest", "guest").await;
    let ch = conn.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        durable: true,
        auto_delete: true,
        ..Default::default()
    };
    ch.queue_declare("ad.q".into(), options, FieldTable::default())
        .await
        .unwrap();
    let consumer = ch
        .basic_consume(
            "ad.q".into(),
            "ad.c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    until_status(&nodes[1], "/api/queues/%2f/ad.q", 200).await;
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    until_status(&nodes[1], "/api/queues/%2f/ad.q", 404).await;
    conn.close(200, "bye".into()).await.unwrap();
    let r = a
        .put(
            "/api/exchanges/%2f/ad.x",
            json!({"type": "fanout", "durable": true, "auto_delete": true}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = a
        .put("/api/queues/%2f/ad.local", json!({"durable": false}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    until_status(&nodes[1], "/api/exchanges/%2f/ad.x", 200).await;
    let r = a
        .post("/api/bindings/%2f/e/ad.x/q/ad.local", json!({}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(a.delete("/api/queues/%2f/ad.local").await.status, 204);
    assert_eq!(a.get("/api/exchanges/%2f/ad.x").await.status, 404);
    until_status(&nodes[1], "/api/exchanges/%2f/ad.x", 404).await;
    until_status(&nodes[2], "/api/exchanges/%2f/ad.x", 404).await;

    // B and C gone: A alone refuses every change with 503 and still answers reads.
    let c_node = nodes.pop().unwrap();
    let b_node = nodes.pop().unwrap();
    b_node.kill();
    c_node.kill();
    let refused = [
        a.put("/api/queues/%2f/minority.q", json!({"durable": true}))
            .await,
        a.put(
            "/api/exchanges/%2f/minority.x",
            json!({"type": "direct", "durable": true}),
        )
        .await,
        a.put("/api/global-parameters/minority", json!({"value": 1}))
            .await,
        a.put(
            "/api/parameters/shovel/%2f/minority",
            json!({"value": {"a": 1}}),
        )
        .await,
        a.post(
            "/api/definitions",
            json!({"vhosts": [{"name": "minority"}]}),
        )
        .await,
    ];
    for r in refused {
        assert_eq!(r.status, 503, "{r:?}");
    }
    assert_eq!(a.get("/api/queues/imported/def.q").await.status, 200);
    assert_eq!(a.get("/api/queues/%2f/minority.q").await.status, 404);
    assert_eq!(a.get("/api/vhosts/minority").await.status, 404);
    // A non-durable queue needs no majority.
    let r = a
        .put("/api/queues/%2f/minority.local", json!({"durable": false}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}
