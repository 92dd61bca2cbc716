//! Regressions found by running client libraries' own test suites against Pigeon: Python's
//! `rstream` (tests/) and the Rust `rabbitmq-stream-client` (tests/), both written against
//! RabbitMQ (3.13 and later). Each test names the suite test that found the discrepancy;
//! docs/streams-compat-python-rust.md lists the totals and what still differs.

use crate::stream_protocol_support;

use pigeon_tests::http_support::Api;
use stream_protocol_support::{broker, Raw};

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
