//! Regressions found by running client libraries' own test suites against Pigeon: Python's
//! `rstream` (tests/) and the Rust `rabbitmq-stream-client` (tests/), both written against
//! RabbitMQ (3.13 and later). Each test names the suite test that found the discrepancy;
//! docs/streams-compat-python-rust.md lists the totals and what still differs.

use crate::stream_protocol_support;

use pigeon_tests::http_support::Api;
use stream_protocol_support::{broker, Raw};
use stream_wire::{Command, PeerProperties};

/// rabbitmq-stream-client's `client_drop_connection` (and its producer_drop_* tests) list
/// `/api/connections/`: RabbitMQ's router ignores the trailing slash.
#[tokio::test]
async fn the_management_api_ignores_a_trailing_slash() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let _raw = Raw::open(broker.stream_addr().unwrap()).await;
    for path in ["/api/connections/", "/api/queues/", "/api/stream/connections/"] {
        let answer = api.get(path).await;
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert!(answer.body.is_array(), "{path}: {answer:?}");
    }
    let listed = api.get("/api/connections/").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(api.get("/api/overview/").await.status, 200);
}

/// rstream's `test_*_connection_broke*` read `client_properties.connection_name` of every
/// listed connection: a stream connection is listed once open (rabbit_stream_reader's
/// `transition_to_opened`), not while its handshake is under way.
#[tokio::test]
async fn a_stream_connection_is_listed_once_open() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let server = broker.server().unwrap();
    let mut half = Raw::connect(broker.stream_addr().unwrap()).await;
    half.send(PeerProperties {
        correlation_id: 1,
        properties: Default::default(),
    })
    .await;
    assert!(matches!(
        half.recv().await,
        Some(Command::PeerPropertiesResponse(_))
    ));
    let open = Raw::open(broker.stream_addr().unwrap()).await;
    let ports: Vec<u16> = server
        .connections()
        .iter()
        .map(|c| c.peer_port)
        .collect();
    assert!(ports.contains(&open.local.port()), "{ports:?}");
    assert!(!ports.contains(&half.local.port()), "{ports:?}");
    let api = Api::new(&broker);
    let rows = api.get("/api/connections").await.body;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["peer_port"], open.local.port());
}
