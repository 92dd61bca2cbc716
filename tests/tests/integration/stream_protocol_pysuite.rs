//! Regressions found by running client libraries' own test suites against Pigeon: Python's
//! `rstream` (tests/) and the Rust `rabbitmq-stream-client` (tests/), both written against
//! RabbitMQ (3.13 and later). Each test names the suite test that found the discrepancy;
//! docs/streams-compat-python-rust.md lists the totals and what still differs.

use crate::stream_protocol_support;

use bytes::Bytes;
use pigeon_tests::http_support::Api;
use stream_protocol_support::{broker, Raw};
use stream_wire::{Command, PeerProperties, Publish, PublishedMessage, ResponseCode};

fn messages(ids: &[u64], size: usize) -> Vec<PublishedMessage> {
    ids.iter()
        .map(|&id| PublishedMessage::simple(id, Bytes::from(vec![b'm'; size])))
        .collect()
}

/// rabbitmq-stream-client's `client_drop_connection` (and its producer_drop_* tests) list
/// `/api/connections/`: RabbitMQ's router ignores the trailing slash.
#[tokio::test]
async fn the_management_api_ignores_a_trailing_slash() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let _raw = Raw::open(broker.stream_addr().unwrap()).await;
    for path in [
        "/api/connections/",
        "/api/queues/",
        "/api/stream/connections/",
    ] {
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
    let ports: Vec<u16> = server.connections().iter().map(|c| c.peer_port).collect();
    assert!(ports.contains(&open.local.port()), "{ports:?}");
    assert!(!ports.contains(&half.local.port()), "{ports:?}");
    let api = Api::new(&broker);
    let rows = api.get("/api/connections").await.body;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["peer_port"], open.local.port());
}

/// rabbitmq-stream-client's `producer_send_batch_name_with_deduplication_ok`: a frame with
/// publishing ids 0, 0, 1, 1 stores 0 and 1 and confirms the written ones and the duplicates
/// in two frames (osiris confirms duplicates apart), never one id twice in a frame.
#[tokio::test]
async fn duplicates_of_a_frame_are_confirmed_in_a_frame_of_their_own() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-dedup-frame");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.create(&name).await;
    raw.declare_publisher(&name, "my_producer").await;
    raw.send(Publish::new(1, &messages(&[0, 0, 1, 1], 7))).await;
    let mut confirms = Vec::new();
    while confirms.len() < 2 {
        match raw.recv().await {
            Some(Command::PublishConfirm(c)) => confirms.push(c.publishing_ids.to_vec()),
            other => panic!("expected PublishConfirm, got {other:?}"),
        }
    }
    assert_eq!(confirms, vec![vec![0, 1], vec![0, 1]]);
}

/// rabbitmq-stream-client's `client_drop_connection` and rstream's `test_*_connection_broke*`:
/// a connection closed through the management API drops at once, without a Close
/// (rabbit_stream_reader stops on `{shutdown, _}`), so the client's next request fails.
#[tokio::test]
async fn a_management_close_drops_the_socket_at_once() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    let api = Api::new(&broker);
    let rows = api.get("/api/connections").await.body;
    let conn = rows[0]["name"].as_str().unwrap().to_string();
    let encoded: String = conn
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let answer = api.delete(&format!("/api/connections/{encoded}")).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    assert!(raw.until_closed().await.is_empty());
}

/// rstream's `test_publishing_several_messages_different_streams`: its producer packs 100,000
/// messages into frames over the negotiated 1 MiB, which RabbitMQ 3.13 reads (it limits
/// inbound frames to nothing once open); Pigeon reads them up to `max_message_size`.
#[tokio::test]
async fn a_frame_over_the_negotiated_maximum_is_read_once_open() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-big-frame");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.create(&name).await;
    raw.declare_publisher(&name, "").await;
    // 1,500 messages of 1,000 bytes: a frame of about 1.5 MB, over the 1 MiB negotiated.
    let ids: Vec<u64> = (1..=1_500).collect();
    raw.send(Publish::new(1, &messages(&ids, 1_000))).await;
    match raw.recv().await {
        Some(Command::PublishConfirm(c)) => assert_eq!(c.publishing_ids.len(), ids.len()),
        Some(Command::Close(c)) => panic!("closed: {:?}", c.code),
        other => panic!("expected PublishConfirm, got {other:?}"),
    }
    // A frame over `max_message_size` is still refused.
    raw.send_bytes(&[0x7f, 0xff, 0xff, 0xff, 0x00, 0x02, 0x00, 0x01])
        .await;
    match raw.recv().await {
        Some(Command::Close(c)) => assert_eq!(c.code, ResponseCode::FrameTooLarge),
        other => panic!("expected Close, got {other:?}"),
    }
}
