//! Definitions through the management HTTP API: an export from one broker imports into
//! another (users log in with the same passwords, queues, exchanges and bindings route lapin's
//! messages), a file in RabbitMQ's format imports with what Pigeon cannot honour listed, and
//! bad documents are refused.

use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, TestBroker};
use serde_json::json;

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

#[tokio::test]
async fn an_export_imports_into_another_broker() {
    let Some(source) = broker().await else { return };
    let Some(target) = broker().await else { return };
    let (a, b) = (Api::new(&source), Api::new(&target));
    let vhost = unique("defs");
    let user = unique("user");
    a.put(
        &format!("/api/vhosts/{vhost}"),
        json!({"description": "exported"}),
    )
    .await;
    // As in RabbitMQ, creating a vhost grants nothing (its web UI grants the creator
    // permissions with a second call): the administrator declares objects with permissions.
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    a.put(&format!("/api/permissions/{vhost}/guest"), all).await;
    a.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    a.put(
        &format!("/api/permissions/{vhost}/{user}"),
        json!({"configure": ".*", "write": ".*", "read": ".*"}),
    )
    .await;
    a.put(
        &format!("/api/topic-permissions/{vhost}/{user}"),
        json!({"exchange": "amq.topic", "write": ".*", "read": ".*"}),
    )
    .await;
    a.put(
        &format!("/api/vhost-limits/{vhost}/max-queues"),
        json!({"value": 50}),
    )
    .await;
    a.put(
        &format!("/api/exchanges/{vhost}/ex"),
        json!({"type": "direct"}),
    )
    .await;
    a.put(
        &format!("/api/queues/{vhost}/qu"),
        json!({"arguments": {"x-max-length": 10}}),
    )
    .await;
    assert_eq!(
        a.post(
            &format!("/api/bindings/{vhost}/e/ex/q/qu"),
            json!({"routing_key": "k"})
        )
        .await
        .status,
        201
    );

    let export = a.get("/api/definitions").await;
    assert_eq!(export.status, 200);
    let defs = export.body;
    assert!(defs["rabbit_version"].is_string());
    assert!(defs["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == user.as_str()
            && u["hashing_algorithm"] == "rabbit_password_hashing_sha256"));
    assert!(defs["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| !x["name"].as_str().unwrap().starts_with("amq.")));
    assert!(defs["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["component"] == "vhost-limits" && p["vhost"] == vhost.as_str()));

    let imported = b.post("/api/definitions", defs).await;
    assert_eq!(imported.status, 204, "{:?}", imported.body);
    assert_eq!(
        b.get(&format!("/api/vhosts/{vhost}")).await.body["description"],
        "exported"
    );
    assert_eq!(
        b.get(&format!("/api/queues/{vhost}/qu")).await.body["arguments"],
        json!({"x-max-length": 10})
    );
    assert_eq!(
        b.get(&format!("/api/topic-permissions/{vhost}/{user}"))
            .await
            .status,
        200
    );
    assert_eq!(
        b.get(&format!("/api/vhost-limits/{vhost}")).await.body[0]["value"],
        json!({"max-queues": 50})
    );
    // The imported user logs in with its password, and the binding routes.
    let url = format!("amqp://{user}:pw@{}/{vhost}", target.addr());
    let conn = lp::connect_url(&url).await.unwrap();
    let channel = lp::confirm_channel(&conn).await;
    assert!(lp::routed(&channel, "ex", "k", b"imported").await);
    let got = b
        .post(
            &format!("/api/queues/{vhost}/qu/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await;
    assert_eq!(got.body[0]["payload"], "imported");

    // A vhost's own export holds only its objects.
    let one = a.get(&format!("/api/definitions/{vhost}")).await.body;
    assert!(one.get("users").is_none());
    assert_eq!(one["queues"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_rabbitmq_file_imports_with_what_is_not_supported_listed() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let vhost = unique("rmq");
    // As RabbitMQ 3.13 exports it. The hash is the example of RabbitMQ's passwords guide
    // ("test12", salt 908DC60A).
    let defs = json!({
        "rabbit_version": "3.13.7",
        "rabbitmq_version": "3.13.7",
        "product_name": "RabbitMQ",
        "users": [{"name": "imported", "password_hash": "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}}],
        "vhosts": [{"name": vhost, "description": "", "tags": [], "metadata": {"description": "", "tags": []}}],
        "permissions": [{"user": "imported", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}],
        "topic_permissions": [],
        "parameters": [{"value": {"uri": "amqp://elsewhere"}, "vhost": vhost, "component": "federation-upstream", "name": "up"}],
        "global_parameters": [{"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-x"}],
        "policies": [{"vhost": vhost, "name": "ttl", "pattern": "^ttl\\.", "apply-to": "queues", "definition": {"message-ttl": 1000}, "priority": 0}],
        "queues": [
            {"name": "classic", "vhost": vhost, "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "classic"}},
            {"name": "quorum", "vhost": vhost, "durable": true, "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}
        ],
        "exchanges": [{"name": "events", "vhost": vhost, "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {}}],
        "bindings": [{"source": "events", "vhost": vhost, "destination": "quorum", "destination_type": "queue", "routing_key": "#", "arguments": {}}]
    });
    let a = api.post("/api/definitions", defs).await;
    assert_eq!(a.status, 200);
    let warnings: Vec<String> = a.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("federation-upstream")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("quorum")),
        "{warnings:?}"
    );
    assert_eq!(
        api.get(&format!("/api/queues/{vhost}/quorum")).await.status,
        200
    );
    assert_eq!(
        api.get(&format!("/api/bindings/{vhost}/e/events/q/quorum"))
            .await
            .body[0]["routing_key"],
        "#"
    );
    lp::connect_url(&format!("amqp://imported:test12@{}/{vhost}", broker.addr()))
        .await
        .unwrap();

    // Bad documents: 400.
    assert_eq!(
        api.raw("POST", "/api/definitions", Some(b"[1,2".to_vec()))
            .await
            .status,
        400
    );
    assert_eq!(
        api.post("/api/definitions", json!({"users": "nope"}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.post(
            "/api/definitions",
            json!({"queues": [{"name": "q", "vhost": unique("none")}]})
        )
        .await
        .status,
        400
    );
    // Administrators only.
    let m = unique("m");
    api.put(
        &format!("/api/users/{m}"),
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    assert_eq!(
        api.with_user(&m, "pw").get("/api/definitions").await.status,
        401
    );
}
