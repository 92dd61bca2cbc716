//! The management API's health checks as RabbitMQ answers them (`/api/health/checks/...`):
//! `{"status":"ok"}` or 503 `{"status":"failed","reason":...}`; the probes Kubernetes calls
//! without credentials (`reached-target-cluster-size`, the RabbitMQ cluster operator's
//! startup probe; `is-in-service`, `ready-to-serve-clients`, `below-node-connection-limit`);
//! the certificate expiry of the TLS listeners; protocol names and their aliases. Through a
//! real HTTP client (reqwest) against the real broker.

use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::tls_support::{config_with, Pki};
use pigeon_tests::{within, TestBroker};
use serde_json::{json, Value};

/// A GET without any credentials: the status and the JSON body.
async fn anonymous(api: &Api, path: &str) -> (u16, Value) {
    let response = within(
        "an anonymous answer",
        reqwest::get(format!("{}{path}", api.base())),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn kubernetes_probes_answer_without_credentials() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let api = Api::new(&broker);
    let ok = json!({"status": "ok"});
    for probe in [
        "reached-target-cluster-size",
        "is-in-service",
        "ready-to-serve-clients",
    ] {
        let path = format!("/api/health/checks/{probe}");
        assert_eq!(anonymous(&api, &path).await, (200, ok.clone()), "{probe}");
    }
    let (status, body) = anonymous(&api, "/api/health/checks/below-node-connection-limit").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["connections"], 0);
    // The others need a management user, as in RabbitMQ.
    for check in [
        "alarms",
        "node-is-quorum-critical",
        "node-is-mirror-sync-critical",
        "certificate-expiration/1/days",
        "protocol-listener/amqp",
    ] {
        let path = format!("/api/health/checks/{check}");
        assert_eq!(anonymous(&api, &path).await.0, 401, "{check}");
        assert_eq!(api.get(&path).await.body["status"], "ok", "{check}");
    }
}

#[tokio::test]
async fn a_target_cluster_size_above_one_node_is_not_reached() {
    let config = ServerConfig {
        target_cluster_size_hint: 3,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let api = Api::new(&broker);
    let (status, body) = anonymous(&api, "/api/health/checks/reached-target-cluster-size").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({
            "status": "failed",
            "reason": "target cluster size not reached: 1 of 3 nodes are online",
            "online": 1,
            "target": 3,
        })
    );
}

#[tokio::test]
async fn the_connection_limit_fails_the_readiness_checks() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let api = Api::new(&broker);
    let connection = lp::connect(&broker).await;
    let (status, body) = anonymous(&api, "/api/health/checks/below-node-connection-limit").await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        json!({"status": "failed", "reason": "node connection limit is reached",
               "limit": 1, "connections": 1})
    );
    let (status, body) = anonymous(&api, "/api/health/checks/ready-to-serve-clients").await;
    assert_eq!(status, 503);
    assert_eq!(body["reason"], "node connection limit is reached");
    connection.close(200, "bye".into()).await.unwrap();
}

#[tokio::test]
async fn protocol_listener_takes_rabbitmqs_aliases() {
    let pki = Pki::new("health CA");
    let Some(broker) = TestBroker::start_with(config_with(pki.server_files(1))).await else {
        return;
    };
    let api = Api::new(&broker);
    for (asked, answered) in [
        ("amqp", "amqp"),
        ("AMQP091", "amqp"),
        ("amqp0-9-1", "amqp"),
        ("amqps", "amqp/ssl"),
        ("amqp%2Fssl", "amqp/ssl"),
        ("mqtt311", "mqtt"),
        ("mqtts", "mqtt/ssl"),
        ("management", "http"),
        ("http", "http"),
        ("http%2Fprometheus", "http/prometheus"),
    ] {
        let a = api
            .get(&format!("/api/health/checks/protocol-listener/{asked}"))
            .await;
        assert_eq!(
            (a.status, a.body.clone()),
            (200, json!({"status": "ok", "protocol": answered})),
            "{asked}"
        );
    }
    let a = api
        .get("/api/health/checks/protocol-listener/web-mqtt")
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["reason"], "No active listener");
    assert_eq!(a.body["missing"], "http/web-mqtt");
    let protocols = a.body["protocols"].as_array().unwrap();
    assert!(protocols.contains(&json!("amqp/ssl")), "{protocols:?}");
}

#[tokio::test]
async fn certificate_expiration_lists_the_tls_listeners_whose_certificates_expire() {
    // Without TLS there is nothing to expire.
    let Some(plain) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let a = Api::new(&plain)
        .get("/api/health/checks/certificate-expiration/100/years")
        .await;
    assert_eq!((a.status, a.body), (200, json!({"status": "ok"})));

    let pki = Pki::new("expiry CA");
    let tls = pki.server_files(1);
    let certfile = tls.certfile.display().to_string();
    let Some(broker) = TestBroker::start_with(config_with(tls)).await else {
        return;
    };
    let api = Api::new(&broker);
    // rcgen's certificates are valid until 4096.
    let a = api
        .get("/api/health/checks/certificate-expiration/1/months")
        .await;
    assert_eq!((a.status, a.body), (200, json!({"status": "ok"})));
    let a = api
        .get("/api/health/checks/certificate-expiration/3000/YEARS")
        .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body["status"], "failed");
    assert_eq!(a.body["reason"], "Certificates expiring");
    let expired = a.body["expired"].as_array().unwrap();
    let amqps = broker.server().unwrap().amqps_addr().unwrap();
    let listener = expired
        .iter()
        .find(|l| l["protocol"] == "amqp/ssl")
        .unwrap_or_else(|| panic!("no amqp/ssl listener in {expired:?}"));
    assert_eq!(listener["port"], amqps.port());
    assert_eq!(listener["interface"], "127.0.0.1");
    assert_eq!(listener["certfile"], certfile.as_str());
    assert_eq!(
        listener["certfile_expires_on"],
        json!(["4096-01-01 0:00:00"])
    );
    assert_eq!(
        listener["cacertfile_expires_on"],
        json!(["4096-01-01 0:00:00"])
    );
    assert!(expired.iter().any(|l| l["protocol"] == "mqtt/ssl"));
    // RabbitMQ's 400s for a period it cannot read.
    let a = api
        .get("/api/health/checks/certificate-expiration/soon/days")
        .await;
    assert_eq!(
        (a.status, a.body),
        (
            400,
            json!({"error": "bad_request", "reason": "Invalid expiration value."})
        )
    );
    let a = api
        .get("/api/health/checks/certificate-expiration/1/fortnights")
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.body["reason"],
        "Time unit not recognised. Supported units: days, weeks, months, years."
    );
}
