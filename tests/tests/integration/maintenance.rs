//! Maintenance mode on a single node (`POST /api/pigeon/maintenance/drain` and `/revive`,
//! `pigeon ctl drain` / `revive`, as `rabbitmq-upgrade drain` / `revive`; docs/clustering.md
//! "Operations"): every client connection is closed with RabbitMQ's reason (AMQP 320, MQTT 5.0
//! DISCONNECT 0x98), the client listeners refuse new connections while the management API keeps
//! answering, `/api/nodes` says `being_drained`; revived, the listeners take clients again on
//! the same ports. The cluster side (forwarding, the leadership hand-over) is in
//! `crates/pigeon/tests/cli/cluster_ops.rs`.

use futures_lite::StreamExt;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::Mqtt5;
use pigeon_tests::{within, TestBroker};
use rumqttc::v5;
use serde_json::json;
use std::time::Duration;

/// Whether a TCP connection to `addr` is refused now.
async fn refused(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn a_drained_node_closes_its_clients_refuses_new_ones_and_takes_them_again_once_revived() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let server = broker.server().expect("in-process");
    let api = Api::new(&broker);
    let amqp_addr = broker.addr();
    let mqtt_addr = server.mqtt_addr().expect("MQTT listener");
    let amqp = lp::connect(&broker).await;
    let mut events = amqp.events_listener();
    let mut m5 = Mqtt5::connect(v5::MqttOptions::new(
        "drained-v5",
        "127.0.0.1",
        mqtt_addr.port(),
    ))
    .await;
    within("two connections", async {
        while server.connections().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let drained = api.post("/api/pigeon/maintenance/drain", json!({})).await;
    assert_eq!(drained.status, 200, "{:?}", drained.body);
    assert_eq!(drained.body["being_drained"], true);
    assert_eq!(drained.body["connections_closed"], 2, "{:?}", drained.body);
    let error = within("lapin's connection error", async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("lapin's events ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(lp::reply_code(&error), Some(320));
    assert!(
        error
            .to_string()
            .contains("Node was put into maintenance mode"),
        "{error}"
    );
    assert_eq!(
        m5.next_disconnect().await,
        v5::mqttbytes::v5::DisconnectReasonCode::AdministrativeAction
    );
    // drain answers once the listeners are closed.
    assert!(refused(amqp_addr).await, "AMQP accepted while drained");
    assert!(refused(mqtt_addr).await, "MQTT accepted while drained");
    let nodes = api.get("/api/nodes").await;
    assert_eq!(nodes.body[0]["being_drained"], true, "{:?}", nodes.body);

    let revived = api.post("/api/pigeon/maintenance/revive", json!({})).await;
    assert_eq!(revived.status, 200, "{:?}", revived.body);
    assert_eq!(revived.body["being_drained"], false);
    // revive answers once the listeners are bound again, on the same ports.
    let again = lp::connect(&broker).await;
    let ch = lp::open_channel(&again).await;
    lp::exclusive_queue(&ch).await;
    let _m5 = Mqtt5::connect(v5::MqttOptions::new(
        "revived-v5",
        "127.0.0.1",
        mqtt_addr.port(),
    ))
    .await;
    let nodes = api.get("/api/nodes").await;
    assert_eq!(nodes.body[0]["being_drained"], false);
}

#[tokio::test]
async fn only_administrators_drain() {
    let Some(broker) = TestBroker::start_with(pigeon_server::ServerConfig::for_tests()).await
    else {
        return;
    };
    let api = Api::new(&broker);
    let put = api
        .put(
            "/api/users/watcher",
            json!({"password": "pw", "tags": "monitoring"}),
        )
        .await;
    assert!(put.status == 201 || put.status == 204, "{:?}", put.body);
    let watcher = api.with_user("watcher", "pw");
    let answer = watcher
        .post("/api/pigeon/maintenance/drain", json!({}))
        .await;
    assert_eq!(answer.status, 401, "{:?}", answer.body);
    // An unknown node is 404.
    let answer = api
        .post(
            "/api/pigeon/maintenance/drain",
            json!({"node": "rabbit@nowhere"}),
        )
        .await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    lp::connect(&broker).await;
}
