//! Helpers of the permission and limit suites: a broker with a second user whose permissions
//! each test sets (as `rabbitmqctl set_permissions` would), and lapin connections as that user.

use crate::lapin_support::{self as lp, reply_code};
use crate::{within, TestBroker};
use pigeon_broker::access::AccessControl;
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_server::ServerConfig;

/// The user whose permissions the tests restrict.
pub const USER: &str = "alice";
/// Their password.
pub const PASSWORD: &str = "alice-secret";

/// The test configuration: the default user `guest` may do everything in `/`.
pub fn config() -> ServerConfig {
    ServerConfig::for_tests()
}

/// Creates [`USER`] (no tags, no permissions yet), as `rabbitmqctl add_user` would.
pub fn add_user(access: &AccessControl) {
    access
        .add_user(USER, Some(PASSWORD), Vec::new())
        .expect("add the test user");
}

/// `configure`, `write`, `read` patterns.
pub fn perm(configure: &str, write: &str, read: &str) -> Permission {
    Permission {
        configure: configure.into(),
        write: write.into(),
        read: read.into(),
    }
}

/// A topic permission on `exchange`.
pub fn topic_perm(exchange: &str, write: &str, read: &str) -> TopicPermission {
    TopicPermission {
        exchange: exchange.into(),
        write: write.into(),
        read: read.into(),
    }
}

/// A broker with [`USER`], whose permissions in `/` are `permission`. `None` against an
/// external broker (its users are not ours to set).
pub async fn broker_with(permission: Permission) -> Option<TestBroker> {
    let broker = TestBroker::start_with(config()).await?;
    add_user(access(&broker));
    access(&broker).set_permission(USER, "/", permission);
    Some(broker)
}

/// The broker's access control.
pub fn access(broker: &TestBroker) -> &AccessControl {
    broker
        .server()
        .expect("an in-process broker")
        .broker()
        .access()
}

/// A lapin connection as [`USER`].
pub async fn connect_user(broker: &TestBroker) -> lapin::Connection {
    lp::connect_url(&broker.url_as(USER, PASSWORD))
        .await
        .expect("the user connects")
}

/// A lapin connection and channel as [`USER`].
pub async fn user_channel(broker: &TestBroker) -> (lapin::Connection, lapin::Channel) {
    let conn = connect_user(broker).await;
    let channel = lp::open_channel(&conn).await;
    (conn, channel)
}

/// Asserts that `result` is a 403 ACCESS_REFUSED whose text is `text` (RabbitMQ's wording).
pub fn assert_refused<T: std::fmt::Debug>(result: lapin::Result<T>, text: &str) {
    let error = result.expect_err("the broker refuses");
    assert_eq!(
        reply_code(&error),
        Some(crate::reply::ACCESS_REFUSED),
        "{error:?}"
    );
    let shown = format!("{error:?}");
    assert!(
        shown.contains(text),
        "expected the reply text to contain {text:?}, got {shown}"
    );
}

/// The connection survived a refusal on one of its channels: a new channel works.
pub async fn assert_connection_usable(conn: &lapin::Connection) {
    let channel = lp::open_channel(conn).await;
    within("channel.close-ok", channel.close(200, "done".into()))
        .await
        .expect("a new channel on the same connection works");
}

/// Publishes on a confirm-mode channel: Ok once confirmed when the publish was allowed, the
/// channel's close error when it was refused.
pub async fn confirmed_publish(
    ch: &lapin::Channel,
    exchange: &str,
    key: &str,
) -> lapin::Result<()> {
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            lapin::options::BasicPublishOptions::default(),
            b"m",
            lapin::BasicProperties::default(),
        )
        .await?;
    within("the confirm, or the channel's close", confirm)
        .await
        .map(|_| ())
}
