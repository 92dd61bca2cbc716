//! Connection-level behaviour: the protocol header, login, tuning, heartbeats and closing
//! (AMQP 0-9-1 sections 2.2.4 and 4.2, RabbitMQ's authentication and heartbeat guides).

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use pigeon_server::{ServerConfig, UserConfig};
use pigeon_tests::lapin_support::{self as lp, reply_code};
use pigeon_tests::raw::{self, Ending, Frame, RawClient, Tune, PROTOCOL_HEADER};
use pigeon_tests::reply::{ACCESS_REFUSED, FRAME_ERROR, NOT_ALLOWED};
use pigeon_tests::{within, TestBroker};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_header_is_answered_with_0_9_1_and_the_socket_closed() {
    let broker = TestBroker::start().await;
    // AMQP 0-10, an unknown 0-9-x revision, and something that is not AMQP at all.
    // (RabbitMQ also speaks the legacy 0-8 and 0-9 headers, so those are not used here.)
    for header in [
        b"AMQP\x00\x00\x0a\x00",
        b"AMQP\x00\x00\x09\x02",
        b"HTTP/1.1",
    ] {
        let mut client = RawClient::connect(broker.addr()).await;
        client.send_bytes(header).await;
        assert_eq!(
            client.read_raw(8).await,
            PROTOCOL_HEADER,
            "reply to {header:?} is the supported protocol header"
        );
        client.expect_eof().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_start_offers_0_9_plain_amqplain_and_rabbitmq_capabilities() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let start = client.start().await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let mechanisms: Vec<&str> = start.mechanisms.split(' ').collect();
    assert!(mechanisms.contains(&"PLAIN"), "{mechanisms:?}");
    assert!(mechanisms.contains(&"AMQPLAIN"), "{mechanisms:?}");
    assert!(start.locales.split(' ').any(|l| l == "en_US"));
    // Clients (amqprs among them) read these as long strings.
    for key in ["product", "version", "platform"] {
        let value = start.server_properties.get(key);
        assert!(
            matches!(value, Some(raw::Value::Str(_))),
            "{key} = {value:?}"
        );
    }
    let capabilities = start
        .server_properties
        .get("capabilities")
        .expect("server properties carry a capabilities table");
    for capability in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        assert_eq!(
            capabilities.get(capability),
            Some(&raw::Value::Bool(true)),
            "capability {capability}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_amqplain_logins_both_open_the_connection() {
    let broker = TestBroker::start().await;
    for mechanism in ["plain", "amqplain"] {
        let url = format!("{}?auth_mechanism={mechanism}", broker.amqp_url());
        let conn = lp::connect_url(&url).await.unwrap();
        let channel = lp::open_channel(&conn).await;
        lp::exclusive_queue(&channel).await;
        conn.close(200, "bye".into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_may_log_in_from_loopback() {
    let broker = TestBroker::start().await;
    let conn = lp::connect_url(&broker.url_as("guest", "guest"))
        .await
        .unwrap();
    assert!(conn.status().connected());
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_403_access_refused() {
    let broker = TestBroker::start().await;
    // lapin announces authentication_failure_close, so the server must say why it refuses.
    let error = lp::connect_url(&broker.url_as(broker.user(), "not-the-password"))
        .await
        .expect_err("a wrong password must not open a connection");
    assert_eq!(reply_code(&error), Some(ACCESS_REFUSED), "{error:?}");

    let unknown = lp::connect_url(&broker.url_as("no-such-user", "x"))
        .await
        .expect_err("an unknown user must not open a connection");
    assert_eq!(reply_code(&unknown), Some(ACCESS_REFUSED), "{unknown:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_without_authentication_failure_close_just_closes_the_socket() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.start().await;
    client
        .start_ok_plain(broker.user(), "not-the-password", false)
        .await;
    assert_eq!(client.ending().await, Ending::Eof);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_with_authentication_failure_close_gets_connection_close_403() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.start().await;
    client
        .start_ok_plain(broker.user(), "not-the-password", true)
        .await;
    let close = client.expect_connection_close().await;
    assert_eq!(close.code, ACCESS_REFUSED, "{close:?}");
    assert!(close.text.starts_with("ACCESS_REFUSED"), "{close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smaller_limits_asked_by_the_client_are_the_negotiated_ones() {
    let broker = TestBroker::start().await;
    let url = format!(
        "{}?channel_max=8&frame_max=8192&heartbeat=5",
        broker.amqp_url()
    );
    let conn = lp::connect_url(&url).await.unwrap();
    let config = conn.configuration();
    assert_eq!(
        (config.channel_max(), config.frame_max(), config.heartbeat()),
        (8, 8192, 5)
    );
    // A message larger than the frame size still travels whole, in several body frames.
    let channel = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let big: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    lp::publish(&channel, "", &queue, &big).await;
    let mut consumer = lp::consume(
        &channel,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(lp::next_delivery(&mut consumer).await.data, big);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_splits_deliveries_into_frames_no_larger_than_the_negotiated_frame_max() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut how = broker.raw_handshake();
    how.tune_ok = |proposed| Tune {
        frame_max: 4096,
        ..proposed
    };
    client.handshake(&how).await;
    client.open_channel(1).await;
    let queue = client.declare_exclusive_queue(1).await;
    let body: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    client.publish(1, &queue, &body, 4096).await;
    let frames = client.get_body_frames(1, &queue).await;
    assert!(
        frames.len() >= 3,
        "10000 bytes need at least 3 frames of 4096"
    );
    for frame in &frames {
        assert!(
            frame.encode().len() <= 4096,
            "frame of {}",
            frame.encode().len()
        );
    }
    let received: Vec<u8> = frames.into_iter().flat_map(|f| f.payload).collect();
    assert_eq!(received, body);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_more_channels_than_channel_max_is_530_not_allowed() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut how = broker.raw_handshake();
    how.tune_ok = |proposed| Tune {
        channel_max: 2,
        ..proposed
    };
    client.handshake(&how).await;
    client.open_channel(1).await;
    client.open_channel(2).await;
    client.send_channel_open(3).await;
    let close = client.expect_connection_close().await;
    assert_eq!(close.code, NOT_ALLOWED, "{close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_frame_max_is_501_frame_error() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let mut how = broker.raw_handshake();
    how.tune_ok = |proposed| Tune {
        frame_max: 4096,
        ..proposed
    };
    client.handshake(&how).await;
    client.open_channel(1).await;
    // One body frame of 5000 bytes where 4096 is the most a frame may be.
    client.publish(1, "anywhere", &[7u8; 5000], 5008).await;
    let close = client.expect_connection_close().await;
    assert_eq!(close.code, FRAME_ERROR, "{close:?}");
}

/// Negotiates a one-second heartbeat.
fn one_second_heartbeat(broker: &TestBroker) -> raw::Handshake {
    let mut how = broker.raw_handshake();
    how.tune_ok = |proposed| Tune {
        heartbeat: 1,
        ..proposed
    };
    how
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_after_missed_heartbeats() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.handshake(&one_second_heartbeat(&broker)).await;
    // We never send anything again; the server must give up on us well within the timeout.
    let started = Instant::now();
    client.ending().await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "not before one interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sends_heartbeats_and_keeps_a_client_that_sends_them() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.handshake(&one_second_heartbeat(&broker)).await;
    // Keep the connection busy only with heartbeats, ours every half interval, for five
    // intervals: longer than any server may wait (two missed heartbeats) before dropping us.
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let mut received = 0;
    while started.elapsed() < Duration::from_secs(5) {
        tokio::select! {
            _ = ticker.tick() => client.send(&Frame::heartbeat()).await,
            frame = client.read_frame() => {
                let frame = frame.expect("the server closed a connection that sends heartbeats");
                assert_eq!(frame.kind, raw::frame_type::HEARTBEAT, "only heartbeats: {frame:?}");
                assert_eq!(frame.channel, 0, "heartbeats travel on channel 0");
                received += 1;
            }
        }
    }
    assert!(
        received >= 3,
        "the server sent {received} heartbeats in 5 s"
    );
    // Still alive: a synchronous round trip works.
    client.open_channel(1).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_answered_with_close_ok() {
    let broker = TestBroker::start().await;
    let mut raw_client = broker.raw_connection().await;
    raw_client.open_channel(1).await;
    raw_client.close().await;

    let conn = lp::connect(&broker).await;
    let _channel = lp::open_channel(&conn).await;
    // lapin's close resolves when connection.close-ok arrives.
    within("connection.close-ok", conn.close(200, "bye".into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_offers_its_configured_limits_and_enforces_channel_max() {
    let config = ServerConfig {
        frame_max: 8192,
        channel_max: 4,
        heartbeat: 7,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let mut client = RawClient::connect(broker.addr()).await;
    client.start().await;
    client
        .start_ok_plain(broker.user(), broker.password(), true)
        .await;
    let tune = client.tune().await;
    assert_eq!(
        tune,
        Tune {
            channel_max: 4,
            frame_max: 8192,
            heartbeat: 7
        }
    );
    client.tune_ok_and_open(tune).await;
    for channel in 1..=4 {
        client.open_channel(channel).await;
    }
    client.send_channel_open(5).await;
    assert_eq!(client.expect_connection_close().await.code, NOT_ALLOWED);

    let conn = lp::connect(&broker).await;
    let config = conn.configuration();
    assert_eq!(
        (config.channel_max(), config.frame_max(), config.heartbeat()),
        (4, 8192, 7)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_users_log_in_and_others_are_refused() {
    let config = ServerConfig {
        users: vec![UserConfig {
            name: "alice".into(),
            password: "s3cret".into(),
            loopback_only: false,
            tags: Vec::new(),
        }],
        // Configured users come beside the default user; without one, guest does not exist.
        default_user: String::new(),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let conn = lp::connect_url(&broker.url_as("alice", "s3cret"))
        .await
        .unwrap();
    let channel = lp::open_channel(&conn).await;
    lp::declare(&channel, "", QueueDeclareOptions::exclusive()).await;
    let guest = lp::connect_url(&broker.url_as("guest", "guest"))
        .await
        .expect_err("guest does not exist");
    assert_eq!(reply_code(&guest), Some(ACCESS_REFUSED));
}

/// One version everywhere clients read one: AMQP's server properties (raw, and as amqprs reads
/// them), the stream protocol's PeerProperties answer and `/api/overview`, all
/// `pigeon_server::RABBITMQ_VERSION`, with Pigeon's own version beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_stream_and_the_api_give_the_same_rabbitmq_version() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let version = pigeon_server::RABBITMQ_VERSION;
    assert!(version.starts_with("3.13."), "{version}");

    let mut client = RawClient::connect(broker.addr()).await;
    let start = client.start().await;
    let text = |key: &str| match start.server_properties.get(key) {
        Some(raw::Value::Str(s)) => String::from_utf8_lossy(s).into_owned(),
        other => panic!("{key} = {other:?}"),
    };
    assert_eq!(text("version"), version);
    assert_eq!(text("pigeon_version"), env!("CARGO_PKG_VERSION"));

    let args = amqprs::connection::OpenConnectionArguments::new(
        &broker.addr().ip().to_string(),
        broker.addr().port(),
        broker.user(),
        broker.password(),
    );
    let conn = within(
        "amqprs' connection",
        amqprs::connection::Connection::open(&args),
    )
    .await
    .unwrap();
    assert_eq!(conn.server_properties().version(), version);
    conn.close().await.unwrap();

    let mut stream =
        crate::stream_protocol_support::Raw::connect(broker.stream_addr().unwrap()).await;
    stream
        .send(stream_wire::PeerProperties {
            correlation_id: 1,
            properties: Default::default(),
        })
        .await;
    match stream.recv().await {
        Some(stream_wire::Command::PeerPropertiesResponse(r)) => {
            assert_eq!(
                r.properties.get("version").map(|v| v.as_str()),
                Some(version)
            );
        }
        other => panic!("expected PeerProperties' answer, got {other:?}"),
    }

    let overview = pigeon_tests::http_support::Api::new(&broker)
        .get("/api/overview")
        .await
        .body;
    assert_eq!(overview["rabbitmq_version"], version);
    assert_eq!(overview["management_version"], version);
}
