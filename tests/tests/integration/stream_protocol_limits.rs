//! Connection limits over the Stream protocol: a stream connection counts in its vhost's and
//! its user's `max-connections` (as RabbitMQ tracks it, so AMQP connections are refused when
//! stream connections fill the limit) and in the node's `max_connections`. Over a vhost or a
//! user limit, `Open` is answered `VirtualHostAccessFailure` (0x0c) and the socket closed;
//! over the node's limit the socket is closed at accept, before any frame. (RabbitMQ 3.13
//! counts stream connections but does not refuse the stream connection itself: a FIXME in
//! `rabbit_stream_reader`; see crates/server/src/stream/handshake.rs.)

use crate::stream_protocol_support::{broker, env_as, Raw};
use bytes::Bytes;
use pigeon_broker::access::{UserLimits, VHostLimits};
use pigeon_broker::permission::Permission;
use pigeon_tests::access::{access, add_user, PASSWORD, USER};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::reply::NOT_ALLOWED;
use pigeon_tests::{within, DataDir, TestBroker};
use rabbitmq_stream_client::{Client, ClientOptions};
use std::time::Duration;
use stream_wire::{
    Command, Open, PeerProperties, ResponseCode, SaslAuthenticate, SaslHandshake, TuneResponse,
};

/// A stream connection logged in as `user` up to `Open` of `/`: the connection, and Open's
/// answer.
async fn open_as(broker: &TestBroker, user: &str, password: &str) -> (Raw, ResponseCode) {
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send(PeerProperties {
        correlation_id: 1,
        properties: Default::default(),
    })
    .await;
    assert!(matches!(
        raw.recv().await,
        Some(Command::PeerPropertiesResponse(_))
    ));
    raw.send(SaslHandshake { correlation_id: 2 }).await;
    assert!(matches!(
        raw.recv().await,
        Some(Command::SaslHandshakeResponse(_))
    ));
    raw.send(SaslAuthenticate {
        correlation_id: 3,
        mechanism: "PLAIN".into(),
        data: Some(Bytes::from(format!("\0{user}\0{password}"))),
    })
    .await;
    match raw.recv().await {
        Some(Command::SaslAuthenticateResponse(r)) => assert!(r.code.is_ok(), "{r:?}"),
        other => panic!("expected SaslAuthenticate's response, got {other:?}"),
    }
    let Some(Command::Tune(t)) = raw.recv().await else {
        panic!("expected Tune");
    };
    raw.send(TuneResponse {
        frame_max: t.frame_max,
        heartbeat: 0,
    })
    .await;
    raw.send(Open {
        correlation_id: 4,
        virtual_host: "/".into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::OpenResponse(r)) => (raw, r.code),
        other => panic!("expected Open's response, got {other:?}"),
    }
}

/// Asserts that `Open` as `user` is refused for a limit, and that the broker then closes.
async fn assert_refused(broker: &TestBroker, user: &str, password: &str) {
    let (mut raw, code) = open_as(broker, user, password).await;
    assert_eq!(code, ResponseCode::VirtualHostAccessFailure);
    assert!(
        raw.until_closed().await.is_empty(),
        "nothing after the refusal"
    );
}

/// Opens as `user` until `Open` succeeds: a closed connection gives its place back when its
/// task ends, just after the socket closed.
async fn open_once_released(broker: &TestBroker, user: &str, password: &str) -> Raw {
    within("the place to be given back", async {
        loop {
            let (raw, code) = open_as(broker, user, password).await;
            if code == ResponseCode::Ok {
                return raw;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The stream client's options for [`USER`].
fn client_options(broker: &TestBroker) -> ClientOptions {
    let addr = broker.stream_addr().unwrap();
    ClientOptions::builder()
        .host(&addr.ip().to_string())
        .port(addr.port())
        .user(USER)
        .password(PASSWORD)
        .build()
}

async fn broker_with_user() -> Option<(DataDir, TestBroker)> {
    let (data, broker) = broker().await?;
    add_user(access(&broker));
    access(&broker).set_permission(USER, "/", Permission::all());
    Some((data, broker))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_max_connections_counts_stream_connections_and_refuses_open() {
    let Some((_data, broker)) = broker_with_user().await else {
        return;
    };
    access(&broker).set_vhost_limits(
        "/",
        VHostLimits {
            max_connections: Some(1),
            max_queues: None,
        },
    );
    let (first, code) = open_as(&broker, "guest", "guest").await;
    assert_eq!(code, ResponseCode::Ok);
    // Another stream connection, of any user, is refused at Open...
    assert_refused(&broker, "guest", "guest").await;
    assert_refused(&broker, USER, PASSWORD).await;
    // ... through the client library too ...
    let refused = env_as(&broker, USER, PASSWORD).await;
    assert!(
        refused.is_err(),
        "the stream client's environment opened over the limit"
    );
    // ... and so is an AMQP connection: the stream connection holds the vhost's one place.
    let error = lp::connect_url(&broker.url_as(USER, PASSWORD))
        .await
        .expect_err("AMQP over the vhost's limit");
    assert_eq!(lp::reply_code(&error), Some(NOT_ALLOWED), "{error:?}");
    assert!(
        format!("{error:?}").contains("connection limit (1) is reached"),
        "{error:?}"
    );
    // Closing the stream connection gives the place back.
    drop(first);
    let second = open_once_released(&broker, USER, PASSWORD).await;
    // An AMQP connection holding the place refuses stream connections in turn.
    drop(second);
    let amqp = within("the place to be given back to AMQP", async {
        loop {
            if let Ok(conn) = lp::connect_url(&broker.url_as(USER, PASSWORD)).await {
                return conn;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_refused(&broker, "guest", "guest").await;
    amqp.close(200, "bye".into()).await.unwrap();
    open_once_released(&broker, "guest", "guest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_max_connections_counts_stream_connections_and_refuses_open() {
    let Some((_data, broker)) = broker_with_user().await else {
        return;
    };
    access(&broker).set_user_limits(
        USER,
        UserLimits {
            max_connections: Some(2),
            max_channels: None,
        },
    );
    // One through the client library, one raw: both count.
    let client = within(
        "the stream handshake",
        Client::connect(client_options(&broker)),
    )
    .await
    .unwrap();
    let (_raw, code) = open_as(&broker, USER, PASSWORD).await;
    assert_eq!(code, ResponseCode::Ok);
    assert_refused(&broker, USER, PASSWORD).await;
    let refused = within(
        "the stream handshake",
        Client::connect(client_options(&broker)),
    )
    .await;
    assert!(
        refused.is_err(),
        "the stream client connected over the limit"
    );
    let error = lp::connect_url(&broker.url_as(USER, PASSWORD))
        .await
        .expect_err("AMQP over the user's limit");
    assert!(
        format!("{error:?}").contains("user connection limit (2) is reached"),
        "{error:?}"
    );
    // Other users are not counted.
    let (_guest, code) = open_as(&broker, "guest", "guest").await;
    assert_eq!(code, ResponseCode::Ok);
    // The client's connection gives its place back when it closes.
    within("Close", client.close()).await.unwrap();
    open_once_released(&broker, USER, PASSWORD).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_connection_limit_counts_stream_connections() {
    let data = DataDir::with(|c| {
        c.fsync = true;
        c.max_connections = 2;
    });
    let Some(broker) = data.start().await else {
        return;
    };
    let (_one, code) = open_as(&broker, "guest", "guest").await;
    assert_eq!(code, ResponseCode::Ok);
    let (_two, code) = open_as(&broker, "guest", "guest").await;
    assert_eq!(code, ResponseCode::Ok);
    // The third is closed as soon as it is accepted: no answer to anything.
    let mut third = Raw::connect(broker.stream_addr().unwrap()).await;
    third
        .send_bytes(
            &stream_wire::Command::from(PeerProperties {
                correlation_id: 1,
                properties: Default::default(),
            })
            .to_bytes(),
        )
        .await;
    assert!(third.until_closed().await.is_empty());
    // AMQP counts against the same limit.
    assert!(lp::connect_url(&broker.url_as("guest", "guest"))
        .await
        .is_err());
}
