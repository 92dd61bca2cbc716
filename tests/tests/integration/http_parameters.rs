//! Runtime parameters, global parameters (the cluster name among them) and the policies and
//! parameters in definitions, through the management HTTP API as RabbitMQ 3.13's management
//! plugin answers them, and `load_definitions` at start. Every call goes through a real HTTP
//! client (reqwest); queues are checked with a real AMQP client (lapin). The tags that may use
//! these endpoints are checked in `http_policies.rs`.

use lapin::types::FieldTable;
use lapin::Channel;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, TestBroker};
use serde_json::{json, Value};

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

/// Declares `name` (durable) with `args` and publishes `n` confirmed messages to it; returns
/// how many it holds then.
async fn fill(channel: &Channel, name: &str, args: FieldTable, n: usize) -> u32 {
    channel
        .queue_declare(
            name.into(),
            lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    for i in 0..n {
        lp::publish(channel, "", name, format!("m{i}").as_bytes()).await;
    }
    lp::message_count(channel, name).await
}

#[tokio::test]
async fn parameters_of_any_component_round_trip_as_opaque_json() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let path = "/api/parameters/shovel/%2F/move";
    let value = json!({"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://",
                       "dest-queue": "b", "nested": [1, 2.5, {"x": null}]});
    assert_eq!(api.put(path, json!({"value": value})).await.status, 201);
    let expected = json!({"vhost": "/", "component": "shovel", "name": "move", "value": value});
    assert_eq!(api.get(path).await.body, expected);
    assert_eq!(
        api.get("/api/parameters/shovel").await.body,
        json!([expected])
    );
    assert_eq!(
        api.get("/api/parameters/shovel/%2F").await.body,
        json!([expected])
    );
    assert_eq!(
        api.get("/api/parameters/federation-upstream").await.body,
        json!([])
    );
    assert_eq!(api.get("/api/parameters/shovel/nowhere").await.status, 404);
    assert_eq!(api.put(path, json!({"value": 1})).await.status, 204);
    assert_eq!(api.get(path).await.body["value"], 1);
    assert_eq!(api.put(path, json!({"nothing": 1})).await.status, 400);
    assert_eq!(
        api.put("/api/parameters/policy/%2F/p", json!({"value": {}}))
            .await
            .status,
        400
    );

    // Vhost limits are RabbitMQ's `vhost-limits` parameters.
    let a = api
        .put(
            "/api/parameters/vhost-limits/%2F/limits",
            json!({"value": {"max-queues": 7}}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        api.get("/api/vhost-limits/%2F").await.body,
        json!([{"vhost": "/", "value": {"max-queues": 7}}])
    );
    assert_eq!(
        api.get("/api/parameters/vhost-limits").await.body[0]["value"],
        json!({"max-queues": 7})
    );

    assert_eq!(api.delete(path).await.status, 204);
    assert_eq!(api.get(path).await.status, 404);
    assert_eq!(api.delete(path).await.status, 404);
}

#[tokio::test]
async fn global_parameters_and_the_cluster_name_agree() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let node = api.get("/api/cluster-name").await.body["name"].clone();
    assert_eq!(
        api.get("/api/global-parameters/cluster_name").await.body,
        json!({"name": "cluster_name", "value": node})
    );
    let name = unique("c");
    let a = api
        .put(
            "/api/global-parameters/cluster_name",
            json!({"value": name}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        api.get("/api/cluster-name").await.body["name"],
        name.as_str()
    );
    assert_eq!(
        api.get("/api/overview").await.body["cluster_name"],
        name.as_str()
    );
    assert_eq!(
        api.put("/api/cluster-name", json!({"name": "other"}))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("/api/global-parameters/cluster_name").await.body["value"],
        "other"
    );
    assert_eq!(
        api.put("/api/global-parameters/cluster_name", json!({"value": 5}))
            .await
            .status,
        400
    );

    let a = api
        .put(
            "/api/global-parameters/my_flag",
            json!({"value": {"on": true}}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        api.get("/api/global-parameters").await.body,
        json!([{"name": "cluster_name", "value": "other"},
               {"name": "my_flag", "value": {"on": true}}])
    );
    assert_eq!(
        api.delete("/api/global-parameters/my_flag").await.status,
        204
    );
    assert_eq!(api.get("/api/global-parameters/my_flag").await.status, 404);
    assert_eq!(
        api.delete("/api/global-parameters/my_flag").await.status,
        404
    );
}

#[tokio::test]
async fn definitions_carry_policies_operator_policies_and_parameters_both_ways() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let vhost = unique("defs");
    // A RabbitMQ 3.13 export, as rabbitmqctl export_definitions writes it.
    let defs = json!({
        "rabbit_version": "3.13.7",
        "vhosts": [{"name": vhost}],
        "policies": [
            {"vhost": vhost, "name": "ha", "pattern": ".*", "apply-to": "queues",
             "definition": {"ha-mode": "all", "ha-sync-mode": "automatic", "max-length": 4}, "priority": 1},
            {"vhost": vhost, "name": "ttl", "pattern": "^t", "apply-to": "all",
             "definition": {"message-ttl": 1000}, "priority": 0}
        ],
        "parameters": [
            {"vhost": vhost, "component": "federation-upstream", "name": "a", "value": {"uri": "amqp://a"}},
            {"vhost": vhost, "component": "federation-upstream", "name": "b", "value": {"uri": "amqp://b"}},
            {"vhost": vhost, "component": "operator_policy", "name": "cap",
             "value": {"pattern": ".*", "definition": {"max-length": 2}, "priority": 0, "apply-to": "queues"}}
        ],
        "global_parameters": [
            {"name": "cluster_name", "value": "imported"},
            {"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x"}
        ]
    });
    let a = api.post("/api/definitions", defs).await;
    assert_eq!(a.status, 200, "{a:?}");
    let warnings: Vec<&str> = a.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.contains("federation-upstream"))
            .count(),
        1,
        "one line per component: {warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("ha-mode")),
        "{warnings:?}"
    );
    assert_eq!(api.get("/api/cluster-name").await.body["name"], "imported");
    assert_eq!(
        api.get(&format!("/api/operator-policies/{vhost}/cap"))
            .await
            .status,
        200
    );

    let exported = api.get("/api/definitions").await.body;
    let mine = |section: &str| -> Vec<Value> {
        exported[section]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["vhost"] == vhost.as_str())
            .cloned()
            .collect()
    };
    let policies = mine("policies");
    assert_eq!(policies.len(), 2);
    assert!(
        policies.contains(&json!({"vhost": vhost, "name": "ha", "pattern": ".*",
        "apply-to": "queues", "priority": 1,
        "definition": {"ha-mode": "all", "ha-sync-mode": "automatic", "max-length": 4}}))
    );
    let parameters = mine("parameters");
    assert_eq!(parameters.len(), 3, "{parameters:?}");
    assert!(
        parameters.contains(&json!({"vhost": vhost, "component": "operator_policy",
        "name": "cap", "value": {"pattern": ".*", "definition": {"max-length": 2},
        "priority": 0, "apply-to": "queues"}}))
    );
    assert!(exported["global_parameters"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "cluster_name", "value": "imported"})));

    // A vhost's export imports into another vhost as it is.
    let one = api.get(&format!("/api/definitions/{vhost}")).await.body;
    assert_eq!(one["policies"].as_array().unwrap().len(), 2);
    assert_eq!(one["parameters"].as_array().unwrap().len(), 3);
    let copy = unique("copy");
    assert_eq!(
        api.put(&format!("/api/vhosts/{copy}"), json!({}))
            .await
            .status,
        201
    );
    let a = api.post(&format!("/api/definitions/{copy}"), one).await;
    assert!(a.status == 200 || a.status == 204, "{a:?}");
    assert_eq!(
        api.get(&format!("/api/policies/{copy}"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get(&format!("/api/parameters/federation-upstream/{copy}"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        api.get(&format!("/api/operator-policies/{copy}/cap"))
            .await
            .status,
        200
    );

    // An unknown policy key in a definitions file is refused, as RabbitMQ refuses it.
    let bad = json!({"policies": [{"vhost": vhost, "name": "bad", "pattern": ".*",
                                   "definition": {"nonsense": 1}}]});
    assert_eq!(api.post("/api/definitions", bad).await.status, 400);
}

#[tokio::test]
async fn load_definitions_imports_policies_and_parameters_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("definitions.json");
    let defs = json!({
        "vhosts": [{"name": "/"}, {"name": "booted"}],
        "policies": [{"vhost": "/", "name": "boot", "pattern": "^boot", "apply-to": "queues",
                      "definition": {"max-length": 2}, "priority": 0}],
        "parameters": [{"vhost": "booted", "component": "shovel", "name": "s",
                        "value": {"src-queue": "a"}}],
        "global_parameters": [{"name": "cluster_name", "value": "from-file"}]
    });
    std::fs::write(&file, defs.to_string()).unwrap();
    let config = ServerConfig {
        load_definitions: Some(file),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let api = Api::new(&broker);
    assert_eq!(api.get("/api/policies/%2F/boot").await.status, 200);
    assert_eq!(
        api.get("/api/parameters/shovel/booted/s").await.body["value"],
        json!({"src-queue": "a"})
    );
    assert_eq!(api.get("/api/cluster-name").await.body["name"], "from-file");
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    assert_eq!(fill(&channel, "boot.q", FieldTable::default(), 5).await, 2);
}

#[tokio::test]
async fn a_definitions_file_with_an_invalid_policy_stops_the_start() {
    if std::env::var(pigeon_tests::EXTERNAL_URL_VAR).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    let defs = json!({"policies": [{"vhost": "/", "name": "bad", "pattern": ".*",
                                    "definition": {"nonsense": 1}}]});
    std::fs::write(&file, defs.to_string()).unwrap();
    let config = ServerConfig {
        load_definitions: Some(file),
        ..ServerConfig::for_tests()
    };
    let started = pigeon_server::start(config).await;
    let error = started.err().expect("the start fails").to_string();
    assert!(error.contains("not recognised"), "{error}");
}
