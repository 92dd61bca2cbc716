//! Vhost and user limits (`rabbitmqctl set_vhost_limits` / `set_user_limits`) over AMQP and
//! MQTT, with RabbitMQ's answers, and the per-address accept rate.

use bytes::Bytes;
use lapin::options::QueueDeclareOptions;
use mqtt_wire::{ProtocolVersion, ReasonCode};
use pigeon_broker::access::{UserLimits, VHostLimits};
use pigeon_broker::permission::Permission;
use pigeon_server::ServerConfig;
use pigeon_tests::access::{access, add_user, broker_with, connect_user, PASSWORD, USER};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{connect_packet, filter5, Mqtt5, MqttBroker};
use pigeon_tests::reply::{NOT_ALLOWED, PRECONDITION_FAILED};
use pigeon_tests::{unique, within, TestBroker};
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_not_allowed<T: std::fmt::Debug>(result: lapin::Result<T>, text: &str) {
    let error = result.expect_err("the broker refuses");
    assert_eq!(lp::reply_code(&error), Some(NOT_ALLOWED), "{error:?}");
    assert!(
        format!("{error:?}").contains(text),
        "expected {text:?} in {error:?}"
    );
}

async fn user_url(broker: &TestBroker) -> String {
    broker.url_as(USER, PASSWORD)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_connections_refuses_connection_open_with_530() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    let limit = VHostLimits {
        max_connections: Some(1),
        max_queues: None,
    };
    access(&broker).set_vhost_limits("/", limit);
    let first = connect_user(&broker).await;
    assert_not_allowed(
        lp::connect_url(&user_url(&broker).await).await,
        "access to vhost '/' refused for user 'alice': connection limit (1) is reached",
    );
    // Closing gives the place back (before close-ok).
    first.close(200, "bye".into()).await.unwrap();
    connect_user(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_connections_refuses_connection_open_with_530() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    let limit = UserLimits {
        max_connections: Some(2),
        max_channels: None,
    };
    access(&broker).set_user_limits(USER, limit);
    let _a = connect_user(&broker).await;
    let _b = connect_user(&broker).await;
    assert_not_allowed(
        lp::connect_url(&user_url(&broker).await).await,
        "connection refused for user 'alice': user connection limit (2) is reached",
    );
    // Other users are not counted.
    lp::connect(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_channels_counts_every_connection_of_the_user() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    let limit = UserLimits {
        max_connections: None,
        max_channels: Some(2),
    };
    access(&broker).set_user_limits(USER, limit);
    let a = connect_user(&broker).await;
    let b = connect_user(&broker).await;
    // Kept: lapin closes a channel whose handle is dropped.
    let first = lp::open_channel(&a).await;
    let _second = lp::open_channel(&b).await;
    // The third channel of the user, on either connection: 530, closing that connection.
    let third = within("channel.open", b.create_channel()).await;
    assert_not_allowed(
        third,
        "number of channels opened for user 'alice' has reached the maximum allowed user limit of 2",
    );
    // A channel closed gives its place back.
    within("channel.close-ok", first.close(200, "bye".into()))
        .await
        .unwrap();
    lp::open_channel(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_queues_refuses_new_queues_with_406() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    let limit = VHostLimits {
        max_connections: None,
        max_queues: Some(2),
    };
    access(&broker).set_vhost_limits("/", limit);
    let (conn, ch) = lp::connect_channel(&broker).await;
    lp::declare(&ch, "q1", QueueDeclareOptions::default()).await;
    lp::declare(&ch, "q2", QueueDeclareOptions::default()).await;
    // Declaring an existing queue again is not a new queue.
    lp::declare(&ch, "q1", QueueDeclareOptions::default()).await;
    let third = within(
        "queue.declare-ok",
        ch.queue_declare(
            "q3".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        ),
    )
    .await;
    let error = third.expect_err("over max-queues");
    assert_eq!(lp::reply_code(&error), Some(PRECONDITION_FAILED));
    assert!(
        format!("{error:?}")
            .contains("cannot declare queue 'q3': queue limit in vhost '/' (2) is reached"),
        "{error:?}"
    );
    // The channel closed, the connection did not.
    let ch = lp::open_channel(&conn).await;
    lp::delete_queue(&ch, "q2").await;
    lp::declare(&ch, "q3", QueueDeclareOptions::default()).await;
}

/// The management API declares through the same limit: a new queue over `max-queues` gets
/// 400 with the channel's reason, an existing one is still declared, and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_queues_refuses_api_declarations_with_400() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let api = pigeon_tests::http_support::Api::new(&broker);
    let limit = VHostLimits {
        max_connections: None,
        max_queues: Some(1),
    };
    access(&broker).set_vhost_limits("/", limit);
    let first = unique("limited");
    let second = unique("limited");
    let body = serde_json::json!({"durable": false});
    let created = api
        .put(&format!("/api/queues/%2F/{first}"), body.clone())
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    // Declaring it again is not a new queue.
    let again = api
        .put(&format!("/api/queues/%2F/{first}"), body.clone())
        .await;
    assert_eq!(again.status, 204, "{:?}", again.body);
    let refused = api.put(&format!("/api/queues/%2F/{second}"), body).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "bad_request");
    let reason = refused.body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "cannot declare queue '{second}': queue limit in vhost '/' (1) is reached"
        )),
        "{reason}"
    );
    let missing = api.get(&format!("/api/queues/%2F/{second}")).await;
    assert_eq!(missing.status, 404);
}

/// A broker with MQTT and [`USER`] allowed everything in `/`.
async fn mqtt_broker() -> MqttBroker {
    let broker = MqttBroker::start_with(ServerConfig::for_tests()).await;
    let acl = broker.broker().access();
    add_user(acl);
    acl.set_permission(USER, "/", Permission::all());
    broker
}

async fn connack(
    broker: &MqttBroker,
    version: ProtocolVersion,
) -> (pigeon_tests::mqtt_support::Raw, ReasonCode) {
    let mut connect = connect_packet(version, &unique("lim"));
    connect.username = Some(USER.into());
    connect.password = Some(Bytes::from_static(PASSWORD.as_bytes()));
    let (raw, ack) = broker.raw(connect).await;
    (raw, ack.code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connect_over_a_connection_limit_is_quota_exceeded() {
    let broker = mqtt_broker().await;
    let acl = broker.broker().access();
    acl.set_user_limits(
        USER,
        UserLimits {
            max_connections: Some(1),
            max_channels: None,
        },
    );
    let (_held, ok) = connack(&broker, ProtocolVersion::V5).await;
    assert_eq!(ok, ReasonCode::Success);
    // 5.0: 0x97 Quota exceeded; 3.1.1: 0x05 Not authorized (RabbitMQ's
    // connect_reason_code_to_return_code).
    assert_eq!(
        connack(&broker, ProtocolVersion::V5).await.1,
        ReasonCode::QuotaExceeded
    );
    assert_eq!(
        connack(&broker, ProtocolVersion::V3_1_1).await.1,
        ReasonCode::NotAuthorized
    );
    // The vhost's limit too (guest has none of its own).
    acl.set_vhost_limits(
        "/",
        VHostLimits {
            max_connections: Some(1),
            max_queues: None,
        },
    );
    let mut o = broker.v5(&unique("guest"));
    o.set_credentials("guest", "guest");
    let refused = Mqtt5::try_connect(o).await;
    assert!(refused.is_err(), "the vhost's one connection is taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscribe_over_max_queues_is_quota_exceeded() {
    let broker = mqtt_broker().await;
    broker.broker().access().set_vhost_limits(
        "/",
        VHostLimits {
            max_connections: None,
            max_queues: Some(1),
        },
    );
    let mut first = broker.connect5(&unique("first")).await;
    first.subscribe("a/b", Q5::AtMostOnce).await;
    let mut second = broker.connect5(&unique("second")).await;
    assert_eq!(
        second
            .subscribe_with(filter5("a/b", Q5::AtMostOnce), None)
            .await,
        vec![Sub5::QuotaExceeded]
    );
    // The first session's queue exists: more subscriptions on it are fine.
    first.subscribe("c/d", Q5::AtMostOnce).await;
}

/// Whether a connection to `addr` is served: an accepted AMQP socket answers the protocol
/// header with connection.start, a refused one is closed at once.
async fn served(addr: std::net::SocketAddr) -> bool {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(b"AMQP\x00\x00\x09\x01").await;
    let mut byte = [0u8; 1];
    matches!(
        within("a first byte or EOF", s.read(&mut byte)).await,
        Ok(1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_accept_rate_of_an_address_are_closed() {
    let config = ServerConfig {
        connection_rate_limit: 2,
        connection_rate_limit_loopback: true,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    // Five connections in well under a second span at most two one-second windows, of which
    // at most four can be accepted.
    let mut results = Vec::new();
    for _ in 0..5 {
        results.push(served(broker.addr()).await);
    }
    assert!(results[0], "the first connection is served");
    assert!(results.contains(&false), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_connections_over_the_accept_rate_get_connection_rate_exceeded() {
    let config = ServerConfig {
        connection_rate_limit: 2,
        connection_rate_limit_loopback: true,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let acl = broker.broker().access();
    add_user(acl);
    acl.set_permission(USER, "/", Permission::all());
    // Five CONNECTs in well under a second span at most two one-second windows, of which at
    // most four are admitted; the others are answered 0x9F (5.0) or 0x03 (3.1.1).
    for (version, refused) in [
        (ProtocolVersion::V5, ReasonCode::ConnectionRateExceeded),
        (ProtocolVersion::V3_1_1, ReasonCode::ServerUnavailable),
    ] {
        let mut held = Vec::new();
        let mut codes = Vec::new();
        for _ in 0..5 {
            let (raw, code) = connack(&broker, version).await;
            held.push(raw);
            codes.push(code);
        }
        // The first round starts with a fresh window; the second may fall in the same one.
        if version == ProtocolVersion::V5 {
            assert_eq!(codes[0], ReasonCode::Success, "{codes:?}");
        }
        assert!(codes.contains(&refused), "{version:?}: {codes:?}");
        assert!(
            codes
                .iter()
                .all(|c| *c == ReasonCode::Success || c == &refused),
            "{codes:?}"
        );
    }
}
